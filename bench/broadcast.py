"""TopologyManager broadcast throughput: messages/s and MB/s to 8 and 32 recipients.

Red's path: a node's ``send`` stores a large body once (``ray.put``) and the TopologyManager fans the
reference out; small bodies go inline. Baseline in the same run: the naive send that serialises the
body once per recipient (a direct actor call per recipient with the payload by value).

    python bench/broadcast.py [--messages 20]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import networkx as nx
import numpy as np

from red.runtime.messages import Message
from red.runtime.node import FederatedNode


class Receiver(FederatedNode):
    def build(self, config: Any) -> None:
        import threading

        self.count = 0
        self.cv = threading.Condition()

    def deliver(self, msg: Message) -> None:
        if msg.by_ref:
            import ray

            ray.get(msg.body)  # a receiver really fetches what it was sent
        with self.cv:
            self.count += 1
            self.cv.notify_all()

    def received(self) -> int:
        return self.count

    def wait_count(self, target: int, timeout: float = 120) -> int:
        with self.cv:
            self.cv.wait_for(lambda: self.count >= target, timeout)
            return self.count


class Sender(FederatedNode):
    def blast(self, n: int, nbytes: int, recipients: list[str], naive: bool, handles: list[Any]) -> float:
        import ray

        body = {"payload": np.ones(nbytes // 8, dtype=np.float64)}
        t = time.perf_counter()
        refs = []
        for _ in range(n):
            if naive:
                refs += [h.deliver.remote(Message("m", body, sender=self.id)) for h in handles]
            else:
                self.send("m", body, to=recipients)
        ray.get(refs)
        return t


def main() -> None:
    import ray

    from red.runtime.federation import FederatedBase
    from red.runtime.node import VirtualNode

    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20)
    args = ap.parse_args()
    ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ids = [f"r{i}" for i in range(32)]
    nodes = [VirtualNode(Sender, "sender", "train", "bench-bc", num_cpus=0.05)]
    nodes += [VirtualNode(Receiver, i, "train", "bench-bc", num_cpus=0.05) for i in ids]
    g = nx.Graph([("sender", i) for i in ids])
    fed = FederatedBase("bench-bc", nodes, g, broker={"cpu": 0.05})
    print(f"{'payload':>8} {'to':>3} {'path':>10} {'deliveries/s':>13} {'MB/s':>9}")
    try:
        fed.build()
        sender = fed.handle("sender")
        # Warm up both paths (connections from the sender to every receiver, route lookup) so the first
        # measured row does not pay for them.
        all_handles = [fed.handle(i) for i in ids]
        for naive in (False, True):
            before = ray.get([h.received.remote() for h in all_handles])
            ray.get(sender.blast.remote(2, 1024, ids, naive, all_handles))
            ray.get([h.wait_count.remote(b + 2) for h, b in zip(all_handles, before, strict=True)])
        for nbytes, label in ((1024, "1 KB"), (1 << 20, "1 MB"), (10 << 20, "10 MB")):
            n = args.messages if nbytes < (10 << 20) else max(3, args.messages // 4)
            for k in (8, 32):
                rec = ids[:k]
                handles = [fed.handle(i) for i in rec]
                rates = {}
                for naive in (False, True):
                    before = ray.get([h.received.remote() for h in handles])
                    t0 = time.perf_counter()
                    ray.get(sender.blast.remote(n, nbytes, rec, naive, handles))
                    ray.get([h.wait_count.remote(b + n) for h, b in zip(handles, before, strict=True)])
                    dt = time.perf_counter() - t0
                    rate = n * k / dt
                    rates[naive] = rate
                    path = "naive" if naive else "red"
                    print(f"{label:>8} {k:>3} {path:>10} {rate:>13.0f} {rate * nbytes / 1e6:>9.1f}")
                print(f"{label:>8} {k:>3} {'ratio':>10} {rates[False] / rates[True]:>12.2f}x (red / naive)")
    finally:
        fed.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
