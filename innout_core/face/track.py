"""Follow one person through a video: box overlap with the last accepted box plus identity descriptors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .backends import Detection, FaceBackend, box_iou

__all__ = ["TrackingConfig", "track_target"]


class TrackingConfig(BaseModel):
    """How the target face is chosen and followed when a frame holds several faces."""

    model_config = ConfigDict(extra="forbid")

    select: Literal["largest", "score", "center"] = Field(
        "largest", description="target in the first frame with a face: largest box, best score, or nearest centre")
    min_iou: float = Field(0.2, ge=0, le=1, description="box overlap with the last accepted box to continue the "
                                                       "track when identity is unavailable (IoU, unitless)")
    use_identity: bool = Field(True, description="reject faces whose descriptor is not the target's identity and "
                                                 "re-acquire the target anywhere after a loss")


def _select_first(dets: Sequence[Detection], how: str, shape: tuple[int, int]) -> Detection:
    if how == "score":
        return max(dets, key=lambda d: d.score)
    if how == "center":
        cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        return min(dets, key=lambda d: np.hypot((d.box[0] + d.box[2]) / 2 - cx, (d.box[1] + d.box[3]) / 2 - cy))
    return max(dets, key=lambda d: d.area)


def track_target(detections: Sequence[Sequence[Detection]], backend: FaceBackend, cfg: TrackingConfig,
                 frame_shape: tuple[int, int]) -> list[Detection | None]:
    """Pick the target in the first frame with faces and follow it.

    A frame with a single face overlapping the last accepted box (IoU >= `min_iou`) continues the track without
    computing descriptors (they are lazy and costly). Otherwise a candidate continues the track when (identity
    available and used) its descriptor is within the backend's `identity_threshold` of the target's mean
    descriptor — the closest box (highest IoU, then smallest identity distance) wins — or, without identity,
    when its IoU with the last accepted box is >= `min_iou` (highest IoU wins).

    Args:
        detections: per frame, every face found.
        backend: supplies `identity_distance` and `identity_threshold`.
        frame_shape: (H, W) of the frames (for `select='center'`).
    Returns:
        per frame the target's detection, or None (target not found).
    """
    out: list[Detection | None] = [None] * len(detections)
    start = next((t for t, d in enumerate(detections) if len(d) > 0), None)
    if start is None:
        return out
    target = _select_first(detections[start], cfg.select, frame_shape)
    out[start] = target
    last_box = target.box
    descs: list[np.ndarray] = []
    first_desc = target.get_descriptor() if cfg.use_identity else None
    if first_desc is not None:
        descs.append(first_desc)
    for t in range(start + 1, len(detections)):
        cands = detections[t]
        if len(cands) == 1 and box_iou(last_box, cands[0].box) >= cfg.min_iou:
            out[t] = cands[0]
            last_box = cands[0].box
            if cands[0].descriptor is not None:
                descs.append(cands[0].descriptor)
            continue
        ref = np.mean(descs, axis=0) if descs else None
        best: tuple[float, float] | None = None
        for det in cands:
            iou = box_iou(last_box, det.box)
            desc = det.get_descriptor() if cfg.use_identity and ref is not None else None
            if desc is not None:
                dist = backend.identity_distance(ref, desc)
                ok = dist <= backend.identity_threshold
            else:
                dist, ok = 0.0, iou >= cfg.min_iou
            key = (iou, -dist)
            if ok and (best is None or key > best):
                best, out[t] = key, det
        if out[t] is not None:
            last_box = out[t].box
            if out[t].descriptor is not None:
                descs.append(out[t].descriptor)
    return out
