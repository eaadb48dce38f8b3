"""The checkpoint store (red.checkpoint) on a local directory and on a real S3-compatible server (SeaweedFS):
round trips, keying, no pickle ever loaded, and crashes mid-write that never wedge a later resume."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import torch

from red.checkpoint import KEEP, Checkpointer, join_tensors, split_tensors
from red.errors import CheckpointError


@dataclass
class Store:
    """Where a test's checkpoints live, and raw access to the same storage (to tamper with it)."""

    url: str
    options: dict[str, Any]
    fs: Any
    root: str

    def checkpointer(self, key: str | None = None, every_rounds: int = 2) -> Checkpointer:
        return Checkpointer(self.url, every_rounds, key=key, storage_options=self.options)

    def put(self, rel: str, data: bytes) -> None:
        path = f"{self.root}/{rel}"
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe(path, data)

    def names(self, rel: str = "") -> list[str]:
        self.fs.invalidate_cache()
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(f"{self.root}/{rel}".rstrip("/")))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        fs = fsspec.filesystem("file")
        return Store(str(tmp_path / "ckpt"), {}, fs, str(tmp_path / "ckpt"))
    server = request.getfixturevalue("s3_server")
    prefix = server.unique_prefix()
    return Store(f"s3://{prefix}", server.storage_options(), server.filesystem(), prefix)


def star_state(scale: float = 1.0) -> dict[str, Any]:
    return {
        "params": {
            "fc1.weight": np.arange(12, dtype=np.float32).reshape(3, 4) * scale,
            "fc1.bias": np.full(3, 0.5 * scale, dtype=np.float64),
        },
        "clientVersions": {"client_0": 4, "client_1": 3},
        "participation": {"client_0": 4, "client_1": 4},
        "algorithmState": {"momentum": torch.ones(2, 2) * scale, "steps": (1, 2), "lr": 0.1, "name": "x"},
    }


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (a, b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b, (a, b)


def test_round_trip_is_exact(store: Store) -> None:
    ck = store.checkpointer()
    saved = ck.save(4, star_state())
    assert saved.round == 4 and saved.path == f"{store.url}/round-000004" and saved.time.endswith("Z")
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == 4
    want = star_state()
    want["algorithmState"]["momentum"] = want["algorithmState"]["momentum"].numpy()  # tensors come back as numpy
    want["algorithmState"]["steps"] = [1, 2]  # tuples as lists (JSON)
    assert_same({k: v for k, v in loaded.items() if k != "round"}, want)


def test_decentralized_state_round_trips(store: Store) -> None:
    # ring/mesh checkpoints hold every node's model: params nested one level deeper.
    state = {"params": {f"client_{i}": {"w": np.full((2, 2), float(i))} for i in range(3)}}
    store.checkpointer().save(2, state)
    loaded = store.checkpointer().load_latest()
    assert loaded is not None
    assert_same(loaded["params"], state["params"])


def test_keyed_folders_never_see_each_other(store: Store) -> None:
    # On Kubernetes the key is the Federation's uid: a new Federation with an old one's name starts fresh.
    store.checkpointer(key="uid-old").save(6, star_state())
    assert store.checkpointer(key="uid-new").load_latest() is None
    assert store.checkpointer(key="uid-old").load_latest() is not None
    assert store.names() == ["uid-old"]


def test_newest_save_wins_and_old_ones_are_pruned(store: Store) -> None:
    ck = store.checkpointer()
    for r in range(2, 2 * (KEEP + 3), 2):
        ck.save(r, star_state(scale=r))
    last = 2 * (KEEP + 2)
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == last
    np.testing.assert_array_equal(loaded["params"]["fc1.bias"], np.full(3, 0.5 * last))
    # Complete checkpoints left (SeaweedFS may keep an emptied folder a while: nothing in it is a checkpoint).
    folders = [n for n in store.names() if n.startswith("round-") and store.fs.exists(f"{store.root}/{n}/state.json")]
    assert folders == [f"round-{r:06d}" for r in range(last - 2 * (KEEP - 1), last + 1, 2)]


def test_nothing_saved_yet_is_none(store: Store) -> None:
    assert store.checkpointer().load_latest() is None


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_planted_pickle_is_never_executed(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ck = store.checkpointer()
    ck.save(2, star_state())
    blob = pickle.dumps(Payload(marker))
    digest = hashlib.sha256(blob).hexdigest()
    # A newer checkpoint whose tensors file is a pickle, with a state.json that vouches for its hash, and the
    # pointer moved to it: the loader parses safetensors and JSON only, so it refuses it and uses round 2.
    record = {"format": 1, "round": 4, "time": "", "state": {"params": {"__tensor__": "t0"}},
              "tensors": {"file": f"tensors-{digest[:16]}.safetensors", "sha256": digest, "bytes": len(blob)}}
    store.put(f"round-000004/tensors-{digest[:16]}.safetensors", blob)
    store.put("round-000004/state.json", json.dumps(record).encode())
    store.put("latest.json", json.dumps({"format": 1, "round": 4, "dir": "round-000004"}).encode())
    # And a pickle as state.json itself.
    store.put("round-000005/state.json", blob)
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == 2
    assert not marker.exists(), "a pickle from storage was executed"


def test_an_old_pickle_checkpoint_is_refused_not_loaded(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    store.put("round-000003.pkl", pickle.dumps(Payload(marker)))
    store.put("latest.json", json.dumps({"round": 3, "file": "round-000003.pkl"}).encode())
    with pytest.raises(CheckpointError, match="pickle checkpoint of an older Red.*delete it to start fresh"):
        store.checkpointer().load_latest()
    assert not marker.exists()


def test_a_crash_mid_save_falls_back_to_the_previous_checkpoint(store: Store) -> None:
    ck = store.checkpointer()
    ck.save(2, star_state(scale=2))
    # A crash while saving round 4: half a tensors file, a torn temporary state.json, a torn temporary
    # pointer. None of it is a checkpoint; the pointer still names round 2.
    store.put("round-000004/tensors-0123456789abcdef.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{\"t0\"")
    store.put("round-000004/.state.json.tmp-0badc0ffee00", b'{"format": 1, "round": 4, "tens')
    store.put(".latest.json.tmp-0badc0ffee00", b'{"format": 1, "rou')
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == 2
    # The retry gets to round 4 again and saves over the debris; that save is then the one loaded.
    retry = store.checkpointer()
    retry.save(4, star_state(scale=4))
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == 4
    np.testing.assert_array_equal(loaded["params"]["fc1.bias"], np.full(3, 2.0))
    assert [n for n in store.names("round-000004") if ".tmp-" in n or n.startswith("tensors-0123")] == []


def test_a_torn_pointer_or_tensors_file_uses_the_newest_good_folder(store: Store) -> None:
    ck = store.checkpointer()
    ck.save(2, star_state(scale=2))
    ck.save(4, star_state(scale=4))
    ck.save(6, star_state(scale=6))
    # The pointer is garbage (a file system without atomic rename, a bad disk): the newest folder is used.
    store.put("latest.json", b'{"format": 1, "round": 6, "di')
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == 6
    # Round 6's tensors file is cut short: it no longer matches its sha256, so round 4 is used.
    (tensors,) = [n for n in store.names("round-000006") if n.startswith("tensors-")]
    store.put(f"round-000006/{tensors}", b"\x00" * 16)
    loaded = store.checkpointer().load_latest()
    assert loaded is not None and loaded["round"] == 4
    np.testing.assert_array_equal(loaded["params"]["fc1.bias"], np.full(3, 2.0))


def test_only_damaged_checkpoints_is_an_error_naming_the_fix(store: Store) -> None:
    store.checkpointer().save(2, star_state())
    (tensors,) = [n for n in store.names("round-000002") if n.startswith("tensors-")]
    store.put(f"round-000002/{tensors}", b"not the tensors")
    with pytest.raises(CheckpointError, match="does not match its sha256.*delete it to start fresh"):
        store.checkpointer().load_latest()


def test_a_first_save_that_crashed_is_a_fresh_start() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/first-crash/round-000002/tensors-0123456789abcdef.safetensors", b"\x00")
    assert Checkpointer("memory://first-crash").load_latest() is None


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({"algorithmState": {"seen": {1, 2}}}, r"state\.algorithmState\.seen: a set"),
        ({"algorithmState": {1: 0.5}}, r"state\.algorithmState: key 1 is not a string"),
        ({"params": {"w": np.array([object()], dtype=object)}}, r"state\.params\.w: an array of Python objects"),
        ({"x": {"__tensor__": "t0"}}, r"state\.x: the key '__tensor__' is reserved"),
    ],
)
def test_state_that_needs_pickle_is_refused_with_its_place_named(state: dict[str, Any], problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        split_tensors(state)


def test_split_and_join_are_inverse() -> None:
    state = {"a": [np.zeros(2), {"b": np.int64(3), "c": None, "d": True}], "e": "s"}
    tree, tensors = split_tensors(state)
    json.dumps(tree)  # the tree is plain JSON
    back = join_tensors(tree, tensors)
    np.testing.assert_array_equal(back["a"][0], np.zeros(2))
    assert back["a"][1] == {"b": 3, "c": None, "d": True} and back["e"] == "s"


@pytest.mark.parametrize(("round_", "rounds", "every", "due"), [(2, 10, 2, True), (3, 10, 2, False), (10, 10, 3, True),
                                                                 (9, 10, 3, True), (1, 10, 1, True), (4, 10, 3, False)])
def test_due_every_n_rounds_and_at_the_end(round_: int, rounds: int, every: int, due: bool) -> None:
    assert Checkpointer("/x", every).due(round_, rounds) is due
