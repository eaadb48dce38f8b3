"""What the pictures show: accuracy and loss per round; a topology legend and labels inside their nodes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from red.plots import ROLE_STYLE, progress_figure, short_label, topology_figure
from tests.helpers import make_fed


def _history(n: int = 12) -> list[dict[str, Any]]:
    return (
        [{"event": "start", "round": 0, "federation": "f", "metrics": {}}]
        + [
            {
                "event": "round",
                "round": r,
                "federation": "f",
                "metrics": {"accuracy": 1 - 0.5 * math.exp(-r / 4), "loss": 2 * math.exp(-r / 5)},
            }
            for r in range(1, n + 1)
        ]
        + [{"event": "done", "round": n, "federation": "f", "metrics": {"accuracy": 0.99, "loss": 0.1}}]
    )


def test_progress_plot_draws_accuracy_and_loss_per_round() -> None:
    history = _history()
    fig = progress_figure(history)
    by_label = {ax.get_ylabel(): ax for ax in fig.axes}
    assert set(by_label) == {"test accuracy", "test loss"}
    rounds = list(range(1, 13))
    for label, key in (("test accuracy", "accuracy"), ("test loss", "loss")):
        (line,) = by_label[label].get_lines()
        assert list(line.get_xdata()) == rounds
        assert list(line.get_ydata()) == [r["metrics"][key] for r in history if r["event"] == "round"]


def test_progress_plot_says_when_a_metric_is_missing() -> None:
    history = [{"event": "round", "round": 1, "federation": "f", "metrics": {"accuracy": 0.5}}]
    fig = progress_figure(history)
    (loss_ax,) = [ax for ax in fig.axes if ax.get_ylabel() == "test loss"]
    assert [t.get_text() for t in loss_ax.texts] == ["no loss reported"]


@pytest.mark.parametrize(
    ("schema", "extra", "roles"),
    [
        ("star", {}, ["eval", "train"]),
        ("cluster", {"topology": {"clusterSize": 4}}, ["eval", "aggregate", "train"]),
        ("ring", {}, ["train+eval"]),
    ],
)
def test_topology_has_a_legend_of_the_roles_it_shows(schema: str, extra: dict[str, Any], roles: list[str]) -> None:
    fig = topology_figure(make_fed("t", schema=schema, clients=12, **extra))
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [ROLE_STYLE[r][1] for r in roles]
    node_colours = {tuple(c) for c in fig.axes[0].collections[1].get_facecolors().round(3)}
    import matplotlib.colors as mcolors

    assert node_colours == {tuple(round(x, 3) for x in mcolors.to_rgba(ROLE_STYLE[r][0])) for r in roles}


@pytest.mark.parametrize("clients", [5, 12, 30])
def test_topology_labels_fit_inside_their_nodes(clients: int) -> None:
    fig = topology_figure(make_fed("t", schema="cluster", clients=clients))
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    nodes = ax.collections[1]
    diameter_px = math.sqrt(nodes.get_sizes()[0]) * fig.dpi / 72
    texts = [t for t in ax.texts if t.get_text()]
    assert len(texts) == len(nodes.get_offsets())
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.width < diameter_px * 0.9 and box.height < diameter_px * 0.9, text.get_text()


def test_short_labels() -> None:
    assert [short_label(n) for n in ("client_12", "head_3", "server", "peer-x")] == ["12", "H3", "S", "peer-x"]
