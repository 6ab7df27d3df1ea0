"""The release's crop geometry (docs/method.md §1.7, §9): weak-perspective fit of 5 landmarks to the standard 3D face,
rescale 300, 1024 canvas, 700 centre crop at offset 162, 512 Lanczos output.

Coordinates: pixel-index convention (x right, y down, pixel (i, j) centred at (i, j)), as dlib/insightface return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "LM3D_STD",
    "RESCALE_FACTOR",
    "TARGET_SIZE",
    "CENTER_CROP",
    "CENTER_OFFSET",
    "OUTPUT_SIZE",
    "CropParams",
    "pos_fit",
    "official_crop_params",
    "align_crop",
]

#: Deep3DFaceRecon `load_lm3d()`: `BFM/similarity_Lm3D_all.mat` reduced 68 → 5 by docs/method.md §1.3, order
#: (eye image-left, eye image-right, nose, mouth image-left, mouth image-right); BFM units (decimetres, x right,
#: y up, z toward the camera, origin = centroid of the re-centred BFM mean shape). Values as printed in the
#: Deep3DFaceReconstruction `align_img` docstring.
LM3D_STD = np.array(
    [
        [-0.31148657, 0.29036078, 0.13377953],
        [0.30979887, 0.28972036, 0.13179526],
        [0.0032535, -0.04617932, 0.55244243],
        [-0.25216928, -0.38133916, 0.22405732],
        [0.2484662, -0.38128236, 0.22235769],
    ],
    dtype=np.float64,
)
RESCALE_FACTOR = 300.0  # crop_images_in_the_wild.py: rescale_factor
TARGET_SIZE = 1024  # crop_images_in_the_wild.py: target_size (aligned canvas)
CENTER_CROP = 700  # centre crop side on the 1024 canvas
CENTER_OFFSET = 162  # (1024 - 700) / 2
OUTPUT_SIZE = 512  # final Lanczos resize


@dataclass(frozen=True)
class CropParams:
    """The official crop of one frame.

    Attributes:
        width, height: original frame size in pixels.
        s: weak-perspective scale from `pos_fit` (pixels per BFM unit).
        t: (t_x, t_y) projection of the BFM origin, y measured upward (H - 1 - y convention).
        scaled_w, scaled_h: int(W * sigma), int(H * sigma), sigma = 300 / s (size of the resized frame).
        left, up: top-left corner of the 1024 box in the resized frame (int-truncated, as official).
    """

    width: int
    height: int
    s: float
    t: tuple[float, float]
    scaled_w: int
    scaled_h: int
    left: int
    up: int

    @property
    def sigma(self) -> float:
        """Nominal resize factor 300 / s."""
        return RESCALE_FACTOR / self.s

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map frame points [..., 2] (pixel-index coords) into the 512 crop (pixel-index coords), float64."""
        p = np.asarray(points, dtype=np.float64)
        sx, sy = self.scaled_w / self.width, self.scaled_h / self.height
        k = OUTPUT_SIZE / CENTER_CROP
        u = ((p[..., 0] + 0.5) * sx - self.left - CENTER_OFFSET) * k - 0.5
        v = ((p[..., 1] + 0.5) * sy - self.up - CENTER_OFFSET) * k - 0.5
        return np.stack([u, v], axis=-1)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Inverse of `to_crop`: 512-crop points [..., 2] -> frame points [..., 2], float64."""
        p = np.asarray(points, dtype=np.float64)
        sx, sy = self.scaled_w / self.width, self.scaled_h / self.height
        k = CENTER_CROP / OUTPUT_SIZE
        x = ((p[..., 0] + 0.5) * k + self.left + CENTER_OFFSET) / sx - 0.5
        y = ((p[..., 1] + 0.5) * k + self.up + CENTER_OFFSET) / sy - 0.5
        return np.stack([x, y], axis=-1)

    def quad(self) -> np.ndarray:
        """[4, 2] float64 outer corners of the 512 crop in frame pixel-index coords: TL, TR, BR, BL."""
        corners = np.array([[0, 0], [OUTPUT_SIZE, 0], [OUTPUT_SIZE, OUTPUT_SIZE], [0, OUTPUT_SIZE]], np.float64)
        return self.to_frame(corners - 0.5)


def pos_fit(lm5: np.ndarray, height: int, lm3d: np.ndarray = LM3D_STD) -> tuple[np.ndarray, float]:
    """Deep3DFaceRecon `POS`: least-squares weak-perspective fit of 5 image landmarks to 5 3D points.

    Args:
        lm5: [5, 2] image landmarks, pixel-index coords, y down (flipped here to y' = H - 1 - y, as official).
        height: frame height H in pixels.
        lm3d: [5, 3] 3D points (BFM units).
    Returns:
        t: [2] (sTx, sTy), the projection of the 3D origin in the flipped (y-up) image; s: (|R1| + |R2|) / 2.
    """
    lm = np.asarray(lm5, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"pos_fit: expected [5, 2] landmarks, got {lm.shape}")
    xp = np.stack([lm[:, 0], height - 1 - lm[:, 1]], axis=1)
    n = xp.shape[0]
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = lm3d
    a[0::2, 3] = 1
    a[1::2, 4:7] = lm3d
    a[1::2, 7] = 1
    k = np.linalg.lstsq(a, xp.reshape(-1), rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(s)


def official_crop_params(lm5: np.ndarray, width: int, height: int) -> CropParams:
    """The official crop box for one frame (Deep3DFaceRecon `align_img` + `resize_n_crop_img` with target 1024,
    rescale 300), integer truncation included.

    Args:
        lm5: [5, 2] landmarks in frame pixel-index coords (y down).
        width, height: frame size.
    """
    t, s = pos_fit(lm5, height)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"official_crop_params: degenerate landmark fit (scale {s})")
    sigma = RESCALE_FACTOR / s
    w, h = int(np.int32(width * sigma)), int(np.int32(height * sigma))
    left = int(np.int32(w / 2 - TARGET_SIZE / 2 + (t[0] - width / 2) * sigma))
    up = int(np.int32(h / 2 - TARGET_SIZE / 2 + (height / 2 - t[1]) * sigma))
    return CropParams(width, height, s, (float(t[0]), float(t[1])), w, h, left, up)


def align_crop(frame: np.ndarray, params: CropParams) -> np.ndarray:
    """Cut the official crop out of a frame: bicubic resize of the whole frame to (scaled_w, scaled_h), 1024 box at
    (left, up) (outside = black), 700 centre crop, Lanczos resize to 512.

    Args:
        frame: [H, W, 3] uint8 RGB.
    Returns:
        [512, 512, 3] uint8 RGB.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"align_crop: expected [H, W, 3] uint8, got {frame.shape} {frame.dtype}")
    if (frame.shape[1], frame.shape[0]) != (params.width, params.height):
        raise ValueError(f"align_crop: frame {frame.shape[1]}x{frame.shape[0]} does not match the crop parameters "
                         f"{params.width}x{params.height}")
    img = Image.fromarray(frame).resize((params.scaled_w, params.scaled_h), resample=Image.BICUBIC)
    x0, y0 = params.left + CENTER_OFFSET, params.up + CENTER_OFFSET
    # Cropping the 700 box straight from the resized frame equals cropping 1024 then 700 (both pad with black).
    img = img.crop((x0, y0, x0 + CENTER_CROP, y0 + CENTER_CROP))
    img = img.resize((OUTPUT_SIZE, OUTPUT_SIZE), resample=Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()
