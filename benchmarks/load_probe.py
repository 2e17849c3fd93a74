"""Time loading one code location in-process (imports excluded): ``python -m benchmarks.load_probe FILE``.

Prints the milliseconds spent executing the file and resolving its repository (the asset
graph, jobs and checks), the work ``dagster dev`` and every run worker do on start-up.
"""

from __future__ import annotations

import runpy
import sys
import time

import dagster as dg

import matviews_dagster.build  # noqa: F401  (imported before the clock starts, like dagster itself)


def main(path: str) -> None:
    started = time.perf_counter()
    namespace = runpy.run_path(path)
    defs = namespace["defs"]
    assert isinstance(defs, dg.Definitions)
    repository = defs.get_repository_def()
    repository.get_all_jobs()
    print(f"{(time.perf_counter() - started) * 1000:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
