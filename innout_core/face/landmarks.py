"""68-point → 5-point landmark conversion (official `landmark68_5.py`, docs/method.md §1.3)."""

from __future__ import annotations

import numpy as np

__all__ = ["LM68_TO_5_RULE", "landmarks68_to_5"]

#: 1-based 68-point indices averaged into each of the 5 points, in output order
#: (eye image-left, eye image-right, nose tip, mouth corner image-left, mouth corner image-right).
LM68_TO_5_RULE: tuple[tuple[int, ...], ...] = ((37, 40), (43, 46), (31,), (49,), (55,))


def landmarks68_to_5(lm68: np.ndarray) -> np.ndarray:
    """Reduce 68-point landmarks to the 5 points of MTCNN / Deep3DFaceRecon's `extract_5p`.

    Args:
        lm68: [..., 68, D] float (pixel coordinates, any D >= 2; extra columns such as z are carried along).
    Returns:
        [..., 5, D] float64: mean(37, 40), mean(43, 46), 31, 49, 55 (1-based indices).
    """
    lm68 = np.asarray(lm68, dtype=np.float64)
    if lm68.ndim < 2 or lm68.shape[-2] != 68:
        raise ValueError(f"landmarks68_to_5: expected [..., 68, D], got {lm68.shape}")
    points = [lm68[..., [i - 1 for i in idx], :].mean(axis=-2) for idx in LM68_TO_5_RULE]
    return np.stack(points, axis=-2)
