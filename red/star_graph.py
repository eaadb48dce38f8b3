"""The star's graph without networkx: the driver of a star federation asks it only a few questions.

The other topologies are networkx graphs (`red.topology`): rings, meshes and random regular graphs
use its generators and checks. A star needs none of that, and it is the topology that grows to
10,000 clients, where networkx cost the driver 10 MB of PSS for its import and 3.6 MB for the graph
(measured with 10,000 clients). `StarGraph` answers the part of networkx's ``Graph`` interface that
Red uses (``nodes``, ``edges``, ``degree``, ``neighbors``, ``has_edge``, ``in``, ``len``) from the
centre and the list of leaves; `red topology` turns it into a networkx graph to draw it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from red.errors import TopologyError


class StarGraph:
    """An undirected star: ``center`` joined to each of ``leaves`` (in their order, duplicates once)."""

    def __init__(self, center: str, leaves: Iterable[str]) -> None:
        self.center = center
        # A dict keeps the order (what networkx would list) and answers "is it a leaf" at once.
        self._leaves: dict[str, None] = dict.fromkeys(leaves)
        if center in self._leaves:
            raise TopologyError(f"the star's centre {center!r} is also one of its leaves; rename one of them")

    @property
    def nodes(self) -> list[str]:
        return [self.center, *self._leaves]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(self.center, leaf) for leaf in self._leaves]

    @property
    def degree(self) -> Degrees:
        """``degree(n)``, or ``(node, degree)`` pairs when iterated, as networkx's degree view."""
        return Degrees(self)

    def neighbors(self, node: str) -> Iterator[str]:
        if node == self.center:
            return iter(self._leaves)
        if node in self._leaves:
            return iter((self.center,))
        raise TopologyError(f"{node!r} is not a node of this star")

    def has_edge(self, a: str, b: str) -> bool:
        return (a == self.center and b in self._leaves) or (b == self.center and a in self._leaves)

    def number_of_nodes(self) -> int:
        return 1 + len(self._leaves)

    def number_of_edges(self) -> int:
        return len(self._leaves)

    def __contains__(self, node: object) -> bool:
        return node == self.center or node in self._leaves

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return self.number_of_nodes()


class Degrees:
    """A `StarGraph`'s degrees: called with a node, its degree; iterated, every (node, degree)."""

    def __init__(self, graph: StarGraph) -> None:
        self.graph = graph

    def __call__(self, node: str) -> int:
        if node == self.graph.center:
            return self.graph.number_of_edges()
        if node in self.graph:
            return 1
        raise TopologyError(f"{node!r} is not a node of this star")

    def __iter__(self) -> Iterator[tuple[str, int]]:
        yield self.graph.center, self.graph.number_of_edges()
        for leaf in self.graph.neighbors(self.graph.center):
            yield leaf, 1
