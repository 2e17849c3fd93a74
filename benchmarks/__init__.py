"""The benchmark harness: ``bash benchmarks/run`` (or ``python -m benchmarks``) regenerates docs/performance.md."""
