"""68→5 rule (spec §1.3) and temporal smoothing (spec §1.4 box, centred Gaussian) against hand-written references."""

from __future__ import annotations

import numpy as np
import pytest

from innout_core.face.landmarks import landmarks68_to_5
from innout_core.face.smoothing import SmoothingConfig, box_smooth, gaussian_smooth, smooth_landmarks


def test_68_to_5_rule_by_hand():
    rng = np.random.default_rng(0)
    lm = rng.normal(size=(3, 68, 2)) * 50
    out = landmarks68_to_5(lm)
    for i in range(3):
        p = lm[i]
        # 1-based indices from landmark68_5.py: (37+40)/2, (43+46)/2, 31, 49, 55
        expect = np.stack([(p[36] + p[39]) / 2, (p[42] + p[45]) / 2, p[30], p[48], p[54]])
        np.testing.assert_allclose(out[i], expect, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        landmarks68_to_5(np.zeros((5, 2)))


def test_box_smooth_official_formulas():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(6, 68, 2))
    out = box_smooth(f)  # n_pre = n_next = 1, first/last frame replicated
    np.testing.assert_allclose(out[0], (2 * f[0] + f[1]) / 3, atol=1e-12)
    for t in range(1, 5):
        np.testing.assert_allclose(out[t], (f[t - 1] + f[t] + f[t + 1]) / 3, atol=1e-12)
    np.testing.assert_allclose(out[5], (f[4] + 2 * f[5]) / 3, atol=1e-12)


def test_box_smooth_asymmetric_window_loop_reference():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(7, 5, 2))
    out = box_smooth(f, n_pre=2, n_next=0)
    for t in range(7):
        window = [f[min(max(s, 0), 6)] for s in range(t - 2, t + 1)]
        np.testing.assert_allclose(out[t], np.mean(window, axis=0), atol=1e-12)


def test_gaussian_smooth_loop_reference():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(9, 5, 2))
    sigma, truncate = 1.3, 3.0
    radius = int(truncate * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    out = gaussian_smooth(f, sigma, truncate)
    for t in range(9):
        ref = sum(k[j + radius] * f[min(max(t + j, 0), 8)] for j in range(-radius, radius + 1))
        np.testing.assert_allclose(out[t], ref, atol=1e-12)
    # a constant sequence is a fixed point; a linear one is preserved away from the ends
    lin = np.arange(20, dtype=float)[:, None, None] * np.ones((1, 3, 2))
    np.testing.assert_allclose(gaussian_smooth(lin, sigma)[radius:-radius], lin[radius:-radius], atol=1e-9)


def test_smooth_landmarks_dispatch():
    f = np.random.default_rng(4).normal(size=(5, 68, 2))
    np.testing.assert_array_equal(smooth_landmarks(f, SmoothingConfig(method="none")), f)
    np.testing.assert_allclose(smooth_landmarks(f, SmoothingConfig()), box_smooth(f))
    np.testing.assert_allclose(smooth_landmarks(f, SmoothingConfig(method="gaussian", sigma=2.0)),
                               gaussian_smooth(f, 2.0))
