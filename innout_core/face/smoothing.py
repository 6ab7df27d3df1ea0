"""Temporal landmark smoothing over a sliding window (official 3-tap box, spec §1.4, or a centred Gaussian)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.ndimage import gaussian_filter1d

__all__ = ["SmoothingConfig", "box_smooth", "gaussian_smooth", "smooth_landmarks"]


class SmoothingConfig(BaseModel):
    """How per-frame landmarks are smoothed over time before cropping and camera estimation."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["box", "gaussian", "none"] = Field(
        "box", description="'box' = official smooth_video_lms.py mean filter, 'gaussian' = centred Gaussian")
    n_pre: int = Field(1, ge=0, description="box: frames before the current one in the window (official 1)")
    n_next: int = Field(1, ge=0, description="box: frames after the current one in the window (official 1)")
    sigma: float = Field(1.0, gt=0, description="gaussian: standard deviation, in frames")
    truncate: float = Field(3.0, gt=0, description="gaussian: window half-width in standard deviations")


def box_smooth(lm: np.ndarray, n_pre: int = 1, n_next: int = 1) -> np.ndarray:
    """Mean over the window [t - n_pre, t + n_next], ends padded by repeating the first/last frame (official).

    Args:
        lm: [T, K, D] float landmarks (pixels).
    Returns:
        [T, K, D] float64; with the defaults out_0 = (2 f_0 + f_1)/3, out_t = (f_{t-1} + f_t + f_{t+1})/3.
    """
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape[0] == 0:
        return lm.copy()
    padded = np.concatenate([np.repeat(lm[:1], n_pre, 0), lm, np.repeat(lm[-1:], n_next, 0)], axis=0)
    csum = np.concatenate([np.zeros_like(padded[:1]), np.cumsum(padded, axis=0)], axis=0)
    width = n_pre + n_next + 1
    return (csum[width:] - csum[:-width]) / width


def gaussian_smooth(lm: np.ndarray, sigma: float = 1.0, truncate: float = 3.0) -> np.ndarray:
    """Centred Gaussian filter along time (edge frames repeated), window half-width ceil(truncate * sigma).

    Args:
        lm: [T, K, D] float landmarks (pixels).
    Returns:
        [T, K, D] float64.
    """
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape[0] == 0:
        return lm.copy()
    return gaussian_filter1d(lm, sigma=sigma, axis=0, mode="nearest", truncate=truncate)


def smooth_landmarks(lm: np.ndarray, cfg: SmoothingConfig) -> np.ndarray:
    """Smooth a contiguous landmark sequence [T, K, D] with the configured filter; returns [T, K, D] float64."""
    lm = np.asarray(lm, dtype=np.float64)
    if lm.ndim != 3:
        raise ValueError(f"smooth_landmarks: expected [T, K, D], got {lm.shape}")
    if cfg.method == "box":
        return box_smooth(lm, cfg.n_pre, cfg.n_next)
    if cfg.method == "gaussian":
        return gaussian_smooth(lm, cfg.sigma, cfg.truncate)
    return lm.copy()
