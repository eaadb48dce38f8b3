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
        for i in range(limit + extra):
            fed.send("tick", i, to="hub")
        hub = fed.handle("hub")
        # Messages travel through the TopologyManager, so the driver's ping may overtake the last of them:
        # wait for the deliveries, then require the exact count.
        wait_until("every tick delivered", lambda: ray.get(hub.ping.remote())["dropped"] >= extra, timeout_s=60)
        assert ray.get(hub.ping.remote())["dropped"] == extra
        first = ray.get(hub.receive.remote(True, 5))
        assert first.body == extra  # the oldest were dropped, the newest kept
        assert ray.get(fed.handle("a").ping.remote())["dropped"] == 0
