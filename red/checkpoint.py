"""Checkpoints: the global model(s), the round, versions and algorithm state, every N rounds.

Written with fsspec, so ``path`` may be a local directory (on Kubernetes: a mounted PersistentVolumeClaim)
or any fsspec URL (``s3://bucket/prefix`` with the ``red[s3]`` extra, ``memory://`` ...).

Nothing read back is unpickled: a checkpoint is JSON (round, versions, algorithm state) plus one
safetensors file holding every array, so a checkpoint someone else could write (a shared bucket, a
volume) can never run code in the engine. One checkpoint is a folder::

    <path>/round-000006/tensors-<sha256[:16]>.safetensors   every array, by name
    <path>/round-000006/state.json                           the rest; names the tensors file and its sha256
    <path>/latest.json                                       {"round": 6, "dir": "round-000006"}

Every file is written to a temporary name and then renamed (an atomic replace on a POSIX file system; an
object store shows a whole object or none), in that order: tensors, state.json (the folder's commit
record), then the ``latest.json`` pointer. A crash at any point leaves the previous checkpoint loadable:
`load_latest` reads the pointer's folder and, when that is missing, torn or does not match its hash, the
newest folder that does, and ignores temporary files and folders without a state.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from red.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = 1
POINTER = "latest.json"
STATE = "state.json"
KEEP = 3
"""Complete checkpoints kept; older ones are deleted after each save."""
TENSOR_REF = "__tensor__"
INCOMPLETE = "incomplete"
_ROUND_DIR = re.compile(r"^round-(\d{6,})$")
_TENSORS_FILE = re.compile(r"^tensors-[0-9a-f]{16}\.safetensors$")


@dataclass(frozen=True)
class Saved:
    """Where and when a checkpoint was written (the engine reports it; the operator shows it in status)."""

    round: int
    path: str
    time: str

    def wire(self) -> dict[str, Any]:
        return {"round": self.round, "path": self.path, "time": self.time}


# --- encoding: a state dict <-> (JSON tree, named arrays) ------------------------------------------
def split_tensors(state: Any, where: str = "state") -> tuple[Any, dict[str, np.ndarray]]:
    """``state`` as a JSON-ready tree whose arrays are replaced by ``{"__tensor__": name}``, and the arrays.

    Allowed: dicts with string keys, lists and tuples (read back as lists), str, int, float, bool, None,
    numpy arrays and scalars, torch tensors (read back as numpy arrays). Anything else is refused with
    its place named: a checkpoint must never need pickle to be read."""
    tensors: dict[str, np.ndarray] = {}

    def walk(v: Any, at: str) -> Any:
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray) or _is_torch_tensor(v):
            arr = v if isinstance(v, np.ndarray) else v.detach().cpu().numpy()
            if arr.dtype == object:
                raise CheckpointError(f"cannot checkpoint {at}: an array of Python objects; use numeric arrays")
            name = f"t{len(tensors)}"
            tensors[name] = np.ascontiguousarray(arr)
            return {TENSOR_REF: name}
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for k, item in v.items():
                if not isinstance(k, str):
                    raise CheckpointError(
                        f"cannot checkpoint {at}: key {k!r} is not a string; use string keys (JSON objects)"
                    )
                if k == TENSOR_REF:
                    raise CheckpointError(f"cannot checkpoint {at}: the key {TENSOR_REF!r} is reserved")
                out[k] = walk(item, f"{at}.{k}")
            return out
        if isinstance(v, list | tuple):
            return [walk(item, f"{at}[{i}]") for i, item in enumerate(v)]
        raise CheckpointError(
            f"cannot checkpoint {at}: a {type(v).__name__} is neither JSON nor an array; keep checkpoint "
            "state (algorithm state included) to dicts, lists, numbers, strings and numpy arrays"
        )

    return walk(state, where), tensors


def join_tensors(tree: Any, tensors: dict[str, np.ndarray]) -> Any:
    """The inverse of `split_tensors`."""
    if isinstance(tree, dict):
        if set(tree) == {TENSOR_REF}:
            name = tree[TENSOR_REF]
            if name not in tensors:
                raise ValueError(f"names a tensor {name!r} that the tensors file lacks")
            return tensors[name]
        return {k: join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_tensors(v, tensors) for v in tree]
    return tree


def _is_torch_tensor(v: Any) -> bool:
    return type(v).__module__.startswith("torch") and hasattr(v, "detach") and hasattr(v, "numpy")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _Unusable(Exception):
    """A folder that is not a loadable checkpoint (why, for the log or the error)."""


# --- the store --------------------------------------------------------------------------------------
class Checkpointer:
    """Saves and loads checkpoints under ``path`` (+ ``/key`` when given: on Kubernetes the Federation's
    uid, so a new Federation with an old one's name never resumes the old run).

    ``storage_options`` go to fsspec (``endpoint_url`` for an S3-compatible server, say)."""

    def __init__(
        self,
        path: str,
        every_rounds: int = 5,
        *,
        key: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        base = path.rstrip("/") or path
        self.path = f"{base}/{key}" if key else base
        self.every_rounds = max(1, every_rounds)
        self.storage_options = dict(storage_options or {})
        self.last: Saved | None = None
        """The newest checkpoint written or loaded by this process."""

    def _fs(self) -> tuple[Any, str]:
        try:
            fs, root = fsspec.core.url_to_fs(self.path, **self.storage_options)
        except ImportError as err:
            raise CheckpointError(
                f"spec.checkpoint.path {self.path!r} needs a package that is not installed ({err}); for s3:// "
                "install red[s3] (s3fs) in the engine's environment"
            ) from None
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"spec.checkpoint.path {self.path!r} is not usable: {err}") from None
        return fs, str(root).rstrip("/")

    def check(self) -> None:
        """Fail now, with the fix named, when the storage cannot even be addressed (a missing s3fs)."""
        self._fs()

    def due(self, round: int, rounds: int) -> bool:
        return round % self.every_rounds == 0 or round == rounds

    def save(self, round: int, state: dict[str, Any]) -> Saved:
        """Write the checkpoint of ``round``; returns where (also kept as ``last``)."""
        tree, tensors = split_tensors({k: v for k, v in state.items() if k != "round"})
        blob = save_tensors(tensors) if tensors else save_tensors({})
        digest = hashlib.sha256(blob).hexdigest()
        folder = f"round-{round:06d}"
        tensors_file = f"tensors-{digest[:16]}.safetensors"
        now = time.time()
        record = {
            "format": FORMAT,
            "round": round,
            "time": _iso(now),
            "tensors": {"file": tensors_file, "sha256": digest, "bytes": len(blob)},
            "state": tree,
        }
        fs, root = self._fs()
        try:
            fs.makedirs(f"{root}/{folder}", exist_ok=True)
            _put(fs, f"{root}/{folder}/{tensors_file}", blob)
            _put(fs, f"{root}/{folder}/{STATE}", json.dumps(record, separators=(",", ":")).encode())
            _put(fs, f"{root}/{POINTER}", json.dumps({"format": FORMAT, "round": round, "dir": folder}).encode())
        except OSError as err:
            raise CheckpointError(
                f"cannot write checkpoint to {self.path!r}: {err}; check spec.checkpoint (path, credentials) "
                "and that the storage is writable"
            ) from None
        self._tidy(fs, root, folder, tensors_file)
        self.last = Saved(round, f"{self.path}/{folder}", record["time"])
        return self.last

    def load_latest(self) -> dict[str, Any] | None:
        """The newest loadable checkpoint, or None when there is none yet.

        Raises CheckpointError when checkpoints are there but none can be loaded (the pointer names one
        and no folder verifies): starting afresh would silently throw the run's progress away."""
        fs, root = self._fs()
        _forget_listings(fs)
        pointed, problems = self._pointer(fs, root)
        folders = sorted(self._folders(fs, root), key=lambda f: int(f.split("-")[1]), reverse=True)
        order = ([pointed] if pointed else []) + [f for f in folders if f != pointed]
        for folder in order:
            try:
                state = self._read(fs, f"{root}/{folder}")
            except _Unusable as err:
                if str(err) != INCOMPLETE:  # a crash before its state.json: not a checkpoint at all
                    problems.append(f"{folder}: {err}")
                continue
            if problems:
                log.warning("checkpoint %s/%s used; skipped: %s", self.path, folder, "; ".join(problems))
            self.last = Saved(int(state["round"]), f"{self.path}/{folder}", str(state.pop("_time", "")))
            return state
        if pointed is None and not problems:
            return None  # no pointer and no complete folder: nothing was ever saved (or a first save crashed)
        raise CheckpointError(
            f"checkpoint at {self.path!r} is unreadable ({'; '.join(problems) or 'no complete checkpoint'}); "
            "delete it to start fresh"
        )

    # --- pieces -------------------------------------------------------------------------------------
    def _pointer(self, fs: Any, root: str) -> tuple[str | None, list[str]]:
        path = f"{root}/{POINTER}"
        try:
            with fs.open(path, "rb") as f:
                data = json.loads(f.read(64 * 1024))
        except FileNotFoundError:
            return None, []
        except (OSError, ValueError, UnicodeDecodeError) as err:
            return None, [f"{POINTER}: unreadable ({err})"]
        folder = data.get("dir") if isinstance(data, dict) else None
        if not isinstance(folder, str) or not _ROUND_DIR.match(folder):
            old = isinstance(data, dict) and str(data.get("file", "")).endswith(".pkl")
            why = "it names a pickle checkpoint of an older Red, which is never loaded (unsafe)" if old else (
                "it names no checkpoint folder")
            return None, [f"{POINTER}: {why}"]
        return folder, []

    def _folders(self, fs: Any, root: str) -> list[str]:
        try:
            entries = fs.ls(root, detail=False)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise CheckpointError(f"cannot list checkpoints at {self.path!r}: {err}") from None
        names = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return [n for n in names if _ROUND_DIR.match(n)]

    def _read(self, fs: Any, folder: str) -> dict[str, Any]:
        try:
            with fs.open(f"{folder}/{STATE}", "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise _Unusable(INCOMPLETE) from None
        except OSError as err:
            raise _Unusable(f"{STATE} unreadable ({err})") from None
        try:
            record = json.loads(raw)
            tensors_meta = record["tensors"]
            name, digest = str(tensors_meta["file"]), str(tensors_meta["sha256"])
            round_ = int(record["round"])
        except (ValueError, KeyError, TypeError) as err:
            raise _Unusable(f"{STATE} is not a Red checkpoint record ({err})") from None
        if record.get("format") != FORMAT:
            raise _Unusable(f"format {record.get('format')!r} is not {FORMAT}")
        if not _TENSORS_FILE.match(name):
            raise _Unusable(f"{STATE} names an unexpected tensors file {name!r}")
        try:
            with fs.open(f"{folder}/{name}", "rb") as f:
                blob = f.read()
        except OSError as err:
            raise _Unusable(f"{name} unreadable ({err})") from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise _Unusable(f"{name} does not match its sha256 (torn or replaced)")
        try:
            tensors = load_tensors(blob)
            state = join_tensors(record.get("state") or {}, tensors)
        except (SafetensorError, ValueError) as err:
            raise _Unusable(f"{name}: {err}") from None
        if not isinstance(state, dict):
            raise _Unusable(f"{STATE} holds no state object")
        return {**state, "round": round_, "_time": record.get("time", "")}

    def _tidy(self, fs: Any, root: str, folder: str, tensors_file: str) -> None:
        """Best effort, after the pointer moved: drop this folder's stale tensors files (a crashed or
        repeated save of the same round) and checkpoints older than the newest KEEP."""
        try:
            _forget_listings(fs)
            for entry in fs.ls(f"{root}/{folder}", detail=False):
                name = str(entry).rstrip("/").rsplit("/", 1)[-1]
                if name != tensors_file and name != STATE and (_TENSORS_FILE.match(name) or ".tmp-" in name):
                    fs.rm(str(entry))
            keep = int(folder.split("-")[1])
            older = sorted((f for f in self._folders(fs, root) if int(f.split("-")[1]) < keep), reverse=True)
            for old in older[KEEP - 1:]:
                files = fs.find(f"{root}/{old}")
                if files:
                    fs.rm(files)
                with contextlib.suppress(FileNotFoundError):  # object stores have no folder left to remove
                    fs.rm(f"{root}/{old}", recursive=True)
        except Exception as err:  # tidying must never fail a run that has just saved
            log.warning("could not tidy old checkpoints under %s: %s", self.path, err)


def _forget_listings(fs: Any) -> None:
    """Drop fsspec's cached listings and object details (s3fs keeps them per process, and another writer,
    or an earlier attempt, may have changed the storage since)."""
    with contextlib.suppress(Exception):
        fs.invalidate_cache()


def _put(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it over ``path``."""
    head, _, name = path.rpartition("/")
    tmp = f"{head}/.{name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            fileno = getattr(f, "fileno", None)
            if callable(fileno):
                with contextlib.suppress(Exception):
                    os.fsync(fileno())
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise
