"""StyleGAN2 mapping network pieces (official `networks_stylegan2.py` names)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FullyConnectedLayer", "MappingNetwork", "normalize_2nd_moment"]


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
        self.lr_multiplier = lr_multiplier
        self.weight_init = weight_init
        self.bias_init = bias_init

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Redraw the official initialisation in place: weight ~ N(0,1)*weight_init/lr_mul, bias = bias_init/lr_mul."""
        w = torch.randn(self.weight.shape, generator=generator, dtype=torch.float32)
        self.weight.copy_(w * (self.weight_init / self.lr_multiplier))
        if self.bias is not None:
            self.bias.fill_(float(self.bias_init) / self.lr_multiplier)

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


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``x * rsqrt(mean(x**2, dim) + eps)``: unit second moment along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """StyleGAN2 mapping network z (+ embedded camera label c) -> ws (official ``MappingNetwork``, docs/eg3d.md §3).

    State-dict entries, in order: ``w_avg`` [w_dim] (buffer), ``embed.*`` (when c_dim > 0), ``fc0.*`` ... ``fc{L-1}.*``.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """z [N, z_dim], c [N, c_dim] (already scaled by the caller) -> ws [N, num_ws, w_dim] float32.

        Truncation: ``w_avg + psi * (w - w_avg)`` on all ws (cutoff None) or on the first ``truncation_cutoff``.
        ``update_emas`` moves ``w_avg`` towards the batch mean (training only).
        """
        x = None
        if self.z_dim > 0:
            if z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {tuple(z.shape)}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                shape = None if c is None else tuple(c.shape)
                raise ValueError(f"c must be [N, {self.c_dim}], got {shape}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Own state only (children reset themselves): ``w_avg`` = 0."""
        if hasattr(self, "w_avg"):
            self.w_avg.zero_()

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
