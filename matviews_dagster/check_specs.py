"""Asset check specs per view: populated, unique_index (concurrent views), definition_matches.

They are ``check_specs`` of the ``@matview_assets`` step, as dbt tests are of ``@dbt_assets``:
a materialization runs the checks of the views it refreshes, and selecting only checks runs
only the checks (``core.checks`` evaluates them against the catalog).
"""

from collections.abc import Iterable

import dagster as dg

from .core.definition import MatViewDefinition
from .core.health_checks import CHECKS, checks_for


def view_check_specs(definition: MatViewDefinition, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The check specs of one view, attached to its (translated) asset key."""
    return [dg.AssetCheckSpec(name, asset=key, description=CHECKS[name][0]) for name in checks_for(definition)]


def build_matview_checks(views: Iterable[tuple[MatViewDefinition, dg.AssetKey]]) -> list[dg.AssetCheckSpec]:
    """Check specs for every ``(definition, asset key)``."""
    return [spec for definition, key in views for spec in view_check_specs(definition, key)]
