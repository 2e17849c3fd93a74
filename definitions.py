"""The demo code location: `dg dev -f definitions.py`, then "Materialize all"."""

from matviews_dagster import build_definitions
from matviews_dagster.demo import DEMO_VIEWS
from matviews_dagster.demo.assets import demo_source_data

defs = build_definitions(DEMO_VIEWS, extra_assets=[demo_source_data])
