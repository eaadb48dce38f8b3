"""Pictures drawn without a display (matplotlib's Agg backend).

`progress_figure` / `plot_progress`: test accuracy and test loss per round (what `red run --plot` saves).
`topology_figure` / `draw_topology`: the graph, nodes coloured by role with a legend, short labels that
fit inside their nodes (`red topology`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from red.spec.model import Federation

# Metrics drawn by `--plot`, in panel order: (report key, axis label).
PROGRESS_METRICS = (("accuracy", "test accuracy"), ("loss", "test loss"))

# Role -> (colour, legend text). Roles come from each schema class's graph_of().
ROLE_STYLE: dict[str, tuple[str, str]] = {
    "eval": ("#d62728", "server (aggregates, evaluates)"),
    "aggregate": ("#ff7f0e", "cluster head (aggregates)"),
    "train": ("#1f77b4", "client (trains)"),
    "train+eval": ("#2ca02c", "peer (trains, evaluates)"),
}
OTHER_ROLE = ("#7f7f7f", "other")
LABEL_FONT_SIZE = 7.0
MAX_LABELLED_NODES = 40


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def progress_series(history: Sequence[Mapping[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Metric -> (rounds, values) from a run's round reports, for each metric of PROGRESS_METRICS."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for key, _ in PROGRESS_METRICS:
        points = [
            (int(r["round"]), float(r["metrics"][key]))
            for r in history
            if r.get("event") == "round" and key in (r.get("metrics") or {})
        ]
        out[key] = ([p[0] for p in points], [p[1] for p in points])
    return out


def progress_figure(history: Sequence[Mapping[str, Any]]) -> Any:
    """One panel per metric (accuracy, loss), rounds on the x axis."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    series = progress_series(history)
    fig, axes = plt.subplots(1, len(PROGRESS_METRICS), figsize=(10, 4))
    for ax, (key, label) in zip(axes, PROGRESS_METRICS, strict=True):
        rounds, values = series[key]
        ax.plot(rounds, values, marker="o", markersize=3, color="#1f77b4" if key == "accuracy" else "#d62728")
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        if key == "accuracy":
            ax.set_ylim(0, 1)
        if not rounds:
            ax.text(0.5, 0.5, f"no {key} reported", ha="center", va="center", transform=ax.transAxes)
        ax.grid(True, alpha=0.3)
    name = history[0].get("federation", "") if history else ""
    fig.suptitle(f"{name}: test accuracy and loss per round")
    fig.tight_layout()
    return fig


def plot_progress(history: Sequence[Mapping[str, Any]], path: str) -> None:
    """Save accuracy and loss per round to a PNG."""
    fig = progress_figure(history)
    fig.savefig(path, dpi=100)
    _plt().close(fig)


def short_label(node_id: str) -> str:
    """`client_12` -> `12`, `head_3` -> `H3`, `server` -> `S`: short enough to sit inside a node."""
    if node_id.startswith("client_"):
        return node_id.removeprefix("client_")
    if node_id.startswith("head_"):
        return "H" + node_id.removeprefix("head_")
    if node_id == "server":
        return "S"
    return node_id


def node_size_for(labels: Sequence[str], font_size: float = LABEL_FONT_SIZE) -> float:
    """Marker area (points²) of a circle wide enough for the longest label at `font_size`."""
    longest = max((len(label) for label in labels), default=1)
    diameter = max(2.2, 0.75 * longest + 1.4) * font_size  # a glyph is ~0.6 em wide; plus a margin
    return diameter**2


def topology_figure(fed: Federation) -> Any:
    """The federation's graph, as the schema would build it (no Ray needed)."""
    import networkx as nx
    from matplotlib.lines import Line2D

    from red.registry import schemas

    drawn, roles = schemas.get(fed.spec.schema_).graph_of(fed)
    g = nx.Graph()  # a star's graph is not networkx's (red.star_graph); the layouts below need one
    g.add_nodes_from(drawn.nodes)
    g.add_edges_from(drawn.edges)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 7))
    pos = nx.kamada_kawai_layout(g) if g.number_of_nodes() <= 200 else nx.spring_layout(g, seed=0)
    labelled = g.number_of_nodes() <= MAX_LABELLED_NODES
    labels = {n: short_label(n) for n in g.nodes} if labelled else {}
    size = node_size_for(list(labels.values())) if labelled else 60.0
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#999999", width=0.8)
    nx.draw_networkx_nodes(
        g, pos, ax=ax, node_size=size, node_color=[ROLE_STYLE.get(roles[n], OTHER_ROLE)[0] for n in g.nodes]
    )
    if labelled:
        nx.draw_networkx_labels(g, pos, labels, ax=ax, font_size=LABEL_FONT_SIZE, font_color="white")
    used = set(roles.values())
    present = [r for r in ROLE_STYLE if r in used]
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=9, color=ROLE_STYLE[r][0], label=ROLE_STYLE[r][1])
        for r in present
    ]
    note = "labels: client number, S server, H cluster head" if labelled else ""
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0, -0.01),
        ncol=2,
        frameon=False,
        title=note or None,
        title_fontsize=8,
        fontsize=8,
        alignment="left",
    )
    ax.set_title(f"{fed.name}: {fed.spec.schema_} ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)")
    ax.margins(0.08)
    ax.axis("off")
    fig.tight_layout()
    return fig


def draw_topology(fed: Federation, path: str) -> None:
    """Save the federation's graph to a PNG."""
    fig = topology_figure(fed)
    fig.savefig(path, dpi=100)
    _plt().close(fig)
