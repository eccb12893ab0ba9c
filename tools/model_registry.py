"""Trained models on disk, versioned: ``<root>/<id>/`` holds a model's files and its card
(``tools.ml.TrainedModel.save``); ``<root>/registry.json`` says which one is promoted and which
were promoted before it (for ``rollback``).

A model directory is written under a temporary name and renamed into place, so a crash never
leaves a half-written model under its id; registry.json is replaced atomically the same way.
Ids are checked against ``MODEL_ID`` before any path is built from them, so a typed id cannot
reach outside the models directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.ml import ModelFileError, TrainedModel, read_card

__all__ = ["MODEL_ID", "ModelRegistry", "RegistryError"]

MODEL_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_REGISTRY = "registry.json"


class RegistryError(Exception):
    """Bad input or state: the message says what is wrong and what is valid."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    card: dict[str, Any] | None  # None: the card cannot be read
    problem: str = ""


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, model_id: str) -> Path:
        if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id):
            raise RegistryError(
                f"{model_id!r} is not a model id (lower-case letters, digits and '-'); see `tradeops models list`"
            )
        return self.root / model_id

    # --- registry.json ---

    def _state(self) -> dict[str, Any]:
        path = self.root / _REGISTRY
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return {"promoted": None, "history": []}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path} cannot be read ({exc}); fix or delete it, then promote again") from None
        if not isinstance(state, dict) or not isinstance(state.get("history"), list):
            raise RegistryError(f"{path} is not a model registry; fix or delete it, then promote again")
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".registry-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.root / _REGISTRY)

    # --- models ---

    def save(self, model: TrainedModel) -> Path:
        """Write ``model`` under its id; RegistryError if that id exists."""
        final = self._dir(model.id)
        if final.exists():
            raise RegistryError(f"model {model.id} already exists in {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{model.id}-"))
        try:
            model.save(staging)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and MODEL_ID.fullmatch(p.name))

    def entries(self) -> list[ModelEntry]:
        """Every model, newest first (by the card's created_at; unreadable cards last)."""
        entries = []
        for model_id in self.ids():
            try:
                entries.append(ModelEntry(model_id, read_card(self.root / model_id)))
            except ModelFileError as exc:
                entries.append(ModelEntry(model_id, None, str(exc)))
        return sorted(entries, key=lambda e: str((e.card or {}).get("created_at", "")), reverse=True)

    def card(self, model_id: str) -> dict[str, Any]:
        directory = self._dir(model_id)
        if not directory.is_dir():
            raise RegistryError(f"no model {model_id!r}; known: {', '.join(self.ids()) or 'none (tradeops train)'}")
        try:
            return read_card(directory)
        except ModelFileError as exc:
            raise RegistryError(str(exc)) from None

    def load(self, model_id: str | None = None) -> TrainedModel:
        """The model ``model_id``, or the promoted one; RegistryError saying what is missing or
        corrupt."""
        if model_id is None:
            model_id = self.promoted()
            if model_id is None:
                raise RegistryError("no model is promoted: train one (tradeops train) and `tradeops models promote ID`")
        self.card(model_id)  # a clear error for an unknown id
        try:
            return TrainedModel.load(self._dir(model_id))
        except ModelFileError as exc:
            raise RegistryError(str(exc)) from None

    def promoted(self) -> str | None:
        value = self._state().get("promoted")
        return value if isinstance(value, str) else None

    def promote(self, model_id: str) -> str | None:
        """Make ``model_id`` the promoted model (it must load cleanly); returns the one before."""
        self.load(model_id)
        state = self._state()
        before = state.get("promoted")
        if before == model_id:
            raise RegistryError(f"model {model_id} is already promoted")
        history = [h for h in state["history"] if h != model_id]
        if isinstance(before, str):
            history.append(before)
        self._write_state({"promoted": model_id, "history": history})
        return before if isinstance(before, str) else None

    def rollback(self) -> tuple[str, str]:
        """Promote again the model promoted before the current one; returns (from, to)."""
        state = self._state()
        current = state.get("promoted")
        history = [h for h in state["history"] if isinstance(h, str)]
        if not isinstance(current, str) or not history:
            raise RegistryError("nothing to roll back to: no model was promoted before the current one")
        previous = history.pop()
        self.load(previous)
        self._write_state({"promoted": previous, "history": history})
        return current, previous
