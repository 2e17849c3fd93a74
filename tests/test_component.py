"""``MatViewsComponent`` through ``dg`` (check, list, launch, scaffold) in subprocesses, loaded
from ``defs.yaml``; declarative automation and freshness on the views' assets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from conftest import scalar
from doc_scripts import (
    as_a_shell_script,
    blocks_of,
    new_user_env,
    our_warnings,
    postgres_processes_under,
    run_script,
    section,
    servers,
)

from matviews_dagster import MatViewDefinition, build_definitions
from matviews_dagster.core.embedded import embedded_dsn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "matviews_demo"
DG = str(Path(sys.executable).with_name("dg"))


def dg_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MATVIEWS_DSN", "DAGSTER_HOME")}
    environment.update(env, COLUMNS="250")
    return subprocess.run([DG, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example dg project, so a run writes nothing into the repository. The package
    an earlier test imported in this process is forgotten, so a load reads this copy."""
    for name in [m for m in sys.modules if m == "matviews_demo" or m.startswith("matviews_demo.")]:
        monkeypatch.delitem(sys.modules, name)
    copy = tmp_path / "matviews_demo"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".matviews"))
    return copy


@pytest.mark.slow
def test_the_example_project_checks_lists_and_launches(project, dsn, db) -> None:
    checked = dg_cli(["check", "defs"], project, MATVIEWS_DSN=dsn)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    listed = dg_cli(["list", "defs"], project, MATVIEWS_DSN=dsn)
    assert listed.returncode == 0, listed.stderr[-2000:]
    for key in ("public/mv_users", "public/mv_engaged_users", "public/users"):
        assert key in listed.stdout
    launched = dg_cli(["launch", "--assets", "key:public/*"], project, MATVIEWS_DSN=dsn)
    assert launched.returncode == 0, launched.stderr[-3000:]
    for done in (checked, listed, launched):  # Dagster copied no sensor of ours (BetaWarning), nothing else warned
        assert not our_warnings(done.stdout + done.stderr), our_warnings(done.stdout + done.stderr)
    assert "``" not in listed.stdout, "descriptions are Markdown, not reStructuredText"
    kept = project / ".matviews" / "dagster" / "history" / "runs.db"
    assert kept.exists(), "the example's dagster.yaml keeps the run"
    assert scalar(db, "SELECT count(*) FROM pg_matviews WHERE ispopulated") == 5
    assert scalar(db, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == 5


@pytest.mark.slow
def test_dg_scaffold_writes_a_component_that_loads_and_runs(project, dsn, db) -> None:
    shutil.rmtree(project / "matviews_demo" / "defs" / "views")  # one MatViewsComponent per code location
    scaffolded = dg_cli(["scaffold", "defs", "matviews_dagster.MatViewsComponent", "warehouse"], project)
    assert scaffolded.returncode == 0, scaffolded.stderr[-2000:]
    folder = project / "matviews_demo" / "defs" / "warehouse"
    assert "type: matviews_dagster.MatViewsComponent" in (folder / "defs.yaml").read_text()
    assert "mv_example" in (folder / "matviews.yaml").read_text()
    assert dg_cli(["check", "defs"], project, DATABASE_URL=dsn).returncode == 0
    launched = dg_cli(["launch", "--assets", "key:public/*"], project, DATABASE_URL=dsn)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert scalar(db, "SELECT count(*) FROM public.mv_example") == 1


def test_inline_views_translation_automation_and_freshness_from_defs_yaml(project, dsn, db, users, monkeypatch) -> None:
    folder = project / "matviews_demo" / "defs" / "views"
    (folder / "defs.yaml").write_text(
        textwrap.dedent(
            """
            type: matviews_dagster.MatViewsComponent
            attributes:
              dsn: "{{ env.APP_DSN }}"
              max_parallel: 2
              run_store: {schema_name: matviews_ops}
              translation: {group_name: warehouse, key_prefix: [pg], tags: {team: data}}
              views:
                - name: mv_plans
                  sql: SELECT plan, count(*) AS n FROM users GROUP BY plan
                  freshness: {warn_after: 1h, fail_after: 6h}
                - name: mv_pro
                  sql: SELECT * FROM mv_plans WHERE plan = 'pro'
                  automation: eager
                - name: mv_nightly
                  sql: SELECT count(*) AS n FROM users
                  automation: {on_cron: "0 3 * * *"}
            """
        )
    )
    monkeypatch.setenv("APP_DSN", dsn)
    monkeypatch.syspath_prepend(str(project))  # the project's package, as `pip install -e .` would
    defs = dg.load_from_defs_folder(path_within_project=project)
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    plans, pro, nightly = (dg.AssetKey(["pg", "public", name]) for name in ("mv_plans", "mv_pro", "mv_nightly"))
    assert {plans, pro, nightly} <= set(specs)
    assert specs[pro].deps[0].asset_key == plans, "the prefix reaches lineage"
    assert specs[plans].group_name == "warehouse" and specs[plans].tags["team"] == "data"
    assert specs[pro].automation_condition is not None and specs[pro].automation_condition.get_label() == "eager"
    assert "on_cron(0 3 * * *" in (specs[nightly].automation_condition.get_label() or "")
    assert specs[plans].automation_condition is None
    policy = specs[plans].freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta().total_seconds() == 6 * 3600
    assert policy.warn_window is not None and policy.warn_window.to_timedelta().total_seconds() == 3600
    assert defs.resolve_implicit_global_asset_job_def().execute_in_process().success
    assert scalar(db, "SELECT count(*) FROM matviews_ops.mat_view_refresh_runs WHERE status = 'success'") == 3


def test_one_real_automation_tick_refreshes_the_eager_view_after_its_upstream(dsn, db, users) -> None:
    base = MatViewDefinition(name="mv_base", sql="SELECT id, plan FROM users")
    eager = MatViewDefinition(name="mv_eager", sql="SELECT id FROM mv_base", automation="eager")
    defs = build_definitions([base, eager], dsn=dsn)
    base_key, eager_key = dg.AssetKey(["public", "mv_base"]), dg.AssetKey(["public", "mv_eager"])
    with dg.instance_for_test() as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance).success  # both exist and are fresh
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert job.execute_in_process(instance=instance, asset_selection=[base_key]).success
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(eager_key) == 1, "eager: its upstream view was refreshed"
    assert second.get_num_requested(base_key) == 0
    assert first.total_requested == 0, "nothing changed since both were refreshed"


def test_eager_views_refresh_when_an_observed_source_table_changed_and_not_otherwise(dsn, db) -> None:
    db.execute("CREATE TABLE src AS SELECT g AS id FROM generate_series(1, 5) g")
    eager = MatViewDefinition(name="mv_eager_src", sql="SELECT id FROM src", automation="eager")
    defs = build_definitions([eager], dsn=dsn, observe_cron="*/5 * * * *")
    source, view = dg.AssetKey(["public", "src"]), dg.AssetKey(["public", "mv_eager_src"])
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == source)
    assert getattr(spec.automation_condition, "cron_schedule", None) == "*/5 * * * *"
    job = defs.resolve_implicit_global_asset_job_def()

    def counters() -> tuple:
        db.execute("SELECT pg_stat_clear_snapshot()")
        return db.execute("SELECT n_tup_ins FROM pg_stat_all_tables WHERE relname = 'src'").fetchone()

    def settled(before: tuple) -> None:  # this session's write reaches the shared counters
        deadline = time.monotonic() + 30
        while counters() == before and time.monotonic() < deadline:
            time.sleep(0.05)

    settled((0,))
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, asset_selection=[source]).success  # an observation
        assert job.execute_in_process(instance=instance, asset_selection=[view]).success
        baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert job.execute_in_process(instance=instance, asset_selection=[source]).success
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
        assert quiet.get_num_requested(view) == 0, "observed again, same version: nothing to refresh"
        before = counters()
        db.execute("INSERT INTO src VALUES (6)")
        settled(before)
        assert job.execute_in_process(instance=instance, asset_selection=[source]).success
        changed = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert changed.get_num_requested(view) == 1, "the table changed: the eager view is requested"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"automation": {"on_cron": "99 * * * *"}}, "automation on_cron '99 \\* \\* \\* \\*' is not a valid cron"),
        ({"schedule_cron": "99 * * * *"}, "schedule_cron '99 \\* \\* \\* \\*' is not a valid cron"),
    ],
)
def test_a_cron_dagster_refuses_is_refused_at_load_naming_the_view(field, message) -> None:
    with pytest.raises(ValueError, match=f"public.mv_bad: {message}"):
        build_definitions([MatViewDefinition(name="mv_bad", sql="SELECT 1 AS x", **field)], dsn="postgresql://x/y")


def test_a_freshness_window_dagster_refuses_is_refused_by_the_definition() -> None:
    with pytest.raises(ValueError, match="fail_after must be at least 1m"):
        MatViewDefinition(name="mv_bad", sql="SELECT 1 AS x", freshness={"fail_after": "30s"})


def test_execute_is_the_one_place_to_override_and_the_prefix_reaches_the_sources(project, dsn, db, users, monkeypatch):
    """A subclass's ``execute`` is the step's body (its assets built by ``@matview_assets``), and
    ``translation.key_prefix`` keys the source tables too, so lineage meets them."""
    module = f"audited_views_{os.getpid()}_{time.monotonic_ns()}"  # a module no other test imported
    (project / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from matviews_dagster import MatViewsComponent

            CALLS = []


            class AuditedViews(MatViewsComponent):
                def execute(self, context, matviews):
                    CALLS.append(sorted(key.to_user_string() for key in context.selected_asset_keys))
                    yield from super().execute(context, matviews)
            """
        )
    )
    (project / "matviews_demo" / "defs" / "views" / "defs.yaml").write_text(
        textwrap.dedent(
            f"""
            type: {module}.AuditedViews
            attributes:
              dsn: "{{{{ env.APP_DSN }}}}"
              translation: {{key_prefix: [pg]}}
              views:
                - name: mv_plans
                  sql: SELECT plan, count(*) AS n FROM users GROUP BY plan
            """
        )
    )
    monkeypatch.setenv("APP_DSN", dsn)
    monkeypatch.syspath_prepend(str(project))
    defs = dg.load_from_defs_folder(path_within_project=project)
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    plans, users_table = dg.AssetKey(["pg", "public", "mv_plans"]), dg.AssetKey(["pg", "public", "users"])
    assert [dep.asset_key for dep in specs[plans].deps] == [users_table] and users_table in specs
    assert defs.resolve_implicit_global_asset_job_def().execute_in_process().success
    import importlib

    assert importlib.import_module(module).CALLS == [["pg/public/mv_plans"]]
    assert scalar(db, "SELECT count(*) FROM mat_view_create_runs WHERE status = 'success'") == 1


@pytest.mark.slow
def test_a_new_dg_project_as_the_docs_say(tmp_path: Path) -> None:
    """docs/dagster.md's block for a new project, as written, in an empty directory, on the
    embedded Postgres: create-dagster, the project installed, the component scaffolded, checked,
    listed and launched; no warning printed. The project's package is uninstalled afterwards."""
    page = section(ROOT / "docs" / "dagster.md", "### A new `dg` project with the component")
    code = next(code for lang, _, code in blocks_of(page) if lang == "bash")
    env = new_user_env(tmp_path / "home", ROOT)
    env["MATVIEWS_STATE_DIR"] = str(tmp_path / "state")
    project = tmp_path / "my-dg-views"
    try:
        output = run_script(as_a_shell_script(code, "bash"), tmp_path, env)
        assert not our_warnings(output), our_warnings(output)
        assert "public/mv_example" in output  # dg list defs
        assert "RUN_SUCCESS" in output  # dg launch
        data_dir = project / ".matviews" / "pgdata"
        assert [s["data_dir"] for s in servers(env)] == [str(data_dir)]
        with psycopg.connect(embedded_dsn(str(data_dir))) as conn:
            assert scalar(conn, "SELECT count(*) FROM public.mv_example") == 1
            assert scalar(conn, "SELECT count(*) FROM mat_view_refresh_runs WHERE status = 'success'") == 1
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "my-dg-views"], capture_output=True)
        subprocess.run(["matviews", "server", "stop", "--all"], env=env, capture_output=True)
    assert not postgres_processes_under(tmp_path)
