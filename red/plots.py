"""Pictures drawn without a display (matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from red.spec.model import Federation


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(history: Sequence[dict[str, Any]], path: str) -> None:
    """Accuracy (and loss) per round from a run's reports."""
    rounds = [r["round"] for r in history if r["event"] == "round" and "accuracy" in r["metrics"]]
    acc = [r["metrics"]["accuracy"] for r in history if r["event"] == "round" and "accuracy" in r["metrics"]]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rounds, acc, marker="o")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    name = history[0]["federation"] if history else ""
    ax.set_title(f"{name}: accuracy per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_topology(fed: Federation, path: str) -> None:
    """The federation's graph, coloured by role, as the schema would build it (no Ray needed)."""
    import networkx as nx

    from red.registry import schemas

    g, roles = schemas.get(fed.spec.schema_).graph_of(fed)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 7))
    colours = {"eval": "#d62728", "aggregate": "#ff7f0e", "train": "#1f77b4", "train+eval": "#2ca02c"}
    pos = nx.kamada_kawai_layout(g) if g.number_of_nodes() <= 200 else nx.spring_layout(g, seed=0)
    nx.draw_networkx(
        g, pos, ax=ax, node_color=[colours.get(roles[n], "#7f7f7f") for n in g.nodes],
        with_labels=g.number_of_nodes() <= 40, node_size=300, font_size=7,
    )
    ax.set_title(f"{fed.name}: {fed.spec.schema_} ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
