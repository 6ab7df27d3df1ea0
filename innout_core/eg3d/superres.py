"""EG3D super-resolution module ``SuperresolutionHybrid8XDC`` (official ``superresolution.py``, docs/eg3d.md §10).

Two StyleGAN2 'skip' synthesis blocks styled only by the last w: block0 (C -> 256 ch at img_res/2) and block1
(256 -> 128 ch at img_res); the output is the 3-channel skip image, i.e. a learnt residual on the FIR-upsampled raw
image. With ``sr_num_fp16_res > 0`` every layer clamps at +-256 (on every device) and runs in float16 on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from innout_core.eg3d.backbone import SynthesisBlock

__all__ = ["SuperresolutionHybrid8XDC"]


class SuperresolutionHybrid8XDC(nn.Module):
    """(rgb [N,3,r,r], x [N,C,r,r], ws [N,*,w_dim]) -> image [N,3,img_res,img_res].

    Official arguments are kept (``channel_base``/``channel_max``/``num_fp16_res`` are accepted and ignored, as
    officially). Two non-official extensions, used only by the embedded ``tiny`` config; their defaults give the
    released module exactly: ``block_channels`` (block0/block1 widths, official (256, 128)) and
    ``img_resolution`` other than 512 (input resolution ``img_resolution // 4``, blocks at /2 and /1).
    """

    def __init__(
        self,
        channels: int,
        img_resolution: int,
        sr_num_fp16_res: int,
        sr_antialias: bool,
        num_fp16_res: int = 4,
        conv_clamp: float | None = None,
        channel_base: int | None = None,
        channel_max: int | None = None,
        block_channels: Sequence[int] = (256, 128),
        w_dim: int = 512,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if img_resolution < 16 or img_resolution & (img_resolution - 1):
            raise ValueError(f"SuperresolutionHybrid8XDC: img_resolution must be a power of two >= 16, "
                             f"got {img_resolution}")
        if len(block_channels) != 2:
            raise ValueError(f"SuperresolutionHybrid8XDC: block_channels needs two widths, got {block_channels!r}")
        use_fp16 = sr_num_fp16_res > 0
        self.channels = channels
        self.img_resolution = img_resolution
        self.input_resolution = img_resolution // 4
        self.sr_antialias = bool(sr_antialias)
        c0, c1 = (int(c) for c in block_channels)
        clamp = 256 if use_fp16 else None
        self.block0 = SynthesisBlock(
            channels, c0, w_dim=w_dim, resolution=img_resolution // 2, img_channels=3, is_last=False,
            use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs,
        )
        self.block1 = SynthesisBlock(
            c0, c1, w_dim=w_dim, resolution=img_resolution, img_channels=3, is_last=True,
            use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs,
        )

    def forward(
        self,
        rgb: Tensor,
        x: Tensor,
        ws: Tensor,
        noise_mode: str = "none",
        generator: torch.Generator | None = None,
        fused_modconv: bool | str | None = None,
    ) -> Tensor:
        """rgb [N,3,r,r] and x [N,C,r,r] (any r; resized bilinearly to img_res/4 when different), ws [N, K, w_dim]
        (only ``ws[:, -1]`` is used) -> image [N, 3, img_res, img_res] float32, roughly [-1, 1] (not clamped).
        """
        if x.ndim != 4 or x.shape[1] != self.channels or rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"SR expects rgb [N,3,r,r] and x [N,{self.channels},r,r]; got {tuple(rgb.shape)}, "
                             f"{tuple(x.shape)}")
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        r = self.input_resolution
        if x.shape[-1] != r or x.shape[-2] != r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=self.sr_antialias)
            rgb = F.interpolate(rgb, size=(r, r), mode="bilinear", align_corners=False,
                                antialias=self.sr_antialias)
        kw = dict(noise_mode=noise_mode, generator=generator, fused_modconv=fused_modconv)
        x, rgb = self.block0(x, rgb.to(torch.float32), ws, **kw)
        x, rgb = self.block1(x, rgb, ws, **kw)
        return rgb
