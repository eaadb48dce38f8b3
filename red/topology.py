"""Graph builders for the built-in topologies: pure networkx, no Ray.

Every builder returns an undirected ``nx.Graph`` whose nodes are node ids, but `star`, whose graph
needs no networkx (`red.star_graph.StarGraph`, with the same interface for what Red asks). Edges are the only
allowed communication paths: the TopologyManager refuses anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import networkx as nx

from red.errors import TopologyError
from red.star_graph import StarGraph


def star(center: str, leaves: Sequence[str]) -> StarGraph:
    """A star, without networkx (see `red.star_graph`)."""
    return StarGraph(center, leaves)


def ring(ids: Sequence[str]) -> nx.Graph:
    if len(ids) < 2:
        raise TopologyError(f"a ring needs at least 2 nodes, got {len(ids)}; raise spec.clients")
    g = nx.Graph()
    g.add_nodes_from(ids)
    if len(ids) == 2:
        g.add_edge(ids[0], ids[1])
    else:
        g.add_edges_from((ids[i], ids[(i + 1) % len(ids)]) for i in range(len(ids)))
    return g


def mesh(ids: Sequence[str]) -> nx.Graph:
    g = nx.complete_graph(len(ids))
    return nx.relabel_nodes(g, dict(enumerate(ids)))


def k_regular(ids: Sequence[str], degree: int, seed: int = 0) -> nx.Graph:
    n = len(ids)
    if degree >= n or (degree * n) % 2:
        raise TopologyError(
            f"no {degree}-regular graph on {n} nodes: degree must be below the node count and "
            "degree x nodes even; change spec.topology.degree"
        )
    # Connected graphs only: gossip on a disconnected graph never reaches consensus.
    for attempt in range(50):
        g = nx.random_regular_graph(degree, n, seed=seed + attempt)
        if nx.is_connected(g):
            return nx.relabel_nodes(g, dict(enumerate(ids)))
    raise TopologyError(f"could not draw a connected {degree}-regular graph on {n} nodes; raise the degree")


def custom(ids: Sequence[str], edges: Iterable[Sequence[str]]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(ids)
    known = set(ids)
    for edge in edges:
        a, b = edge[0], edge[1]
        for n in (a, b):
            if n not in known:
                raise TopologyError(f"edge ({a}, {b}) names {n!r}, which is not a node of this federation")
        if a == b:
            raise TopologyError(f"edge ({a}, {b}) is a self-loop; remove it from spec.topology.edges")
        g.add_edge(a, b)
    isolated = [n for n in ids if g.degree(n) == 0]
    if isolated:
        raise TopologyError(f"nodes {isolated} have no edges; connect them in spec.topology.edges")
    return g


def hierarchy(root: str, groups: Mapping[str, Sequence[str]]) -> nx.Graph:
    """Root — cluster heads — their members (ClusterFederatedLearning)."""
    g = nx.Graph()
    g.add_node(root)
    for head, members in groups.items():
        g.add_edge(root, head)
        g.add_edges_from((head, m) for m in members)
    return g


def group_evenly(ids: Sequence[str], size: int) -> list[list[str]]:
    """Split ids into groups of about ``size`` (the last ones absorb the remainder evenly)."""
    n_groups = max(1, round(len(ids) / size))
    return [list(ids[i::n_groups]) for i in range(n_groups)]
