"""Temporal landmark smoothing: the 3-tap box of docs/method.md §1.4, a centred Gaussian, and filters that cut
detector jitter without lagging real head motion: a constant-velocity Kalman filter with the Rauch-Tung-Striebel
backward pass (a model-based smoother: no lag on motion whose acceleration its process noise allows),
Savitzky-Golay (a local polynomial fit, exact on motion of up to its order) and One-Euro (Casiez et al. 2012: a
low-pass whose cut-off rises with speed)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

from innout_core.settings.face import SmoothingConfig


__all__ = ["SmoothingConfig", "box_smooth", "gaussian_smooth", "kalman_smooth", "savgol_smooth", "one_euro_smooth",
           "smooth_landmarks"]


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


def savgol_smooth(lm: np.ndarray, window: int = 11, polyorder: int = 3) -> np.ndarray:
    """Savitzky-Golay filter along time (scipy, `mode='interp'`: the ends are the polynomial fit of the first /
    last window). The window shrinks to the largest odd length <= T for short videos.

    Args:
        lm: [T, K, D] float landmarks (pixels).
    Returns:
        [T, K, D] float64; a polynomial trajectory of degree <= `polyorder` is returned unchanged (no lag).
    """
    lm = np.asarray(lm, dtype=np.float64)
    n = lm.shape[0]
    w = min(window if window % 2 else window + 1, n if n % 2 else n - 1)
    if w <= polyorder or w < 3:
        return lm.copy()
    return savgol_filter(lm, w, polyorder, axis=0, mode="interp")


def _alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with `cutoff` cycles per frame, sampled once per frame."""
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau)


def one_euro_smooth(lm: np.ndarray, min_cutoff: float = 0.05, beta: float = 30.0, d_cutoff: float = 0.3,
                    scale: float | None = None) -> np.ndarray:
    """One-Euro filter (causal) along time, per landmark: cut-off = min_cutoff + beta * speed, the speed being the
    low-passed 2D landmark velocity in units of `scale` per frame.

    Args:
        lm: [T, K, D] float landmarks (pixels).
        scale: length unit of the speed (pixels); default the median inter-ocular distance (68 points: outer
            eye corners; 5 points: eye centres), so the parameters do not depend on the face size.
    Returns:
        [T, K, D] float64; out_0 = lm_0.
    """
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape[0] == 0:
        return lm.copy()
    if scale is None:
        a, b = (36, 45) if lm.shape[1] == 68 else (0, 1)
        scale = float(np.median(np.linalg.norm(lm[:, a, :2] - lm[:, b, :2], axis=-1))) if lm.shape[1] > b else 1.0
    scale = scale if np.isfinite(scale) and scale > 0 else 1.0
    out = np.empty_like(lm)
    out[0] = lm[0]
    dx = np.zeros(lm.shape[1:])
    ad = _alpha(d_cutoff)
    for t in range(1, lm.shape[0]):
        dx = ad * (lm[t] - out[t - 1]) / scale + (1 - ad) * dx
        speed = np.linalg.norm(dx, axis=-1, keepdims=True)
        a = _alpha(min_cutoff + beta * speed)
        out[t] = a * lm[t] + (1 - a) * out[t - 1]
    return out


def _iod_scale(lm: np.ndarray) -> float:
    """Median inter-ocular distance of [T, K, D] landmarks (68 points: outer eye corners; 5: eye centres), else 1."""
    a, b = (36, 45) if lm.shape[1] == 68 else (0, 1)
    s = float(np.median(np.linalg.norm(lm[:, a, :2] - lm[:, b, :2], axis=-1))) if lm.shape[1] > b else 1.0
    return s if np.isfinite(s) and s > 0 else 1.0


def kalman_smooth(lm: np.ndarray, accel: float = 0.1, noise: float = 0.02, scale: float | None = None) -> np.ndarray:
    """Constant-velocity Kalman filter + Rauch-Tung-Striebel smoother along time, each coordinate on its own
    (state: position, velocity; white acceleration of std `accel`, measurement std `noise`, both in units of
    `scale` per frame² / per frame). The gains do not depend on the data, so they are computed once and applied
    to every coordinate.

    Args:
        lm: [T, K, D] float landmarks (pixels).
        scale: length unit (pixels); default the median inter-ocular distance.
    Returns:
        [T, K, D] float64; a constant-velocity trajectory is returned unchanged (no lag), and one with the
        acceleration of real head motion nearly so.
    """
    lm = np.asarray(lm, dtype=np.float64)
    n = lm.shape[0]
    if n < 2:
        return lm.copy()
    scale = _iod_scale(lm) if scale is None else scale
    q, r = (accel * scale) ** 2, (noise * scale) ** 2
    f = np.array([[1.0, 1.0], [0.0, 1.0]])
    qm = q * np.array([[0.25, 0.5], [0.5, 1.0]])
    z = lm.reshape(n, -1)
    xs = np.empty((n, 2, z.shape[1]))  # filtered states
    xp = np.empty_like(xs)  # predicted states
    ps, pp = np.empty((n, 2, 2)), np.empty((n, 2, 2))
    x = np.stack([z[0], np.zeros(z.shape[1])])
    p = np.diag([r, 1e6 * r])
    for t in range(n):
        if t > 0:
            x, p = f @ x, f @ p @ f.T + qm
        xp[t], pp[t] = x, p
        k = p[:, 0] / (p[0, 0] + r)  # gain [2]
        x = x + k[:, None] * (z[t] - x[0])[None]
        p = p - np.outer(k, p[0])
        xs[t], ps[t] = x, p
    out = xs.copy()
    for t in range(n - 2, -1, -1):
        c = ps[t] @ f.T @ np.linalg.inv(pp[t + 1])
        out[t] = xs[t] + c @ (out[t + 1] - xp[t + 1])
    return out[:, 0].reshape(lm.shape)


def smooth_landmarks(lm: np.ndarray, cfg: SmoothingConfig) -> np.ndarray:
    """Smooth a contiguous landmark sequence [T, K, D] with the configured filter; returns [T, K, D] float64."""
    lm = np.asarray(lm, dtype=np.float64)
    if lm.ndim != 3:
        raise ValueError(f"smooth_landmarks: expected [T, K, D], got {lm.shape}")
    if cfg.method == "kalman":
        return kalman_smooth(lm, cfg.accel, cfg.noise)
    if cfg.method == "box":
        return box_smooth(lm, cfg.n_pre, cfg.n_next)
    if cfg.method == "gaussian":
        return gaussian_smooth(lm, cfg.sigma, cfg.truncate)
    if cfg.method == "savgol":
        return savgol_smooth(lm, cfg.window, cfg.polyorder)
    if cfg.method == "one_euro":
        return one_euro_smooth(lm, cfg.min_cutoff, cfg.beta, cfg.d_cutoff)
    return lm.copy()
