"""One module per measurement; each exposes ``run(bench) -> Section``."""
