"""Checkpoints: the global model(s), the round, versions and algorithm state, every N rounds.

Written with fsspec, so ``path`` may be a local directory or any fsspec URL (``s3://``, ``gs://``,
``memory://`` ...). Each checkpoint is one pickle written to a temporary name and then renamed, plus a
``latest.json`` pointer, so a crash mid-write never leaves a torn checkpoint behind.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

from red.errors import CheckpointError


class Checkpointer:
    def __init__(self, path: str, every_rounds: int = 5) -> None:
        self.path = path.rstrip("/")
        self.every_rounds = max(1, every_rounds)

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.path)
        return fs, root

    def due(self, round: int, rounds: int) -> bool:
        return round % self.every_rounds == 0 or round == rounds

    def save(self, round: int, state: dict[str, Any]) -> str:
        fs, root = self._fs()
        name = f"round-{round:06d}.pkl"
        try:
            fs.makedirs(root, exist_ok=True)
            tmp = f"{root}/.{name}.tmp"
            with fs.open(tmp, "wb") as f:
                pickle.dump({"round": round, **state}, f, protocol=pickle.HIGHEST_PROTOCOL)
            fs.mv(tmp, f"{root}/{name}")
            with fs.open(f"{root}/latest.json", "w") as f:
                json.dump({"round": round, "file": name}, f)
        except OSError as err:
            raise CheckpointError(
                f"cannot write checkpoint to {self.path!r}: {err}; check spec.checkpoint.path and permissions"
            ) from None
        return f"{root}/{name}"

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint, or None when there is none yet."""
        fs, root = self._fs()
        pointer = f"{root}/latest.json"
        if not fs.exists(pointer):
            return None
        try:
            with fs.open(pointer, "r") as f:
                name = json.load(f)["file"]
            with fs.open(f"{root}/{name}", "rb") as f:
                state: dict[str, Any] = pickle.load(f)
        except (OSError, KeyError, ValueError, pickle.UnpicklingError) as err:
            raise CheckpointError(
                f"checkpoint at {self.path!r} is unreadable ({err}); delete it to start fresh"
            ) from None
        return state
