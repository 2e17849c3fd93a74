"""Write the results: performance.md's generated blocks and performance.png, both from performance.json.

``publish(out)`` reads ``out/performance.json`` (``results.Results``: ``{block key: Entry}``) and
regenerates both files from it alone, so every table and every chart panel come from one source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import table
from .results import FILENAME, Entry, Results, load, measured_at

SKELETON = f"""# Performance

Regenerate with `bash benchmarks/run` (about an hour on 2 cores). The tables between the
`bench:` markers and the chart are generated from [{FILENAME}]({FILENAME}) beside this file.

<!-- bench:meta -->
<!-- /bench:meta -->
"""

BLOCK = re.compile(r"<!-- bench:([\w-]+) -->")


def publish(out: Path) -> Results:
    """Regenerate ``out/performance.md`` and ``out/performance.png`` from ``out/performance.json``.

    Returns the results both were drawn from (``{block key: Entry}``).
    """
    results = load(out / FILENAME)
    render_markdown(out / "performance.md", results)
    chart(out / "performance.png", results)
    return results


def render_markdown(path: Path, results: Results) -> None:
    """Write every entry's table into its ``<!-- bench:KEY -->`` block and the meta block from ``results``.

    A block whose key has no entry is left exactly as it is (measured before the results file
    existed); an entry whose block the file lacks is appended under its title. The prose
    outside the blocks is kept.
    """
    text = path.read_text() if path.exists() else SKELETON
    for key, item in results.items():
        text = _replace_block(text, key, item["markdown"], title=item["title"])
    unmeasured = [key for key in dict.fromkeys(BLOCK.findall(text)) if key != "meta" and key not in results]
    text = _replace_block(text, "meta", _meta(results, unmeasured), title="Measured")
    path.write_text(text)


def _replace_block(text: str, key: str, body: str, *, title: str) -> str:
    """``text`` with the ``key`` block's body replaced, or the block appended under ``## title``."""
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->", re.S)
    block = f"<!-- bench:{key} -->\n{body}\n<!-- /bench:{key} -->"
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)  # a function: the body's backslashes stay as they are
    before = text.rstrip("\n")
    return f"{before}\n\n## {title}\n\n{block}\n"


def _meta(results: Results, unmeasured: list[str]) -> str:
    """When, how often and on what each table was measured, in the results file's order."""
    parts = [
        f"Generated from [{FILENAME}]({FILENAME}). Every figure is the median of the timed runs after a warm-up, "
        "with (min-max); every ratio compares medians taken in the same run, the contenders alternating."
    ]
    machines = list(dict.fromkeys(item["machine"] for item in results.values()))
    if results:
        header = ["table", "measured (UTC)", "timed runs", "took", *(["machine"] if len(machines) > 1 else [])]
        rows = [
            [
                f"`{key}`",
                f"{measured_at(item):%Y-%m-%d %H:%M}",
                f"{item['repeats']}{' (smoke run: small sizes, not for comparison)' if item['smoke'] else ''}",
                f"{item['elapsed_s']:.0f} s" if item["elapsed_s"] < 120 else f"{item['elapsed_s'] / 60:.1f} min",
                *([item["machine"]] if len(machines) > 1 else []),
            ]
            for key, item in results.items()
        ]
        parts.append(table(header, rows))
        if len(machines) == 1:
            parts.append(f"On {machines[0]}.")
    else:
        parts.append(f"No table has been measured into {FILENAME} yet.")
    if unmeasured:
        parts.append(
            f"Measured before {FILENAME} existed, so not in it and left as they were (their chart panels, "
            f"where they have one, say not measured until the suite runs again): "
            f"{', '.join(f'`{key}`' for key in unmeasured)}."
        )
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Panel:
    """One chart panel: the result keys it plots, and how.

    ``draw(ax, {key: Entry["data"]})`` plots and returns the panel's title, or ``None`` when
    the data holds nothing to plot; ``title`` is shown instead when a key has no entry.
    """

    title: str
    keys: tuple[str, ...]
    draw: Callable[[Any, dict[str, dict[str, Any]]], str | None]


def chart(path: Path, results: Results) -> list[str]:
    """Draw ``PANELS`` from ``results`` into one PNG at ``path``; return the panel titles as drawn.

    Each title ends with when its numbers were measured (the oldest of its entries), or
    "not measured" when one of its keys has no entry: nothing stale is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    titles = []
    for ax, panel in zip(axes.flat, PANELS, strict=True):
        entries = [results[key] for key in panel.keys if key in results]
        if len(entries) < len(panel.keys):
            _blank(ax, f"{panel.title}\nnot measured", f"no entry in {FILENAME}")
        elif (drawn := panel.draw(ax, {key: results[key]["data"] for key in panel.keys})) is None:
            _blank(ax, f"{panel.title}\n{_when(entries)}", "nothing to plot")
        else:
            ax.set_title(f"{drawn}\n{_when(entries)}")
        titles.append(ax.get_title())
    fig.suptitle(
        f"matviews-dagster benchmarks from {FILENAME} (median of repeated runs; whiskers min-max; "
        "each panel says when it was measured)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return titles


def _blank(ax: Any, title: str, note: str) -> None:
    """A panel with a title and a grey note in the middle (whatever a draw began is cleared)."""
    ax.cla()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", color="gray", transform=ax.transAxes)


def _when(entries: list[Entry]) -> str:
    """``measured YYYY-MM-DD`` of the oldest entry, marked when any is a smoke run."""
    oldest = min(measured_at(item) for item in entries)
    smoke = " (smoke run)" if any(item["smoke"] for item in entries) else ""
    return f"measured {oldest:%Y-%m-%d}{smoke}"


def _bars(ax: Any, labels: list[str], groups: dict[str, list[dict[str, float]]]) -> None:
    width = 0.8 / max(len(groups), 1)
    for i, (name, samples) in enumerate(groups.items()):
        xs = [x + i * width for x in range(len(labels))]
        medians = [s["median"] for s in samples]
        errors = [[s["median"] - s["min"] for s in samples], [s["max"] - s["median"] for s in samples]]
        ax.bar(xs, medians, width, yerr=errors, label=name, capsize=3)
    ax.set_xticks([x + width * (len(groups) - 1) / 2 for x in range(len(labels))], labels, fontsize=8)
    ax.legend(fontsize=8)


def _axes(ax: Any, title: str, xlabel: str, ylabel: str) -> str:
    """Log-scale y, labels and a small legend: the finish every line panel shares; returns ``title``."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (log)")
    ax.legend(fontsize=7)
    return title


def _overhead(ax: Any, data: dict[str, dict[str, Any]]) -> str | None:
    results = data["overhead"].get("results")
    if not results:
        return None
    labels = [f"{r['rows']:,} rows\n{r['strategy']}" for r in results]
    _bars(ax, labels, {"bare psycopg": [r["bare"] for r in results], "matviews": [r["matviews"] for r in results]})
    ax.set_yscale("log")
    ax.set_ylabel("ms per refresh (log)")
    return "1. Library overhead"


def _dagster(ax: Any, data: dict[str, dict[str, Any]]) -> str | None:
    results = data["dagster"].get("results")
    if not results:
        return None
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
    return "2. Dagster overhead (in-process run)"


def _tools(ax: Any, data: dict[str, dict[str, Any]]) -> str | None:
    tools = data["tools"]
    if not tools:
        return None
    _bars(ax, ["one refresh, whole process"], {name: [sample] for name, sample in tools.items()})
    ax.set_yscale("log")
    ax.set_ylabel("wall ms (log)")
    return "3. Against the alternatives"


def _by_strategy(data: dict[str, dict[str, Any]], value: str) -> dict[str, tuple[list[int], list[float]]]:
    lines: dict[str, tuple[list[int], list[float]]] = {}
    for r in data["strategies"].get("results", []):
        xs, ys = lines.setdefault(r["strategy"], ([], []))
        xs.append(r["percent"])
        ys.append(r["refresh"]["median"] if value == "refresh" else r[value])
    return lines


COLORS = {"regular": "tab:blue", "concurrent": "tab:orange", "swap": "tab:green"}


def _strategy_time(ax: Any, data: dict[str, dict[str, Any]]) -> str | None:
    lines = _by_strategy(data, "refresh")
    if not lines:
        return None
    for strategy, (xs, ys) in lines.items():
        ax.plot([str(x) + "%" for x in xs], ys, marker="o", label=strategy, color=COLORS.get(strategy))
    title = f"4a. Refresh time, {data['strategies']['rows']:,}-row view"
    return _axes(ax, title, "rows changed since the last refresh", "refresh ms")


def _strategy_readers(ax: Any, data: dict[str, dict[str, Any]]) -> str | None:
    lines = _by_strategy(data, "max")
    if not lines:
        return None
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


def _loading(ax: Any, data: dict[str, dict[str, Any]]) -> str | None:
    loading = data["scale"].get("loading")
    if not loading:
        return None
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


PANELS = (
    Panel("1. Library overhead", ("overhead",), _overhead),
    Panel("2. Dagster overhead (in-process run)", ("dagster",), _dagster),
    Panel("3. Against the alternatives", ("tools",), _tools),
    Panel("4a. Refresh time", ("strategies",), _strategy_time),
    Panel("4b. What readers wait", ("strategies",), _strategy_readers),
    Panel("5. Loading definitions", ("scale",), _loading),
)
"""The chart's panels, left to right and top to bottom (two rows of three)."""
