"""Mixed precision and compilation switches shared by the inversion, stage A and stage B.

``amp`` strings come from the stage configs (``"off"``, ``"bf16"``, ``"fp16"``); :func:`use_amp` turns one into the
autocast dtype the device can really run fast, :func:`autocast` opens the matching context, :func:`optimizer_step`
steps through the fp16 gradient scaler when there is one, and :func:`maybe_compile` applies ``torch.compile`` on
CUDA only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

__all__ = ["autocast", "cpu_has_native_bf16", "maybe_compile", "optimizer_step", "use_amp"]


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower
    than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for an ``amp`` switch on ``device``: None (fp32) when off. bf16 on CUDA, and on CPUs with
    native bf16 (:func:`cpu_has_native_bf16`; elsewhere None: emulated bf16 would be slower than fp32). fp16 on CUDA
    only (None on CPU, where fp16 autocast has no fast kernels)."""
    if amp == "off" or device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cpu" and (amp == "fp16" or not cpu_has_native_bf16()):
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(dtype: torch.dtype | None, device: torch.device | str) -> AbstractContextManager:
    """``torch.autocast(device.type, dtype)``, or a no-op context when dtype is None."""
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


def optimizer_step(total: Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Backward of ``total`` and one step of ``opt``; through the fp16 gradient scaler when one is given."""
    if scaler is None:
        total.backward()
        opt.step()
    else:
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()


def maybe_compile(fn: Callable, enabled: bool, device: torch.device) -> Callable:
    """``torch.compile(fn)`` on CUDA when enabled; ``fn`` itself otherwise (CPU: eager, bitwise the plain path)."""
    if enabled and device.type == "cuda":
        return torch.compile(fn)
    return fn
