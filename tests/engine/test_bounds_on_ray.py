"""Node inboxes are bounded on a real Ray: messages routed by the real TopologyManager beyond a node's
limit drop the oldest, and the node counts (and reports) them."""

from __future__ import annotations

from typing import Any

import pytest

from red import topology
from red.runtime.federation import FederatedBase
from red.runtime.inbox import limit_for_degree
from red.runtime.node import FederatedNode, VirtualNode
from tests.helpers import wait_until

pytestmark = pytest.mark.ray


def test_a_flooded_node_keeps_the_newest_messages_and_counts_the_dropped(ray_clean: Any) -> None:
    ray = ray_clean
    ids = ["hub", "a", "b", "c"]
    nodes = [VirtualNode(FederatedNode, i, "train", "inbox") for i in ids]
    limit = limit_for_degree(3)  # the hub's inbox, sized from its three neighbours
    extra = 7
    with FederatedBase("inbox", nodes, topology.star("hub", ids[1:])) as fed:
        fed.build()
        hub = fed.handle("hub")

        def inbox() -> tuple[int, int]:
            p = ray.get(hub.ping.remote())
            return int(p["queued"]), int(p["dropped"])

        # The TopologyManager hands each message on without waiting, to an actor that runs calls on
        # several threads: messages sent at once may land in any order. So fill the inbox first, then
        # send the newest one at a time, each after the one before it has landed.
        for i in range(limit):
            fed.send("tick", i, to="hub")
        wait_until("the inbox full", lambda: inbox() == (limit, 0), timeout_s=60)
        for k in range(extra):
            fed.send("tick", limit + k, to="hub")
            wait_until(f"tick {limit + k} delivered", lambda k=k: inbox() == (limit, k + 1), timeout_s=60)
        assert ray.get(fed.handle("a").ping.remote())["dropped"] == 0
        kept = [ray.get(hub.receive.remote(True, 5)).body for _ in range(limit)]
        # The oldest were dropped and the newest kept, in the order they arrived.
        assert kept[-extra:] == list(range(limit, limit + extra)), kept[-extra:]
        assert len(set(kept)) == limit and set(kept) <= set(range(limit + extra))  # each message once
        assert inbox() == (0, extra)
