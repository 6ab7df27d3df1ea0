"""The official StyleCLIP latent mapper (``LevelsMapper``, state-dict names of its checkpoints) and its edit.

``w' = w + s * M(w)`` (docs/method.md §5.1): per-level mappers for the coarse (0-3), medium (4-7) and fine (8-13)
style vectors, each PixelNorm + 4 x EqualLinear(512, 512, lr_mul 0.01, fused leaky ReLU).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from innout_core.errors import BadInputError, CheckpointError

__all__ = ["EqualLinear", "Mapper", "PixelNorm", "StyleCLIPMapper", "apply_styleclip", "load_styleclip_mapper"]

#: StyleCLIP LevelsMapper level boundaries over the 14 EG3D style vectors (``latent_mappers.py:60-62``).
_LEVELS: dict[str, slice] = {"course": slice(0, 4), "medium": slice(4, 8), "fine": slice(8, None)}


class PixelNorm(nn.Module):
    """StyleGAN2 (rosinality) PixelNorm: ``x * rsqrt(mean(x^2, dim=1) + 1e-8)``.

    Faithful to the official code: for the mapper's ``[N, k, 512]`` input, dim 1 is the *style-vector* axis (the
    k vectors of one level are normalised jointly per channel), not the channel axis.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """rosinality EqualLinear with ``activation='fused_lrelu'``: ``lrelu(x W^T * scale + b * lr_mul, 0.2) * sqrt 2``.

    ``weight`` ``[out, in]`` stored as ``N(0,1) / lr_mul``; ``scale = lr_mul / sqrt(in)``. For 3-D inputs the bias is
    added on the last axis (StyleCLIP's ``fused_leaky_relu`` CPU path).
    """

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 0.01, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight * self.scale)
        return F.leaky_relu(out + self.bias * self.lr_mul, negative_slope=0.2) * math.sqrt(2.0)


class Mapper(nn.Module):
    """PixelNorm + 4 x EqualLinear(512, 512, lr_mul 0.01, fused lrelu), as ``latent_mappers.Mapper``."""

    def __init__(self, w_dim: int = 512, n_layers: int = 4) -> None:
        super().__init__()
        self.mapping = nn.Sequential(PixelNorm(), *[EqualLinear(w_dim, w_dim, lr_mul=0.01) for _ in range(n_layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.mapping(x)


class StyleCLIPMapper(nn.Module):
    """The official ``LevelsMapper``: per-level mappers for style vectors 0-3, 4-7 and 8-13; a disabled level
    outputs zeros. State-dict keys match the official checkpoint after stripping ``mapper.`` (e.g.
    ``course_mapping.mapping.1.weight`` -- "course" is the official spelling).

    Forward: ``[N, 14, 512]`` -> ``[N, 14, 512]`` residual ``M(w)``.
    """

    def __init__(self, coarse: bool = True, medium: bool = True, fine: bool = True, w_dim: int = 512) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.levels = {"course": coarse, "medium": medium, "fine": fine}
        for name, on in self.levels.items():
            if on:
                self.add_module(f"{name}_mapping", Mapper(w_dim))

    def forward(self, ws: Tensor) -> Tensor:
        outs = []
        for name, sl in _LEVELS.items():
            part = ws[:, sl, :]
            outs.append(getattr(self, f"{name}_mapping")(part) if self.levels[name] else torch.zeros_like(part))
        return torch.cat(outs, dim=1)


def load_styleclip_mapper(path: str | Path) -> StyleCLIPMapper:
    """Load a StyleCLIP mapper checkpoint (official ``best_model.pt``: ``{'state_dict': {'mapper.*': ...}, 'opts':
    ...}``, or a bare state dict with or without the ``mapper.`` prefix). Which levels exist is read from the keys
    (the official script's run-twice ``--no_fine_mapper`` dance is not needed). Loaded with ``weights_only=True``.

    Raises:
        CheckpointError: unreadable/unsafe file, no mapper keys, or wrong shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("StyleCLIP mapper checkpoint not found; pass the mapper's best_model.pt", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read StyleCLIP mapper checkpoint safely ({type(exc).__name__})", path) from exc
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError("StyleCLIP mapper checkpoint holds no state dict", path)
    if any(k.startswith("mapper.") for k in sd):
        sd = {k[len("mapper."):]: v for k, v in sd.items() if k.startswith("mapper.")}
    levels = {name: any(k.startswith(f"{name}_mapping.") for k in sd) for name in _LEVELS}
    if not any(levels.values()):
        raise CheckpointError("no StyleCLIP mapper weights (expected keys like 'mapper.course_mapping.*')", path)
    w_key = next(k for k in sd if k.endswith("mapping.1.weight"))
    w_dim = int(sd[w_key].shape[1])
    mapper = StyleCLIPMapper(coarse=levels["course"], medium=levels["medium"], fine=levels["fine"], w_dim=w_dim)
    try:
        mapper.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = str(exc).replace("\n", " ")
        raise CheckpointError(f"StyleCLIP mapper does not match the official architecture: {msg[:300]}", path) from exc
    return mapper.eval().requires_grad_(False)


@torch.no_grad()
def apply_styleclip(ws: Tensor, mapper: StyleCLIPMapper, strength: float) -> Tensor:
    """``w' = w + strength * M(w)`` (``inference_eg3d.py:111-120``). ws ``[T, 14, 512]`` -> ``[T, 14, 512]``."""
    if ws.ndim != 3 or ws.shape[1] < 9 or ws.shape[2] != mapper.w_dim:
        raise BadInputError(f"StyleCLIP mapper needs ws [T, 14, {mapper.w_dim}], got {list(ws.shape)}")
    mapper = mapper.to(ws.device)
    return ws + float(strength) * mapper(ws.float()).to(ws.dtype)
