"""The report's charts, drawn with matplotlib and returned as inline SVG (or a PNG data URI).

Each chart is its own ``matplotlib.figure.Figure``: pyplot is never used, so nothing here
touches pyplot's current figure, and reports may be rendered on several threads at once.
SVG keeps the page standalone and sharp; the timeline of a very large run is a PNG instead,
because one SVG element per task would make the page too heavy to open.
"""
from __future__ import annotations

import base64
import heapq
import html
import io
import re
import sys
from collections.abc import Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    # we draw on Figure objects only; Agg renders without a display. Once pyplot is imported (a notebook),
    # switching the backend would close the user's figures, and no backend matters to us, so leave theirs.
    matplotlib.use("Agg")

import numpy as np  # noqa: E402  (matplotlib's own dependency)
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dmsreport.formatting import clock_at, duration_unit, short_node  # noqa: E402
from dmsreport.model import TaskView, as_number, is_numeric, natural_key  # noqa: E402

COLOURS = {"succeeded": "#2f9e5b", "failed": "#d64545", "cancelled": "#9aa1ab", "running": "#3b7dd8",
           "waiting": "#d9a93a"}
ORDER = ("succeeded", "failed", "cancelled", "running", "waiting")
INK, GRID = "#333a45", "#e3e6ea"
# drop the creator/date/type blocks (they name http URLs and change on every render)
_NO_METADATA = {"Creator": None, "Date": None, "Type": None, "Format": None}
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)
_ID = re.compile(r'(\sid=")([^"]+)(")')
_REFERENCE = re.compile(r'((?:xlink:)?href="#|url\(#)([^")]+)')


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=96, layout="constrained")


def _style(ax, grid_axis: str = "x") -> None:
    """One look for every chart: light grid behind, no box, quiet ink."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#b8bec6")
    ax.tick_params(colors=INK, labelsize=9)
    ax.grid(axis=grid_axis, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)


def svg_of(fig: Figure, label: str, prefix: str) -> str:
    """The figure as an ``<svg>`` element to place inline: no XML prolog, DOCTYPE, comments or metadata.

    matplotlib numbers its elements' ids from 1 in every figure (``patch_1``, glyphs ``DejaVuSans-30``), so
    several charts on one page would repeat ids: each id but a task bar's (``task-...``) gets ``prefix``,
    and the references to it follow.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    text = _COMMENT.sub("", _PROLOG.sub("", buffer.getvalue().decode("utf-8"), count=1))
    own = {found for found in (m.group(2) for m in _ID.finditer(text)) if not found.startswith("task-")}
    text = _ID.sub(lambda m: m.group(0) if m.group(2) not in own else f"{m.group(1)}{prefix}-{m.group(2)}{m.group(3)}", text)
    text = _REFERENCE.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}" if m.group(2) in own else m.group(0), text)
    return text.replace("<svg ", f'<svg class="chart-svg" role="img" aria-label="{html.escape(label)}" ', 1).strip()


def png_data_uri(fig: Figure, dpi: int = 96) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _legend(ax, outcomes: Sequence[str], **kwargs) -> None:
    handles = [Patch(facecolor=COLOURS[o], label=o) for o in ORDER if o in outcomes]
    if handles:
        ax.legend(handles=handles, frameon=False, fontsize=9, labelcolor=INK, **kwargs)


def counts_chart(counts: dict[str, int]) -> str:
    """Tasks by outcome, one horizontal bar each, the count written at its end."""
    names = [o for o in ORDER if o in counts]
    fig = _figure(5.2, 0.45 * len(names) + 0.7)
    ax = fig.add_subplot()
    values = [counts[n] for n in names]
    bars = ax.barh(names, values, color=[COLOURS[n] for n in names], height=0.6)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=4, fontsize=9, color=INK)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(values, default=0), 1) * 1.15)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _style(ax)
    ax.set_xlabel("tasks", fontsize=9)
    return svg_of(fig, "tasks by outcome: " + ", ".join(f"{n} {counts[n]}" for n in names), "counts")


def _lanes(views: Sequence[TaskView]) -> list[int]:
    """A lane within its node for each task, so that tasks sharing a node at once (task slots) sit side by
    side instead of hiding each other: each task takes the first lane free at its start."""
    order = sorted(range(len(views)), key=lambda i: (views[i].start, views[i].end or views[i].start))
    lane_of = [0] * len(views)
    free: dict[str, list[tuple[float, int]]] = {}  # node -> heap of (lane's end, lane)
    count: dict[str, int] = {}
    for i in order:
        view = views[i]
        heap = free.setdefault(view.node, [])
        if heap and heap[0][0] <= view.start:
            _, lane = heapq.heappop(heap)
        else:
            lane = count.get(view.node, 0)
            count[view.node] = lane + 1
        lane_of[i] = lane
        heapq.heappush(heap, (view.end if view.end is not None else view.start, lane))
    return lane_of


def timeline_chart(views: Sequence[TaskView], first: float, as_png: bool) -> tuple[str, int]:
    """A Gantt chart of the tasks that started: one row per node (a lane per task it ran at once), one bar
    per task from its start to its end, coloured by outcome.

    In SVG every bar is its own element with id ``task-<task id>``, so a reader (or a test) can find
    each task; as a PNG (``as_png``, a very large run) the bars are one collection, drawn fast.
    Returns the SVG (or the PNG's data URI) and the number of bars.
    """
    started = [v for v in views if v.start is not None]
    nodes = sorted({v.node for v in started}, key=natural_key)
    lanes = _lanes(started)
    width_of = {node: 0 for node in nodes}
    for view, lane in zip(started, lanes):
        width_of[view.node] = max(width_of[view.node], lane + 1)
    base, total = {}, 0
    for node in nodes:
        base[node], total = total, total + width_of[node]
    last = max((v.end for v in started if v.end is not None), default=first)
    divisor, unit = duration_unit(max(last - first, 1.0))
    extent = max(last - first, 1.0) / divisor
    lefts = np.array([(v.start - first) / divisor for v in started])
    widths = np.array([max(((v.end or v.start) - v.start) / divisor, extent * 0.002) for v in started])
    ys = np.array([base[v.node] + lane for v, lane in zip(started, lanes)], dtype=float)
    colours = [COLOURS.get(v.outcome, COLOURS["failed"]) for v in started]

    lane_inches = 0.28 if total <= 80 else max(0.05, 22.0 / total)
    fig = _figure(11, min(max(1.3 + lane_inches * total, 1.9), 40))
    ax = fig.add_subplot()
    if as_png:
        verts = [((x, y - 0.38), (x, y + 0.38), (x + w, y + 0.38), (x + w, y - 0.38)) for x, y, w in zip(lefts, ys, widths)]
        ax.add_collection(PolyCollection(verts, facecolors=colours, edgecolors="none"))
    else:
        bars = ax.barh(ys, widths, left=lefts, height=0.76, color=colours, edgecolor="white", linewidth=0.4)
        for rect, view in zip(bars.patches, started):
            rect.set_gid(f"task-{view.task.id}")
    if total > len(nodes):  # some node ran tasks side by side: mark where each node's lanes end
        for node in nodes[1:]:
            ax.axhline(base[node] - 0.5, color=GRID, linewidth=0.8, zorder=0)
    ax.set_xlim(0, extent * 1.01)
    ax.set_ylim(total - 0.5, -0.5)  # the first node on top
    step = max(1, len(nodes) // 60)  # beyond 60 nodes label every few, or the labels overlap
    shown = nodes[::step]
    ax.set_yticks([base[n] + (width_of[n] - 1) / 2 for n in shown])
    ax.set_yticklabels([short_node(n) for n in shown], fontsize=8 if len(shown) > 20 else 9)
    ax.tick_params(axis="y", length=0)
    _style(ax)
    ax.set_xlabel(f"{unit} since {clock_at(first)}", fontsize=9)
    ax.set_ylabel("node", fontsize=9)
    _legend(ax, {v.outcome for v in started}, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=5)
    label = f"timeline of {len(started)} tasks on {len(nodes)} nodes"
    return (png_data_uri(fig) if as_png else svg_of(fig, label, "timeline")), len(started)


def durations_chart(views: Sequence[TaskView]) -> str | None:
    """A histogram of task durations, stacked by outcome; None when fewer than two tasks have one (nothing to
    distribute: the page says the one duration instead)."""
    groups = {o: [v.duration_s for v in views if v.outcome == o and v.duration_s is not None] for o in ORDER}
    groups = {o: d for o, d in groups.items() if d}
    if sum(map(len, groups.values())) < 2:
        return None
    every = np.concatenate([np.asarray(d, dtype=float) for d in groups.values()])
    divisor, unit = duration_unit(float(every.max()))
    edges = np.histogram_bin_edges(every / divisor, bins="auto")
    if len(edges) > 41:
        edges = np.histogram_bin_edges(every / divisor, bins=40)
    fig = _figure(7.5, 3.0)
    ax = fig.add_subplot()
    ax.hist([np.asarray(d) / divisor for d in groups.values()], bins=edges, stacked=True,
            color=[COLOURS[o] for o in groups], edgecolor="white", linewidth=0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    _style(ax, "y")
    ax.set_xlabel(f"task duration ({unit})", fontsize=9)
    ax.set_ylabel("tasks", fontsize=9)
    _legend(ax, groups.keys(), loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=5)
    return svg_of(fig, f"histogram of the durations of {len(every)} tasks", "durations")


def parameter_chart(name: str, values: Sequence[str | None], views: Sequence[TaskView], prefix: str) -> str:
    """Each member's duration against one parameter, coloured by outcome: a numeric parameter on a
    numeric axis, any other as categories (in natural order). A member that never ran sits at 0 as a cross."""
    numeric = is_numeric(values)
    if numeric:
        xs = [as_number(v) for v in values]
        categories: list[str] = []
    else:
        categories = sorted({v if v not in (None, "") else "(none)" for v in values}, key=natural_key)
        index = {c: i for i, c in enumerate(categories)}
        xs = [float(index[v if v not in (None, "") else "(none)"]) for v in values]
    durations = [v.duration_s for v in views]
    divisor, unit = duration_unit(max((d for d in durations if d is not None), default=1.0))

    fig = _figure(8.5, 3.2)
    ax = fig.add_subplot()
    seen = set()
    for outcome in ORDER:
        ran = [(x, d / divisor) for x, d, v in zip(xs, durations, views) if v.outcome == outcome and x is not None and d is not None]
        never = [x for x, d, v in zip(xs, durations, views) if v.outcome == outcome and x is not None and d is None]
        if ran:
            px, py = zip(*ran)
            ax.scatter(px, py, s=22, color=COLOURS[outcome], alpha=0.85, linewidths=0, zorder=3)
            seen.add(outcome)
        if never:
            ax.scatter(never, [0.0] * len(never), s=26, marker="x", color=COLOURS[outcome], linewidths=1.2, zorder=3)
            seen.add(outcome)
    if categories:
        step = max(1, len(categories) // 30)
        ax.set_xticks(range(0, len(categories), step))
        ax.set_xticklabels(categories[::step], rotation=45 if max(map(len, categories)) * len(categories[::step]) > 80 else 0,
                           ha="right" if max(map(len, categories)) * len(categories[::step]) > 80 else "center", fontsize=8)
        ax.set_xlim(-0.6, len(categories) - 0.4)
    top = max((d / divisor for d in durations if d is not None), default=1.0)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    _style(ax, "y")
    ax.set_xlabel(name, fontsize=9)
    ax.set_ylabel(f"duration ({unit})", fontsize=9)
    _legend(ax, seen, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=5)
    return svg_of(fig, f"duration and outcome of each member against {name}", prefix)
