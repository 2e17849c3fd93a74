"""Write the results: generated blocks inside docs/performance.md, and docs/performance.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .harness import Section

SKELETON = """# Performance

Regenerate with `bash benchmarks/run` (about 30 minutes on 2 cores).

<!-- bench:meta -->
<!-- /bench:meta -->
"""


def update_markdown(path: Path, sections: list[Section], meta: str) -> None:
    """Replace each ``<!-- bench:KEY -->`` block; append sections the file lacks."""
    text = path.read_text() if path.exists() else SKELETON
    blocks = {"meta": meta, **{section.key: section.markdown for section in sections}}
    for key, body in blocks.items():
        pattern = re.compile(rf"<!-- bench:{key} -->.*?<!-- /bench:{key} -->", re.S)
        replacement = f"<!-- bench:{key} -->\n{body}\n<!-- /bench:{key} -->"
        if pattern.search(text):
            text = pattern.sub(replacement.replace("\\", "\\\\"), text)
        else:
            title = next((s.title for s in sections if s.key == key), key)
            text += f"\n## {title}\n\n{replacement}\n"
    path.write_text(text)


def chart(path: Path, data: dict[str, dict[str, Any]]) -> None:
    """One PNG with a panel per measurement that has numbers to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    panels = [_overhead, _dagster, _tools, _strategy_time, _strategy_readers, _loading]
    for ax, panel in zip(axes.flat, panels, strict=True):
        if not panel(ax, data):
            ax.set_axis_off()
    fig.suptitle("matviews-dagster benchmarks (median of repeated runs; whiskers min-max)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax: Any, labels: list[str], groups: dict[str, list[dict[str, float]]]) -> None:
    width = 0.8 / max(len(groups), 1)
    for i, (name, samples) in enumerate(groups.items()):
        xs = [x + i * width for x in range(len(labels))]
        medians = [s["median"] for s in samples]
        errors = [[s["median"] - s["min"] for s in samples], [s["max"] - s["median"] for s in samples]]
        ax.bar(xs, medians, width, yerr=errors, label=name, capsize=3)
    ax.set_xticks([x + width * (len(groups) - 1) / 2 for x in range(len(labels))], labels, fontsize=8)
    ax.legend(fontsize=8)


def _axes(ax: Any, title: str, xlabel: str, ylabel: str) -> bool:
    """Log-scale y, labels and a small legend: the finish every line panel shares."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (log)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return True


def _overhead(ax: Any, data: dict[str, dict[str, Any]]) -> bool:
    results = data.get("overhead", {}).get("results")
    if not results:
        return False
    labels = [f"{r['rows']:,} rows\n{r['strategy']}" for r in results]
    _bars(ax, labels, {"bare psycopg": [r["bare"] for r in results], "matviews": [r["matviews"] for r in results]})
    ax.set_yscale("log")
    ax.set_ylabel("ms per refresh (log)")
    ax.set_title("1. Library overhead")
    return True


def _dagster(ax: Any, data: dict[str, dict[str, Any]]) -> bool:
    results = data.get("dagster", {}).get("results")
    if not results:
        return False
    labels = [f"{r['rows']:,} rows" for r in results]
    _bars(
        ax,
        labels,
        {
            "hand-written @asset": [r["hand_written"] for r in results],
            "matviews asset": [r["matviews"] for r in results],
        },
    )
    ax.set_ylabel("ms per materialization")
    ax.set_title("2. Dagster overhead (in-process run)")
    return True


def _tools(ax: Any, data: dict[str, dict[str, Any]]) -> bool:
    tools = data.get("tools")
    if not tools:
        return False
    _bars(ax, ["one refresh, whole process"], {name: [sample] for name, sample in tools.items()})
    ax.set_yscale("log")
    ax.set_ylabel("wall ms (log)")
    ax.set_title("3. Against the alternatives")
    return True


def _by_strategy(data: dict[str, dict[str, Any]], value: str) -> dict[str, tuple[list[int], list[float]]]:
    lines: dict[str, tuple[list[int], list[float]]] = {}
    for r in data.get("strategies", {}).get("results", []):
        xs, ys = lines.setdefault(r["strategy"], ([], []))
        xs.append(r["percent"])
        ys.append(r["refresh"]["median"] if value == "refresh" else r[value])
    return lines


COLORS = {"regular": "tab:blue", "concurrent": "tab:orange", "swap": "tab:green"}


def _strategy_time(ax: Any, data: dict[str, dict[str, Any]]) -> bool:
    lines = _by_strategy(data, "refresh")
    if not lines:
        return False
    for strategy, (xs, ys) in lines.items():
        ax.plot([str(x) + "%" for x in xs], ys, marker="o", label=strategy, color=COLORS.get(strategy))
    title = f"4a. Refresh time, {data['strategies']['rows']:,}-row view"
    return _axes(ax, title, "rows changed since the last refresh", "refresh ms")


def _strategy_readers(ax: Any, data: dict[str, dict[str, Any]]) -> bool:
    lines = _by_strategy(data, "max")
    if not lines:
        return False
    for strategy, (xs, ys) in lines.items():
        ax.plot([str(x) + "%" for x in xs], ys, marker="o", label=f"{strategy}: worst read", color=COLORS.get(strategy))
    for strategy, (xs, ys) in _by_strategy(data, "p99").items():
        ax.plot(
            [str(x) + "%" for x in xs],
            ys,
            linestyle="--",
            marker=".",
            label=f"{strategy}: p99",
            color=COLORS.get(strategy),
        )
    return _axes(ax, "4b. What readers wait", "rows changed since the last refresh", "read latency, ms")


def _loading(ax: Any, data: dict[str, dict[str, Any]]) -> bool:
    loading = data.get("scale", {}).get("loading")
    if not loading:
        return False
    views = [r["views"] for r in loading]
    for key, label in (
        ("validate_plain", "plain assets: dagster definitions validate"),
        ("validate_ours", "matviews: dagster definitions validate"),
        ("load_plain", "plain assets: load in-process"),
        ("load_ours", "matviews: load in-process"),
    ):
        ax.plot(views, [r[key]["median"] for r in loading], marker="o", label=label)
    ax.set_xscale("log")
    return _axes(ax, "5. Loading definitions", "views", "ms")
