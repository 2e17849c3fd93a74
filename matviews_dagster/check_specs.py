"""Two asset checks per view. ``deployed_as_defined``: the deployed view is what its definition
says (it exists and holds rows, has the unique index its strategy needs, and runs the defined
query with the declared indexes and comments). Each of those verdicts (``core.health_checks``)
is a metadata entry of the one check result, so a view costs Dagster one planned check event
and one evaluation, not one per verdict. ``column_schema_change``: no column was removed,
renamed or retyped since the view's last materialization (``core.schema_change``).

They are ``check_specs`` of the ``@matview_assets`` step, as dbt tests are of ``@dbt_assets``:
a materialization evaluates the checks of the views it refreshes from what the refresh itself
established, and selecting only checks reads them from the catalog.
"""

from collections.abc import Iterable

import dagster as dg

from .core.definition import MatViewDefinition
from .core.health_checks import CHECKS, checks_for

CHECK_NAME = "deployed_as_defined"
"""The check of every view's asset that the deployed view is what its definition says."""
SCHEMA_CHANGE_CHECK = "column_schema_change"
"""The check of every view's asset that no column was removed, renamed or retyped since its
last materialization (Dagster's name for it, ``build_column_schema_change_checks``)."""


def view_check_specs(definition: MatViewDefinition, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The check specs of one view, attached to its (translated) asset key: ``deployed_as_defined``
    (its description lists the verdicts it carries for this view, ``unique_index`` only for
    concurrent ones), and ``column_schema_change`` unless ``schema_change_severity: off``
    (each check costs a run about 27 ms of Dagster's bookkeeping, docs/performance.md)."""
    verdicts = " ".join(f"{name}: {CHECKS[name][0]}" for name in checks_for(definition))
    deployed = dg.AssetCheckSpec(CHECK_NAME, asset=key, description=f"The view is as defined. {verdicts}")
    if definition.schema_change_severity == "off":
        return [deployed]
    return [
        deployed,
        dg.AssetCheckSpec(
            SCHEMA_CHANGE_CHECK,
            asset=key,
            description="No column was removed, renamed or changed type since the last materialization "
            f"(added columns pass); fails as {definition.schema_change_severity} (schema_change_severity).",
        ),
    ]


def build_matview_checks(views: Iterable[tuple[MatViewDefinition, dg.AssetKey]]) -> list[dg.AssetCheckSpec]:
    """Check specs for every ``(definition, asset key)``."""
    return [spec for definition, key in views for spec in view_check_specs(definition, key)]
