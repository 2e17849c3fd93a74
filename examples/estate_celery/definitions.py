"""An estate run on celery workers: each database's tenant views are a partitioned step of
their own, which a celery worker executes; `backfill_tenants` materializes every tenant.

    dagster-celery worker start -A dagster_celery.app -y celery.yaml --name worker-1 -- --concurrency=1
    dagster asset materialize -f definitions.py --select eu/mv_usage,us/mv_usage --partition-range t01...t20
"""

from pathlib import Path

import dagster as dg
from dagster_celery import celery_executor

from matviews_dagster import build_definitions

HERE = Path(__file__).parent

backfill_tenants = dg.define_asset_job(
    "backfill_tenants",
    selection=dg.AssetSelection.key_prefixes(["eu"], ["us"]),
    description="Every tenant's mv_usage in both databases: a run per tenant, a step per database.",
)
executor = celery_executor.configured(
    {"broker": {"env": "CELERY_BROKER_URL"}, "backend": {"env": "CELERY_BACKEND_URL"}}
)
defs = dg.Definitions.merge(
    build_definitions(HERE / "matviews.yaml", executor=executor),
    dg.Definitions(jobs=[backfill_tenants]),
)
