"""``MatViewsComponent``: the views of a code location as a Dagster Component in ``defs.yaml``.

.. code-block:: yaml

    type: matviews_dagster.MatViewsComponent
    attributes:
      definitions_file: matviews.yaml          # relative to this defs.yaml; or inline `views:`
      dsn: "{{ env.DATABASE_URL }}"
      run_store: {schema_name: matviews_ops}
      max_parallel: 4
      translation: {group_name: warehouse, key_prefix: [pg], tags: {team: data}}

It builds what ``build_definitions`` builds (one subsettable multi-asset, checks, jobs,
schedules, the queue sensor, resources); ``dg scaffold defs matviews_dagster.MatViewsComponent
<path>`` writes a working ``defs.yaml`` and an example ``matviews.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components import Scaffolder, ScaffoldRequest
from pydantic import Field

from .build import build_definitions
from .core.definition import MatViewDefinition
from .core.definitions_file import definitions_from_mapping, load_definitions
from .core.graph import ViewGraph
from .core.names import QualifiedName
from .core.settings import DEFAULTS
from .core.vocabulary import DEFAULT_MAX_PARALLEL
from .resources import MatViewsResource
from .sources import DEFAULT_OBSERVE_CRON
from .translator import DagsterMatViewTranslator

EXAMPLE_VIEWS = """\
# Materialized views of this component (see docs/definitions.md for every field).
views:
  - name: mv_example
    description: An example view; replace its query with one over your tables.
    sql: SELECT 1 AS id, now() AS built_at
    refresh_strategy: regular
    unique_index_columns: [id]
"""


class TranslationModel(dg.Model):
    """How views become assets, as in dagster-sling's ``translation`` block: applied on top
    of each definition's own ``group_name`` and ``tags``."""

    group_name: str | None = Field(default=None, description="Group of every view asset (over the definition).")
    key_prefix: list[str] | str | None = Field(default=None, description="Prefix of every view's asset key.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every view's asset.")


class RunStoreModel(dg.Model):
    """Where the run tables live (``RunStoreResource``)."""

    dsn: str | None = Field(default=None, description="Another database for the run tables; none: the views'.")
    schema_name: str = Field(default=DEFAULTS.runs_schema, description="Schema of the run tables.")


class _TranslatedTranslator(DagsterMatViewTranslator):
    def __init__(self, translation: TranslationModel) -> None:
        self.translation = translation

    def get_asset_spec(self, definition: MatViewDefinition, graph: ViewGraph) -> dg.AssetSpec:
        spec = super().get_asset_spec(definition, graph)
        t = self.translation
        prefix = [t.key_prefix] if isinstance(t.key_prefix, str) else list(t.key_prefix or [])
        return spec.replace_attributes(
            key=spec.key.with_prefix(prefix) if prefix else spec.key,
            group_name=t.group_name or spec.group_name,
            tags={**spec.tags, **t.tags},
        )

    def get_source_asset_key(self, relation: QualifiedName) -> dg.AssetKey:
        """The source tables' keys take the prefix too: one translation decides every key."""
        key = super().get_source_asset_key(relation)
        prefix = self.translation.key_prefix
        return key.with_prefix([prefix] if isinstance(prefix, str) else list(prefix)) if prefix else key


class MatViewsScaffolder(Scaffolder):
    """``dg scaffold defs matviews_dagster.MatViewsComponent <path>``: a ``defs.yaml`` reading
    ``matviews.yaml`` beside it, with the DSN from ``DATABASE_URL``, and an example view."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        from dagster.components.component_scaffolding import scaffold_component

        scaffold_component(request, {"definitions_file": "matviews.yaml", "dsn": "{{ env.DATABASE_URL }}"})
        views = request.target_path / "matviews.yaml"
        if not views.exists():
            views.write_text(EXAMPLE_VIEWS)


@dg.scaffold_with(MatViewsScaffolder)
class MatViewsComponent(dg.Component, dg.Resolvable, dg.Model):
    """PostgreSQL materialized views as assets, refreshed in one step (see ``build_definitions``).

    Give either ``definitions_file`` (a YAML file of views, relative to the component's folder)
    or ``views`` (the same entries inline). ``dsn`` is templated like any component field
    (``"{{ env.DATABASE_URL }}"``); left out, ``MATVIEWS_DSN``, ``DATABASE_URL`` or the embedded
    Postgres are used at run time. Raises ``ValueError`` at load for a missing or invalid
    definitions file, both or neither of ``definitions_file`` and ``views``, a duplicate view
    or a cycle.
    """

    definitions_file: str | None = Field(default=None, description="YAML file of views, relative to this component.")
    views: list[dict[str, Any]] | None = Field(default=None, description="The views inline, as in a definitions file.")
    search_path: list[str] | None = Field(default=None, description="Default search_path of inline views.")
    dsn: str | None = Field(default=None, description="The views' database (libpq DSN or URL).")
    run_store: RunStoreModel | None = Field(default=None, description="Where the run tables live.")
    max_parallel: int = Field(default=DEFAULT_MAX_PARALLEL, ge=1, description="Views refreshed at once.")
    queue_sensor_interval: int = Field(default=10, ge=1, description="Seconds between the queue sensor's ticks.")
    observe_cron: str | None = Field(
        default=DEFAULT_OBSERVE_CRON, description="When automation observes the source tables (views with automation)."
    )
    translation: TranslationModel | None = Field(default=None, description="Group, key prefix and tags of the assets.")
    demo: bool = Field(default=False, description="The package's demo views and the asset loading their tables.")

    def definitions(self, folder: Path) -> list[MatViewDefinition]:
        """The component's views, from its file (relative to ``folder``), inline, or the demo's."""
        given = [self.definitions_file is not None, self.views is not None, self.demo]
        if sum(given) != 1:
            raise ValueError("MatViewsComponent takes one of definitions_file, views or demo: true")
        if self.demo:
            from .demo import DEMO_VIEWS

            return load_definitions(DEMO_VIEWS)
        if self.definitions_file is not None:
            path = folder / self.definitions_file
            if not path.is_file():
                raise ValueError(f"definitions_file {self.definitions_file} not found in {folder}")
            return load_definitions(path)
        document: dict[str, Any] = {"views": self.views}
        if self.search_path is not None:
            document["search_path"] = self.search_path
        return definitions_from_mapping(document, source=f"{folder}/defs.yaml views")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        run_store = self.run_store or RunStoreModel()
        translator = _TranslatedTranslator(self.translation) if self.translation else DagsterMatViewTranslator()
        extra: Sequence[dg.AssetsDefinition] = ()
        if self.demo:
            from .demo.assets import build_demo_source_data

            extra = [build_demo_source_data(translator)]
        return build_definitions(
            self.definitions(context.path),
            dsn=self.dsn,
            runs_dsn=run_store.dsn,
            runs_schema=run_store.schema_name,
            translator=translator,
            max_parallel=self.max_parallel,
            queue_sensor_interval=self.queue_sensor_interval,
            observe_cron=self.observe_cron,
            extra_assets=extra,
            execute=self.execute,
        )

    def execute(self, context: dg.AssetExecutionContext, matviews: MatViewsResource) -> Iterator[Any]:
        """The refresh step's body, as ``DbtProjectComponent.execute``: the one place to override
        to run code around the refresh (the default refreshes the selected views and yields
        their events). Its assets are built by ``@matview_assets``, as a user's would be."""
        yield from matviews.refresh(context).stream()
