"""User masks drawn on the original frames, carried into the face crops through the same transform as the frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from innout_core.errors import BadInputError

from .align import OUTPUT_SIZE, CropParams

__all__ = ["crop_matrix", "warp_masks"]


def crop_matrix(params: CropParams, size: int) -> np.ndarray:
    """[2, 3] float64 affine map from output pixel-index coords of a `size`² crop to frame pixel-index coords
    (the official crop is an axis-aligned scale + offset; `size` rescales its 512² grid by pixel areas)."""
    k = OUTPUT_SIZE / size
    # output pixel (i, j) -> 512-crop coords ((i + 0.5) k - 0.5, ...) -> frame coords by `to_frame` (affine)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    frame = params.to_frame((corners + 0.5) * k - 0.5)
    a = np.stack([frame[1] - frame[0], frame[2] - frame[0]], axis=1)
    return np.hstack([a, frame[0][:, None]])


def warp_masks(masks: np.ndarray, params: Sequence[CropParams], size: int, source: str | Path = "masks"
               ) -> np.ndarray:
    """Warp per-frame masks from frame pixels into the face crops: nearest-neighbour sampling, then threshold 0.5.

    Args:
        masks: [T, 1, H, W] or [T, H, W] masks on the original frames (1 = face; float in [0, 1], bool, uint8
            0/1 or 0/255), H x W = the frames' size.
        params: T crop transforms (one per frame, `PreprocessResult.params`).
        size: output side in pixels (the generator's resolution).
        source: the masks file, named in errors.
    Returns:
        [T, 1, size, size] float32 in {0, 1}; pixels of the crop outside the frame are 0 (not face).
    """
    m = np.asarray(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise BadInputError(f"masks must be [T, 1, H, W] or [T, H, W], got {list(np.asarray(masks).shape)}", source)
    if len(m) != len(params):
        raise BadInputError(f"{len(m)} masks for {len(params)} frames", source)
    scale = 255.0 if m.dtype == np.uint8 and m.max() > 1 else 1.0
    out = np.empty((len(m), 1, size, size), np.float32)
    for i, (mask, p) in enumerate(zip(m, params)):
        if mask.shape != (p.height, p.width):
            raise BadInputError(f"mask {i} is {mask.shape[1]}x{mask.shape[0]}, the frames are {p.width}x{p.height}",
                                source)
        warped = cv2.warpAffine(mask.astype(np.float32) / scale, crop_matrix(p, size), (size, size),
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0.0)
        out[i, 0] = warped > 0.5
    return out
