"""The node → driver progress record: typed (`RoundRecord`) on the way, the same checkpoint on disk."""

from __future__ import annotations

import numpy as np

from red.aggregation import Params
from red.runtime.messages import RoundRecord, VersionEntry
from red.schemas.star import latest_of


def test_the_round_record_becomes_exactly_the_checkpoint_format() -> None:
    # Checkpoints written before the record was typed must load, and new ones must look the same.
    rec = RoundRecord(round=3, metrics={"accuracy": 0.9}, participants=("client_0",),
                      client_versions={"client_0": 3}, participation={"client_0": 2},
                      algorithm_state={"buffer": 1})
    params: Params = {"w": np.ones(2)}
    state = latest_of(rec, params)
    assert state == {"round": 3, "params": params, "clientVersions": {"client_0": 3},
                     "participation": {"client_0": 2}, "algorithmState": {"buffer": 1}}
    entry = VersionEntry("server", 3, {"w": 1}, 0.0, rec)
    assert (entry.round, entry.metrics) == (3, {"accuracy": 0.9})
    bare = VersionEntry("client_0", 7, None, 0.0)  # a version without a round's results
    assert (bare.round, bare.metrics) == (7, {})
