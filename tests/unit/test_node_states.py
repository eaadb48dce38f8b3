"""The pooled nodes' state as the TopologyManager keeps it (`red.runtime.node_states`), without Ray.

What a restart relies on: Ray re-runs the manager's constructor with the arguments it was created with,
so a fresh `TopologyManager(..., states=initial)` must hand out exactly the initial states again, and
check-ins must replace a node's state whole (the host sends its current copy).
"""

from __future__ import annotations

import networkx as nx

from red.runtime.node import shared_set
from red.runtime.node_states import NodeStates
from red.runtime.topology_manager import TopologyManager

INITIAL = {f"client_{i}": {"index": i} for i in range(3)}


def test_a_new_manager_hands_out_the_initial_states_again() -> None:
    graph = nx.star_graph(["server", *INITIAL])
    first = TopologyManager("f", ids=["server", *INITIAL], edges=list(graph.edges), states=INITIAL)
    first.checkin({"client_0": {"index": 0, "version": 5}})
    assert first.checkout(["client_0"]) == {"client_0": {"index": 0, "version": 5}}
    # The restarted incarnation: same constructor arguments, none of the first one's check-ins.
    again = TopologyManager("f", ids=["server", *INITIAL], edges=list(graph.edges), states=INITIAL)
    assert again.checkout(list(INITIAL)) == INITIAL
    assert INITIAL["client_0"] == {"index": 0}, "a check-in must not write into the constructor's arguments"


def test_checkout_gives_copies_and_checkin_replaces_whole_states() -> None:
    states = NodeStates(INITIAL)
    out = states.checkout(["client_1", "client_9"])
    assert out == {"client_1": {"index": 1}, "client_9": {}}  # a node never seen: empty, not an error
    out["client_1"]["version"] = 3
    assert states.checkout(["client_1"]) == {"client_1": {"index": 1}}, "checkout must hand out copies"
    states.checkin({"client_1": {"index": 1, "version": 3, "params": [1.0]}})
    states.checkin({"client_1": {"index": 1, "version": 4}})
    assert states.checkout(["client_1"]) == {"client_1": {"index": 1, "version": 4}}


def test_equal_neighbourhoods_are_one_set_and_still_each_nodes_own_answer() -> None:
    ids = ["server", *INITIAL, "peer"]
    edges = [*nx.star_graph(["server", *INITIAL]).edges, ("client_0", "peer")]
    tm = TopologyManager("f", ids=ids, edges=edges)
    # client_1 and client_2 both have {server}: one shared (frozen) set, not one each.
    assert tm.neighbors["client_1"] is tm.neighbors["client_2"]
    assert isinstance(tm.neighbors["client_1"], frozenset)
    assert tm.get_neighbors("client_0") == ["peer", "server"] and tm.get_neighbors("client_1") == ["server"]
    assert tm.get_neighbors("server") == sorted(INITIAL) and tm.get_neighbors("peer") == ["client_0"]
    assert tm.edge_count == len(edges)


def test_shared_set_gives_one_object_per_distinct_neighbourhood() -> None:
    # What the TopologyManager and every pool host keep their neighbourhoods with.
    table: dict[frozenset[str], frozenset[str]] = {}
    a, b, c = shared_set(table, ["server"]), shared_set(table, ("server",)), shared_set(table, ["server", "peer"])
    assert a is b and a == frozenset({"server"})
    assert c == frozenset({"server", "peer"}) and c is not a
    assert shared_set(table, iter(["peer", "server", "peer"])) is c and len(table) == 2
