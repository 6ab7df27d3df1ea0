"""Stage ``face``: detect + track + smooth + align-crop + camera per frame, or take the manifest's given data.

Per manifest entry: ``landmarks`` given -> the ``given`` backend (cameras given too when present); only ``cameras``
given -> the frames are pre-aligned crops (synthetic / pre-aligned datasets) used as they are; neither -> the
configured backend (``insightface`` or ``dlib``). Crops are resized (antialiased) to the generator's resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from innout_core.errors import BadInputError
from innout_core.store import StageRecord, atomic_write_json, hash_file, read_record
from tasks.common import (StageOutput, VideoJob, config_hash, load_generator_cached, load_tensors, resolve_device,
                          run_stage, save_tensors)
from tasks.frames import STAGE as FRAMES
from tasks.frames import load_frames

__all__ = ["STAGE", "load_face", "run_face"]

STAGE = "face"


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def _rows(arr: np.ndarray, indices: list[int], what: str, path: Path) -> np.ndarray:
    if max(indices) >= len(arr):
        raise BadInputError(f"{what} has {len(arr)} rows but source frame {max(indices)} was selected", path=path)
    return arr[indices]


def run_face(job: VideoJob) -> StageRecord:
    """Write ``face/face.safetensors`` (``crops`` [T,3,R,R] in [-1,1], ``cameras`` [T,25], optional ``masks``
    [T,1,R,R] in {0,1}) and ``face/status.json`` (per-frame 'ok' | 'filled')."""
    from innout_core.face import FaceConfig, GivenBackend, load_cameras, load_landmarks, make_backend, \
        preprocess_video

    cfg = job.config
    fcfg: FaceConfig = cfg.face_config()  # type: ignore[assignment]
    v = job.video
    extra = [hash_file(p) for p in (v.landmarks, v.cameras, v.masks) if p is not None]
    upstream = read_record(job.stage_dir(FRAMES))
    inputs = [upstream.output_hash if upstream else "", *extra]

    def body(d: Path) -> StageOutput:
        G = load_generator_cached(cfg, resolve_device("cpu"))
        R = int(G.init_kwargs["img_resolution"])
        indices, paths, _ = load_frames(job)
        from innout_core.video import read_frames

        frames = read_frames(paths)
        if v.landmarks is not None:
            lm = _rows(load_landmarks(v.landmarks), indices, "landmarks", v.landmarks)
            cams = None if v.cameras is None else _rows(load_cameras(v.cameras), indices, "cameras", v.cameras)
            backend = GivenBackend(lm, cams, source=v.landmarks)
            gcfg = fcfg.model_copy(update={"backend": "given", "camera": "given" if cams is not None else "estimate"})
            res = preprocess_video(_uint8(frames), backend, gcfg, name=v.path)
            crops, cameras, status = res.crops.float() / 127.5 - 1, res.cameras, list(res.status)
        elif v.cameras is not None:  # pre-aligned frames with known cameras
            crops = frames
            cameras = torch.from_numpy(_rows(load_cameras(v.cameras), indices, "cameras", v.cameras)).float()
            status = ["ok"] * len(indices)
        elif fcfg.backend == "given":
            raise BadInputError("face backend 'given' but the manifest entry has no landmarks or cameras", path=v.path)
        else:
            res = preprocess_video(_uint8(frames), make_backend(fcfg), fcfg, name=v.path)
            crops, cameras, status = res.crops.float() / 127.5 - 1, res.cameras, list(res.status)
        out = {"crops": _resize(crops, R, "bilinear"), "cameras": cameras.float()}
        if v.masks is not None:
            if v.landmarks is not None or v.cameras is None:
                raise BadInputError("user masks are only supported for pre-aligned frames (entry with cameras "
                                    "and no landmarks)", path=v.masks)
            with np.load(v.masks) as z:
                m = torch.from_numpy(_rows(z["masks"], indices, "masks", v.masks).astype(np.float32))
            out["masks"] = (_resize(m, R, "nearest") > 0.5).float()
        save_tensors(d / "face.safetensors", out)
        atomic_write_json(d / "status.json", {"indices": indices, "status": status})
        n_filled = sum(s != "ok" for s in status)
        return StageOutput({"face": "face.safetensors", "status": "status.json"},
                           {"n_frames": len(indices), "filled": n_filled, "resolution": R})

    return run_stage(job, STAGE, inputs, config_hash(fcfg, cfg.generator, str(cfg.checkpoint)), body)


def _uint8(frames: torch.Tensor) -> torch.Tensor:
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def load_face(job: VideoJob, device: torch.device, mode: str = "video") -> dict[str, torch.Tensor]:
    """The face stage's tensors on ``device``; ``mode='image'`` keeps the first frame only."""
    t = load_tensors(job.stage_dir(STAGE) / "face.safetensors", device)
    return {k: v[:1] for k, v in t.items()} if mode == "image" else t
