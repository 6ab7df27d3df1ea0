"""Atomic, resumable training checkpoints for one long stage (W+ inversion, stage A, stage B).

A :class:`Checkpointer` owns one directory and writes ``ckpt-<step>.pt`` files there, keeping the newest two. Each
file holds the caller's state dict (parameters, optimiser state, RNG state, ...) together with a *fingerprint* of the
stage's inputs and config, so a checkpoint from another video or another config is refused instead of silently
resumed. Files are written to a temporary file in the same directory and moved into place with :func:`os.replace`,
so a kill at any moment leaves either the previous checkpoint or the new one, never half a file. Each checkpoint's
sha256 is written beside it (``ckpt-<step>.pt.sha256``, before the checkpoint itself): a file damaged afterwards
(truncated, altered) is skipped for the previous one instead of resuming from wrong numbers, and so is one whose
sha256 is gone (deleted or emptied): ``torch.load`` checks no checksum, so an altered byte would load as another
number. Loading uses
``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from innout_core.errors import CheckpointError
from innout_core.io import atomic_write_bytes

__all__ = ["Checkpointer", "rng_state", "set_rng_state", "make_fingerprint"]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_FORMAT = 1


def rng_state(generator: torch.Generator) -> Tensor:
    """The generator's full state as a CPU uint8 tensor (store it in a checkpoint)."""
    return generator.get_state().clone()


def set_rng_state(generator: torch.Generator, state: Tensor) -> None:
    """Restore a state captured by :func:`rng_state` (in place)."""
    generator.set_state(state.detach().to("cpu", torch.uint8))


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    """Feed ``obj`` (tensors, numbers, strings, nested dict/list/tuple, pydantic models) into the hash."""
    if isinstance(obj, Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    elif hasattr(obj, "model_dump") and callable(obj.model_dump):
        h.update(b"M" + type(obj).__name__.encode())
        _feed(h, obj.model_dump(mode="json"))
    elif isinstance(obj, Mapping):
        h.update(b"D")
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj))
        for v in obj:
            _feed(h, v)
    else:
        h.update(b"J" + json.dumps(obj, sort_keys=True, default=str).encode())


def make_fingerprint(*parts: Any) -> str:
    """SHA-256 (hex, 16 chars) of the stage inputs and config.

    Args:
        parts: tensors (hashed by dtype, shape and bytes), pydantic models (by their JSON dump), numbers, strings
            and nested dicts/lists of those.
    Returns:
        A short hex digest; equal inputs give equal fingerprints on any machine with the same dtypes.
    """
    h = hashlib.sha256()
    for p in parts:
        _feed(h, p)
    return h.hexdigest()[:16]


class Checkpointer:
    """Atomic, resumable training checkpoints for one long stage in one directory (ckpt-<step>.pt, keep last 2).

    Args:
        directory: where checkpoints live (created on the first save).
        every: save every ``every`` completed steps (``step % every == 0``); ``<= 0`` saves only when forced.
        fingerprint: hash of the stage's inputs + config (:func:`make_fingerprint`); a checkpoint whose
            fingerprint differs is refused with :class:`CheckpointError`.
        keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory: str | Path, every: int, fingerprint: str, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.directory = Path(directory)
        self.every = int(every)
        self.fingerprint = str(fingerprint)
        self.keep = keep

    # -- listing ------------------------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """Steps of the checkpoint files present, ascending."""
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def path(self, step: int) -> Path:
        """File name of the checkpoint for ``step``."""
        return self.directory / f"ckpt-{step:08d}.pt"

    # -- load ---------------------------------------------------------------------------------------------------
    def latest(self) -> dict | None:
        """The newest saved state dict (what ``state()`` returned, plus ``"step"``), or None when there is none.

        Raises:
            CheckpointError: the newest readable checkpoint has another fingerprint (another video or config),
                or checkpoint files exist but none can be read.
        """
        steps = self.steps()
        if not steps:
            return None
        errors = []
        for step in reversed(steps):
            path = self.path(step)
            try:
                data = path.read_bytes()
                digest = _sidecar(path)
                if digest is None:  # written before the checkpoint: gone means damaged; nothing can check the bytes
                    errors.append(f"{path.name}: its sha256 file is missing or empty")
                    continue
                if hashlib.sha256(data).hexdigest() != digest:
                    errors.append(f"{path.name}: sha256 differs from the one written")
                    continue
                payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as exc:  # a truncated or foreign file: try the previous one
                errors.append(f"{path.name}: {type(exc).__name__}")
                continue
            if not isinstance(payload, dict) or payload.get("format") != _FORMAT or "state" not in payload:
                errors.append(f"{path.name}: not an innout checkpoint")
                continue
            if payload.get("fingerprint") != self.fingerprint:
                raise CheckpointError(
                    f"checkpoint was made for other inputs or config (fingerprint {payload.get('fingerprint')} != "
                    f"{self.fingerprint}); delete {self.directory} to start this stage over",
                    path,
                )
            state = dict(payload["state"])
            state["step"] = int(payload["step"])
            return state
        raise CheckpointError(f"no readable checkpoint ({'; '.join(errors)}); delete the directory to restart",
                              self.directory)

    # -- save ---------------------------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether :meth:`maybe_save` would save at ``step`` without ``force``."""
        return self.every > 0 and step > 0 and step % self.every == 0

    def maybe_save(self, step: int, state: Callable[[], dict], force: bool = False) -> bool:
        """Save ``state()`` as the checkpoint of ``step`` (completed steps) when due or forced.

        ``state`` is only called when a save happens. Writes atomically, then deletes all but the newest ``keep``.
        Returns True when a file was written.
        """
        if not (force or self.due(step)):
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"format": _FORMAT, "fingerprint": self.fingerprint, "step": int(step), "state": state()}
        target = self.path(step)
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        atomic_write_bytes(_sidecar_path(target), hashlib.sha256(data).hexdigest().encode())
        atomic_write_bytes(target, data)
        for old in self.steps()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
            _sidecar_path(self.path(old)).unlink(missing_ok=True)
        return True

    def clear(self) -> None:
        """Delete every checkpoint file of this directory (e.g. after the stage's outputs are safely written)."""
        for s in self.steps():
            self.path(s).unlink(missing_ok=True)
            _sidecar_path(self.path(s)).unlink(missing_ok=True)


def _sidecar_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + ".sha256")


def _sidecar(ckpt: Path) -> str | None:
    """The sha256 written beside a checkpoint, or None (missing, empty or unreadable)."""
    try:
        return _sidecar_path(ckpt).read_text("ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
