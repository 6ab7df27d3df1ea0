"""Stage ``face``: detect + track + smooth + align-crop + camera per frame, or take the manifest's given data.

Per manifest entry: ``landmarks`` given -> the ``given`` backend (cameras given too when present); only ``cameras``
given -> the frames are pre-aligned crops (synthetic / pre-aligned datasets) used as they are; neither -> the
configured backend (``insightface`` or ``dlib``). Crops are resized (antialiased) to the generator's resolution,
read from the config (the converted checkpoint's ``config.json``, else the named generator config) without loading
the generator. User masks drawn on the original frames go through the same crop transform as the frames.
"""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import torch
import torch.nn.functional as F

from innout_core.errors import BadInputError
from innout_core.store import StageRecord, atomic_write_json, hash_file, read_record
from tasks.common import StageOutput, VideoJob, config_hash, load_tensors, run_stage, save_tensors
from tasks.frames import STAGE as FRAMES
from tasks.frames import load_frames

__all__ = ["STAGE", "load_face", "output_resolution", "run_face"]

STAGE = "face"


def output_resolution(generator: str, checkpoint: Path | None) -> int:
    """The generator's image side in pixels, from the converted checkpoint's ``config.json`` when there is one, else
    from the named generator config (no weights are loaded)."""
    if checkpoint is not None and (Path(checkpoint) / "config.json").is_file():
        try:
            return int(json.loads((Path(checkpoint) / "config.json").read_text())["init_kwargs"]["img_resolution"])
        except (ValueError, KeyError, TypeError) as err:
            raise BadInputError(f"no init_kwargs.img_resolution ({err})", Path(checkpoint) / "config.json") from err
    from innout_core.eg3d.configs import CONFIGS

    if generator not in CONFIGS:
        raise BadInputError(f"unknown generator config {generator!r}; choose one of {sorted(CONFIGS)}")
    return int(CONFIGS[generator].init_kwargs["img_resolution"])


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
    [T,1,R,R] in {0,1} and, for ground-truth videos, ``clean`` [T,3,R,R] in [-1,1]) and ``face/status.json``
    (``indices``: source frame per row; ``status``: per row 'ok' |
    'predicted' | 'filled' | 'no_face'; ``warnings``: frames without a face, one line each)."""
    from innout_core.face import FaceConfig, GivenBackend, load_cameras, load_landmarks, make_backend, \
        preprocess_video
    from innout_core.face.masks import warp_masks

    cfg = job.config
    fcfg: FaceConfig = cfg.face_config()  # type: ignore[assignment]
    v = job.video
    extra = [hash_file(p) for p in (v.landmarks, v.cameras, v.masks, v.clean) if p is not None]
    upstream = read_record(job.stage_dir(FRAMES))
    inputs = [upstream.output_hash if upstream else "", *extra]

    def body(d: Path) -> StageOutput:
        R = output_resolution(cfg.generator, cfg.checkpoint)
        indices, paths, _ = load_frames(job)
        from innout_core.video import read_frames

        frames = read_frames(paths)
        res = None
        if v.landmarks is not None:
            lm = _rows(load_landmarks(v.landmarks), indices, "landmarks", v.landmarks)
            cams = None if v.cameras is None else _rows(load_cameras(v.cameras), indices, "cameras", v.cameras)
            backend = GivenBackend(lm, cams, source=v.landmarks)
            gcfg = fcfg.model_copy(update={"backend": "given", "camera": "given" if cams is not None else "estimate"})
            res = preprocess_video(_uint8(frames), backend, gcfg, name=v.path, frame_ids=indices)
        elif v.cameras is not None:  # pre-aligned frames with known cameras
            crops = frames
            cameras = torch.from_numpy(_rows(load_cameras(v.cameras), indices, "cameras", v.cameras)).float()
            status, kept, warnings = ["ok"] * len(indices), list(range(len(indices))), []
        elif fcfg.backend == "given":
            raise BadInputError("face backend 'given' but the manifest entry has no landmarks or cameras", path=v.path)
        else:
            res = preprocess_video(_uint8(frames), make_backend(fcfg), fcfg, name=v.path, frame_ids=indices)
        if res is not None:
            crops, cameras, status = res.crops.float() / 127.5 - 1, res.cameras, list(res.status)
            kept, warnings = res.kept, list(res.warnings)
        out = {"crops": _resize(crops, R, "bilinear"), "cameras": cameras.float()}
        if v.masks is not None:
            with np.load(v.masks) as z:
                if "masks" not in z:
                    raise BadInputError("no 'masks' array in the file", path=v.masks)
                rows = _rows(z["masks"], indices, "masks", v.masks)[kept]
            if res is None:  # pre-aligned: the masks are already in crop pixels
                m = torch.from_numpy(rows.astype(np.float32))
                out["masks"] = (_resize(m, R, "nearest") > 0.5).float()
            else:  # drawn on the original frames: the frames' crop transform, nearest, threshold
                out["masks"] = torch.from_numpy(warp_masks(rows, res.params, R, source=v.masks))
        kept_indices = [indices[i] for i in kept]
        if v.clean is not None:  # ground truth: the clean frames through the frames' own crop
            out["clean"] = _clean_crops(v.clean, kept_indices, R, None if res is None else res.params)
        save_tensors(d / "face.safetensors", out)
        atomic_write_json(d / "status.json", {"indices": kept_indices, "status": status, "warnings": warnings})
        counts = {s: status.count(s) for s in ("ok", "predicted", "filled", "no_face")}
        return StageOutput({"face": "face.safetensors", "status": "status.json"},
                           {"n_frames": len(kept_indices), "filled": len(status) - counts["ok"], **{
                               f"n_{k}": c for k, c in counts.items()}, "trimmed": len(indices) - len(kept),
                            "resolution": R, "warnings": warnings})

    return run_stage(job, STAGE, inputs, config_hash(fcfg, cfg.generator, str(cfg.checkpoint)), body)


def _clean_crops(path: Path, indices: list[int], size: int, params: list | None) -> torch.Tensor:
    """The clean video's frames at source ``indices`` cropped exactly like the input frames: the same crop transform
    per frame (``params``, one per index; None for pre-aligned frames), then the same resize. [T,3,size,size] in
    [-1,1]."""
    from innout_core.face.align import align_crop
    from innout_core.video import iter_frames

    wanted = set(indices)
    got = {i: f for i, f in iter_frames(path, stop=max(indices) + 1) if i in wanted}
    missing = [i for i in indices if i not in got]
    if missing:
        raise BadInputError(f"clean video has no frame {missing[0]} (it is shorter than the video)", path=path)
    imgs = [got[i] if params is None else align_crop(got[i], p) for i, p in zip(indices, params or [None] * len(indices))]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return _resize(x, size, "bilinear")


def _uint8(frames: torch.Tensor) -> torch.Tensor:
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def load_face(job: VideoJob, device: torch.device, mode: str = "video") -> dict[str, torch.Tensor]:
    """The face stage's tensors on ``device``; ``mode='image'`` keeps the first frame only."""
    t = load_tensors(job.stage_dir(STAGE) / "face.safetensors", device)
    return {k: v[:1] for k, v in t.items()} if mode == "image" else t
