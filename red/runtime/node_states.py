"""Where pooled virtual nodes keep their state between uses: a small dict per node id.

Held by the TopologyManager actor (one process fewer than an actor of its own: about 60 MB and a second
of start-up CPU). A `PoolHost` checks a batch's states out on first use and writes them back after every
batch; see `red.runtime.pool` for why that makes a restart of either side lose nothing.
"""

from __future__ import annotations

from typing import Any


class NodeStates:
    """Virtual node id → its state (version, data index, and ``params`` only for programs that keep them).

    ``initial`` is what the federation starts every node with (each node's data index). A restarted
    TopologyManager is built from the same arguments, so it has these again; the hosts' next check-ins
    put the versions back.
    """

    def __init__(self, initial: dict[str, dict[str, Any]] | None = None) -> None:
        # Not copied: the constructor's arguments are this object's alone (unpickled for it by Ray), and
        # a checkin replaces a node's dict rather than changing it. A copy was 1.8 MB at 10,000 nodes.
        self._state: dict[str, dict[str, Any]] = dict(initial or {})

    def checkout(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: dict(self._state.get(i, {})) for i in ids}

    def checkin(self, states: dict[str, dict[str, Any]]) -> None:
        for nid, st in states.items():
            self._state[nid] = st
