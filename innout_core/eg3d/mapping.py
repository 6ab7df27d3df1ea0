"""StyleGAN2 mapping network pieces (official `networks_stylegan2.py` names)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FullyConnectedLayer"]


class FullyConnectedLayer(nn.Module):
    """Linear layer with StyleGAN2's equalised learning rate.

    The stored ``weight`` is ``N(0, 1) * weight_init / lr_multiplier``; at run time it is scaled by
    ``lr_multiplier / sqrt(in_features)`` and the bias by ``lr_multiplier``, so Adam sees unit-scale parameters.

    Args:
        in_features, out_features: sizes.
        bias: learnable bias.
        activation: ``'linear'`` or ``'lrelu'`` (leaky ReLU, slope 0.2, gain sqrt(2), as ``bias_act``).
        lr_multiplier: learning-rate multiplier.
        bias_init: initial (effective) bias value.
        weight_init: initial weight scale.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        self.bias = (
            nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier)) if bias else None
        )
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., in_features] -> [..., out_features]."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x.reshape(-1, x.shape[-1]), w.t()).reshape(*x.shape[:-1], -1)
        x = x.matmul(w.t())
        if b is not None:
            x = x + b
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        return x

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"
