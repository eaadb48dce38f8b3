"""The graph each built-in schema builds from a spec, without Ray (for drawing and validation)."""

from __future__ import annotations

import networkx as nx

from red import topology
from red.spec.model import Federation


def graph_for(fed: Federation) -> tuple[nx.Graph, dict[str, str]]:
    """(graph, node id → role) for the spec's schema."""
    s = fed.spec
    ids = [f"client_{i}" for i in range(s.clients)]
    name = s.schema_
    if name == "star":
        return topology.star("server", ids), {"server": "eval", **{i: "train" for i in ids}}
    if name == "cluster":
        groups = topology.group_evenly(ids, s.topology.cluster_size or max(1, round(len(ids) ** 0.5)))
        heads = {f"head_{g}": members for g, members in enumerate(groups)}
        roles = {"server": "eval", **{h: "aggregate" for h in heads}, **{i: "train" for i in ids}}
        return topology.hierarchy("server", heads), roles
    roles = {i: "train+eval" for i in ids}
    if name == "ring":
        return topology.ring(ids), roles
    if name == "mesh":
        return topology.mesh(ids), roles
    if name == "k-regular":
        return topology.k_regular(ids, s.topology.degree or 2, seed=s.seed), roles
    if name == "custom":
        return topology.custom(ids, s.topology.edges or []), roles
    raise ValueError(f"no built-in layout for schema {name!r}")
