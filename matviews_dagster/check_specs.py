"""One asset check per view, ``deployed_as_defined``: the deployed view is what its definition
says (it exists and holds rows, has the unique index its strategy needs, and runs the defined
query with the declared indexes and comments), and none of its columns was removed, renamed or
retyped since its last materialization (``column_schema_change``, unless
``schema_change_severity: off``), and its refresh strategy fits what its runs cost and whom
they blocked (``strategy_fits``, a warning with the advisor's evidence). Each of those verdicts (``core.health_checks``,
``core.schema_change``) is a metadata entry of the one check result, so a view costs Dagster
one planned check event and one evaluation, not one per verdict (a second check per view cost
"Materialize all" of 200 views 1.38x, docs/performance.md).

They are ``check_specs`` of the ``@matview_assets`` step, as dbt tests are of ``@dbt_assets``:
a materialization evaluates the checks of the views it refreshes from what the refresh itself
established, and selecting only checks reads them from the catalog.
"""

from collections.abc import Iterable

import dagster as dg

from .core.definition import MatViewDefinition
from .core.health_checks import CHECKS, STRATEGY_FITS, checks_for
from .core.schema_change import SCHEMA_CHANGE

CHECK_NAME = "deployed_as_defined"
"""The one check of every view's asset."""


def view_check_specs(definition: MatViewDefinition, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The check spec of one view, attached to its (translated) asset key; its description
    lists the verdicts it carries for this view (``unique_index`` only for concurrent ones,
    ``column_schema_change`` unless ``schema_change_severity: off``)."""
    verdicts = " ".join(f"{name}: {CHECKS[name][0]}" for name in checks_for(definition))
    if definition.schema_change_severity != "off":
        verdicts += (
            f" {SCHEMA_CHANGE}: no column was removed, renamed or retyped since the last materialization "
            f"(added ones pass; fails as {definition.schema_change_severity})."
        )
    if definition.strategy_advice != "off":
        verdicts += (
            f" {STRATEGY_FITS}: after 3 refreshes with its strategy, the advisor (matviews advise) finds no strategy "
            "that would serve it better (warns with the evidence otherwise)."
        )
    return [dg.AssetCheckSpec(CHECK_NAME, asset=key, description=f"The view is as defined. {verdicts}")]


def build_matview_checks(views: Iterable[tuple[MatViewDefinition, dg.AssetKey]]) -> list[dg.AssetCheckSpec]:
    """Check specs for every ``(definition, asset key)``."""
    return [spec for definition, key in views for spec in view_check_specs(definition, key)]
