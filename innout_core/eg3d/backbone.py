"""StyleGAN2 synthesis network ('skip' architecture) that outputs EG3D's tri-planes (docs/eg3d.md §4–§5).

Module and tensor names follow the official ``networks_stylegan2.py`` so ``state_dict()`` keys, shapes and order
are the official ones: ``synthesis.b{res}.{const,resample_filter,conv0,conv1,torgb}`` then ``mapping.*``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from innout_core.eg3d.mapping import FullyConnectedLayer, MappingNetwork
from innout_core.eg3d.ops import bias_act, modulated_conv2d, setup_filter, upsample2d

__all__ = ["SynthesisLayer", "ToRGBLayer", "SynthesisBlock", "SynthesisNetwork", "Generator", "NOISE_MODES"]

NOISE_MODES = ("random", "const", "none")
CPU_CHANNELS_LAST_MIN_RES = 32
"""Blocks at this resolution and above keep activations channels-last on the CPU (layout only, not maths)."""


def _grad_needed(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _resolve_fused(fused_modconv: bool | str | None, default: bool | str, training: bool, batch: int) -> bool:
    """Official 'inference_only' = fused in eval, non-fused in training. None falls back to the block default."""
    choice = default if fused_modconv is None else fused_modconv
    if choice == "inference_only":
        return not training
    if choice == "auto":
        return batch == 1 or not training
    return bool(choice)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+2x FIR up-conv when ``up=2``) + per-pixel noise + bias + lrelu, clamped at ``conv_clamp``.

    Official state: ``weight`` [C_out,C_in,k,k], ``noise_strength`` [], ``bias`` [C_out], buffers
    ``resample_filter`` [4,4] and ``noise_const`` [res,res], child ``affine`` (FC w_dim -> C_in, bias init 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.channels_last = channels_last
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2.0) if activation in ("lrelu", "relu") else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Official init of own tensors: weight, noise_const ~ N(0,1); noise_strength, bias = 0."""
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator))
        if self.use_noise:
            self.noise_const.copy_(torch.randn(self.noise_const.shape, generator=generator))
            self.noise_strength.zero_()
        self.bias.zero_()

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """x [N, C_in, res/up, res/up], w [N, w_dim] -> [N, C_out, res, res] (dtype of x).

        noise_mode: 'random' draws ``randn([N,1,res,res], generator=generator)``; 'const' uses ``noise_const``;
        'none' adds nothing.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            n = x.shape[0]
            draw = torch.randn([n, 1, self.resolution, self.resolution], generator=generator, device=x.device)
            noise = draw * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        fold = self.activation in ("lrelu", "relu", "linear") and act_gain > 0
        conv = dict(noise=noise, up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                    flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        if fold:
            # act(z) * g == act(z * g) for g > 0: fold the gain and the bias into the conv (one pass fewer).
            x = modulated_conv2d(x, self.weight, styles, out_gain=act_gain, bias=self.bias * act_gain, **conv)
            inplace = not _grad_needed(x)
            if self.activation == "lrelu":
                x = F.leaky_relu_(x, 0.2) if inplace else F.leaky_relu(x, 0.2)
            elif self.activation == "relu":
                x = F.relu_(x) if inplace else F.relu(x)
            if act_clamp is not None:
                x = x.clamp_(-act_clamp, act_clamp) if inplace else x.clamp(-act_clamp, act_clamp)
            return x
        x = modulated_conv2d(x, self.weight, styles, **conv)
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
            f"up={self.up}, activation={self.activation}"
        )


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation + bias (clamped at ``conv_clamp``): features -> image channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Official init of own tensors: weight ~ N(0,1), bias = 0."""
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator))
        self.bias.zero_()

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        """x [N, C_in, H, W], w [N, w_dim] -> [N, C_out, H, W] (dtype of x)."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(
            x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv, bias=self.bias
        )
        if self.conv_clamp is not None:
            x = x.clamp_(-self.conv_clamp, self.conv_clamp) if not _grad_needed(x) else x.clamp(
                -self.conv_clamp, self.conv_clamp
            )
        return x

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: [conv0 (2x up)], conv1, torgb; img = up(img) + torgb(x).

    ``use_fp16`` runs the block in float16 on CUDA only (official: forced to fp32 on other devices).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = 256,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str = True,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"only the 'skip' architecture is implemented (EG3D), got {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1
        self.torgb = ToRGBLayer(
            out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last
        )
        self.num_torgb += 1

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Own tensors only: ``const`` ~ N(0,1) (first block)."""
        if self.in_channels == 0:
            self.const.copy_(torch.randn(self.const.shape, generator=generator))

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        noise_mode: str = "random",
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """x [N, C_in, res/2, res/2] (None for the first block), img [N, img_channels, res/2, res/2] or None,
        ws [N, num_conv + num_torgb, w_dim] -> (x [N, C_out, res, res], img [N, img_channels, res, res] float32).
        """
        w_iter = iter(ws.unbind(dim=1))
        if ws.device.type != "cuda":
            force_fp32 = True
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        memory_format = torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        if ws.device.type == "cpu" and self.resolution >= CPU_CHANNELS_LAST_MIN_RES:
            memory_format = torch.channels_last  # same maths; oneDNN's NHWC convs are 1.2-3x faster on the CPU
        fused = _resolve_fused(fused_modconv, self.fused_modconv_default, self.training, ws.shape[0])
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, generator=generator)
        else:
            assert x is not None
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, generator=generator)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, generator=generator)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused)
        y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if img is None:
            img = y
        else:
            img = img.add_(y) if not _grad_needed(img, y) else img + y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, img_channels, img_resolution, img_resolution] (blocks b4 ... b{res})."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The synthesis blocks from 4x4 up."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(
        self,
        ws: Tensor,
        noise_mode: str = "random",
        generator: torch.Generator | None = None,
        fused_modconv: bool | str | None = None,
        return_intermediates: bool = False,
        **block_kwargs,
    ) -> Tensor | tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """ws [N, num_ws, w_dim] -> img [N, img_channels, R, R] float32.

        Block k uses ``ws[:, i_k : i_k + num_conv + num_torgb]`` with ``i_k`` advancing by ``num_conv``, so each
        torgb shares its w with the next block's conv0. 'random' noise draws 13 ``randn([N,1,r,r])`` (r = 4, 8, 8,
        ...) from ``generator`` in layer order. ``return_intermediates`` also returns each block's (x, img).
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        inter: list[tuple[Tensor, Tensor]] = []
        for block in self.blocks():
            cur = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(
                x, img, cur, noise_mode=noise_mode, generator=generator, fused_modconv=fused_modconv, **block_kwargs
            )
            if return_intermediates:
                inter.append((x, img.clone()))
        assert img is not None
        return (img, inter) if return_intermediates else img


class Generator(nn.Module):
    """StyleGAN2 generator (the EG3D ``backbone``): ``synthesis`` (registered first) and ``mapping``."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))

    def forward(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs,
    ) -> Tensor:
        """z [N, z_dim], c [N, c_dim] -> img [N, img_channels, R, R]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
