"""What every stage task shares: the per-video job and the skip/record/fail wrapper (:mod:`tasks.stage`,
re-exported here), tensor files, generators, progress. No maths here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from innout_core.config import PipelineConfig
from innout_core.errors import BadInputError, DamagedOutputError
from innout_core.store import atomic_path, atomic_write_json
from tasks.stage import (PROGRESS_NAME, StageOutput, VideoJob, config_hash, read_json, run_stage,  # noqa: F401
                         transient)

__all__ = [
    "PROGRESS_NAME",
    "StageOutput",
    "VideoJob",
    "config_hash",
    "load_generator_cached",
    "load_tensors",
    "progress_writer",
    "read_json",
    "resolve_device",
    "run_stage",
    "save_tensors",
    "stage_generator",
    "transient",
]


# --------------------------------------------------------------------------------------------------- tensor files


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Save tensors (moved to CPU, contiguous) as safetensors, atomically."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)
    return path


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file written by :func:`save_tensors` (DamagedOutputError naming the file when it is
    missing or unreadable)."""
    if not Path(path).is_file():
        raise DamagedOutputError("stage output missing", path=path)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise DamagedOutputError(f"stage output unreadable ({type(err).__name__}: {' '.join(str(err).split())})",
                                 path=path) from err


# -------------------------------------------------------------------------------------------- generator, seeds


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {name!r} requested but CUDA is not available (set device: cpu)")
    return dev


def stage_generator(job: VideoJob, stage: str, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` seeded from (config seed, video id, stage): independent of which stages were skipped."""
    digest = hashlib.sha256(f"{job.config.seed}/{job.id}/{stage}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


_G_CACHE: dict[tuple[str, str, str], torch.nn.Module] = {}


def load_generator_cached(cfg: PipelineConfig, device: torch.device) -> torch.nn.Module:
    """The frozen generator of the config (a checkpoint, or a named config), loaded once per worker process."""
    key = (cfg.generator, str(cfg.checkpoint or ""), str(device))
    if key not in _G_CACHE:
        if cfg.checkpoint is not None:
            from innout_core.eg3d.checkpoint import load_generator

            G = load_generator(cfg.checkpoint, device=device)
        else:
            from innout_core.eg3d.configs import build_generator

            G = build_generator(cfg.generator).to(device)
        G.eval().requires_grad_(False)
        _G_CACHE[key] = G
    return _G_CACHE[key]


# ------------------------------------------------------------------------------------------------------ progress


def progress_writer(directory: Path, every_s: float = 0.5) -> Callable[[int, int, dict[str, float]], None]:
    """A ``ProgressFn`` that writes ``progress.json`` (step, total, losses, time) at most every ``every_s`` seconds.

    The command line polls these files to draw one progress bar per long stage, on any worker or machine.
    """
    last = [float("-inf")]

    def report(step: int, total: int, losses: dict[str, float]) -> None:
        now = time.monotonic()
        if now - last[0] < every_s and step < total:
            return
        last[0] = now
        safe = {k: float(v) for k, v in losses.items() if isinstance(v, (int, float))}
        atomic_write_json(directory / PROGRESS_NAME, {"step": step, "total": total, "losses": safe, "time": time.time()})

    return report
