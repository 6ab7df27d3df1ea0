"""Causal temporal smoothing at render time (official ``--smooth_out``, docs/method.md §5.5; not in the paper).

A 3-tap causal kernel over frames (t-2, t-1, t) on w+ and phi (:func:`causal_smooth`, whole sequences) and on the
SR block0 features (:func:`smooth_sr_block0`, hooks with running buffers while frames are rendered in order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from innout_core.errors import BadInputError

__all__ = ["OFFICIAL_SMOOTH_KERNEL", "causal_smooth", "smooth_sr_block0"]

#: Causal weights for frames (t-2, t-1, t): [0.25, 0.75, 1] normalised (``test_outdomain.py:123-125``).
OFFICIAL_SMOOTH_KERNEL: tuple[float, float, float] = (0.125, 0.375, 0.5)


def causal_smooth(x: Tensor, factor: float, kernel: Sequence[float] = OFFICIAL_SMOOTH_KERNEL) -> Tensor:
    """Causal temporal smoothing along dim 0 (official ``--smooth_out``, docs/method.md §5.5).

    ``y_t = (1 - factor) * x_t + factor * sum_j kernel[j] * x_{t-K+1+j}`` for ``t >= K-1``, where the sum uses the
    *unsmoothed* inputs; the first ``K-1`` frames are returned as is. ``factor = 1`` is the official kernel,
    ``factor = 0`` the identity.

    Args:
        x: ``[T, ...]`` any float tensor (w+ ``[T,14,512]``, phi ``[T,32]``, features ``[T,C,H,W]``).
        factor: in [0, 1].
        kernel: weights for frames (t-K+1, ..., t), summing to 1.
    Returns:
        Tensor of the same shape and dtype.
    """
    if not 0.0 <= factor <= 1.0:
        raise BadInputError(f"smoothing factor must be in [0, 1], got {factor}")
    k = torch.as_tensor(list(kernel), dtype=x.dtype, device=x.device)
    K = k.numel()
    T = x.shape[0]
    if factor == 0.0 or T < K:
        return x.clone()
    stacked = torch.stack([x[j : T - K + 1 + j] for j in range(K)], dim=0)  # [K, T-K+1, ...]
    smoothed = torch.tensordot(k, stacked, dims=([0], [0]))
    out = x.clone()
    out[K - 1 :] = (1.0 - factor) * x[K - 1 :] + factor * smoothed
    return out


class _CausalBuffer:
    """Running causal smoother for frames that arrive one batch at a time (in frame order)."""

    def __init__(self, factor: float, kernel: Sequence[float]) -> None:
        self.factor = factor
        self.kernel = list(kernel)
        self.history: list[Tensor] = []

    def __call__(self, x: Tensor) -> Tensor:
        out = []
        K = len(self.kernel)
        for i in range(x.shape[0]):
            cur = x[i]
            self.history = (self.history + [cur.detach()])[-K:]
            if len(self.history) == K:
                sm = sum(w * h for w, h in zip(self.kernel, self.history))
                cur = (1.0 - self.factor) * cur + self.factor * sm
            out.append(cur)
        return torch.stack(out, dim=0)


@contextmanager
def smooth_sr_block0(sr: nn.Module, factor: float, kernel: Sequence[float] = OFFICIAL_SMOOTH_KERNEL
                     ) -> Iterator[None]:
    """Within the context, causally smooth SR block0 features over successive frames (docs/method.md §5.5).

    ``sr`` is the SR module that gets the hooks (or a generator: its ``superresolution``); they are removed on exit.
    Pass a private copy (``joint.sr_module``) rather than a shared generator's own SR.

    Official code keeps running buffers of block0's conv output (before toRGB) and of its upsampled skip RGB and
    replaces each by the 3-tap weighted sum once three entries exist. Equivalent hooks here: the skip RGB entering
    block0 (upsampling is linear and identical per frame, so smoothing before or after it is the same) and the output
    of ``block0.conv1`` (the conv output that feeds toRGB and block1). Frames must be rendered in order.
    """
    if factor == 0.0:
        yield
        return
    block0 = getattr(sr, "superresolution", sr).block0
    img_buf, x_buf = _CausalBuffer(factor, kernel), _CausalBuffer(factor, kernel)

    def pre_hook(_module: nn.Module, args: tuple, kwargs: dict):
        args = list(args)
        if len(args) >= 2 and args[1] is not None:
            args[1] = img_buf(args[1])
        elif kwargs.get("img") is not None:
            kwargs["img"] = img_buf(kwargs["img"])
        return tuple(args), kwargs

    def conv_hook(_module: nn.Module, _inp: tuple, out: Tensor) -> Tensor:
        return x_buf(out)

    handles = [
        block0.register_forward_pre_hook(pre_hook, with_kwargs=True),
        block0.conv1.register_forward_hook(conv_hook),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
