"""EG3D ``TriPlaneGenerator`` (official ``triplane.py``, docs/eg3d.md §0–§11): mapping, tri-plane backbone, volume
rendering with the face decoder, and super-resolution, with official state-dict names and order.

Deliberate deviations from the official class: ``synthesis(resolution=...)`` does not change
``self.neural_rendering_resolution``; every random draw comes from a passed ``torch.Generator`` (None = torch's
global generator, as officially) in the official order (docs/eg3d.md §14); ``render`` exposes the renderer's samples for
the composite renderer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from innout_core.eg3d.backbone import NOISE_MODES, Generator
from innout_core.eg3d.camera import split_label
from innout_core.eg3d.decoder import OSGDecoder
from innout_core.eg3d.mapping import FullyConnectedLayer, MappingNetwork
from innout_core.eg3d.rendering import RenderingConfig, RenderOutput, render_planes, sample_rays
from innout_core.eg3d.superres import SuperresolutionHybrid8XDC

__all__ = ["SynthesisOutput", "TriPlaneGenerator", "features_to_image", "generator_from_kwargs", "PLANE_CHANNELS"]

PLANE_CHANNELS = 32
"""Feature channels per plane; the backbone outputs 3 * 32 = 96 channels."""

_SR_CLASS = "SuperresolutionHybrid8XDC"


@dataclass
class SynthesisOutput:
    """Everything one ``synthesis`` call produces (float32)."""

    image: Tensor  # [N, 3, img_res, img_res] super-resolved, about [-1, 1] (not clamped)
    image_raw: Tensor  # [N, 3, R, R] = feature_image[:, :3]
    image_depth: Tensor  # [N, 1, R, R] world units along the ray
    feature_image: Tensor  # [N, 32, R, R] marched decoder features (*2-1)
    planes: Tensor  # [N, 96, P, P] backbone output (P = 256 for ffhq512-128)


def features_to_image(rgb: Tensor, resolution: int) -> Tensor:
    """Per-ray values [N, R*R, C] (ray m = row*R + col) -> image [N, C, R, R] (contiguous)."""
    n, m, c = rgb.shape
    if m != resolution * resolution:
        raise ValueError(f"features_to_image: {m} rays is not {resolution}x{resolution}")
    return rgb.permute(0, 2, 1).reshape(n, c, resolution, resolution).contiguous()


class TriPlaneGenerator(nn.Module):
    """The EG3D generator. Constructor arguments are the official ``init_kwargs``, verbatim.

    Non-official extensions (used only by the embedded ``tiny`` config, absent from official kwargs):
    ``plane_resolution`` in ``synthesis_kwargs`` (backbone output side, official 256) and ``block_channels`` in
    ``sr_kwargs`` (see :class:`SuperresolutionHybrid8XDC`).

    Attributes:
        init_kwargs: the constructor kwargs (deep copy). rendering: typed ``rendering_kwargs``.
        neural_rendering_resolution: rays per image side R (constructor default 64 as officially; loaders set it).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        sr_num_fp16_res: int = 0,
        mapping_kwargs: dict | None = None,
        rendering_kwargs: dict | None = None,
        sr_kwargs: dict | None = None,
        **synthesis_kwargs,
    ) -> None:
        super().__init__()
        self.init_kwargs = copy.deepcopy(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                sr_num_fp16_res=sr_num_fp16_res,
                mapping_kwargs=mapping_kwargs if mapping_kwargs is not None else {},
                rendering_kwargs=rendering_kwargs if rendering_kwargs is not None else {},
                sr_kwargs=sr_kwargs if sr_kwargs is not None else {},
                **synthesis_kwargs,
            )
        )
        rendering_kwargs = dict(rendering_kwargs or {})
        sr_module = str(rendering_kwargs.get("superresolution_module", _SR_CLASS))
        if sr_module.rsplit(".", 1)[-1] != _SR_CLASS:
            raise ValueError(f"superresolution_module {sr_module!r} is not supported (only {_SR_CLASS})")
        if img_channels != 3:
            raise ValueError(f"img_channels must be 3, got {img_channels}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.rendering = RenderingConfig.from_kwargs(rendering_kwargs)
        synthesis_kwargs = dict(synthesis_kwargs)
        plane_resolution = int(synthesis_kwargs.pop("plane_resolution", 256))
        # Label statistics the official training loop adds (the official class has no such buffer); unused at
        # inference, so checkpoints without it load with this default (checkpoint.OPTIONAL_TENSORS).
        self.register_buffer("dataset_label_std", torch.ones([c_dim]))
        self.backbone = Generator(
            z_dim,
            c_dim,
            w_dim,
            img_resolution=plane_resolution,
            img_channels=3 * PLANE_CHANNELS,
            mapping_kwargs=mapping_kwargs,
            **synthesis_kwargs,
        )
        self.superresolution = SuperresolutionHybrid8XDC(
            channels=PLANE_CHANNELS,
            img_resolution=img_resolution,
            sr_num_fp16_res=sr_num_fp16_res,
            sr_antialias=rendering_kwargs.get("sr_antialias", True),
            **(sr_kwargs or {}),
        )
        self.decoder = OSGDecoder(
            PLANE_CHANNELS, decoder_output_dim=32, decoder_lr_mul=rendering_kwargs.get("decoder_lr_mul", 1)
        )
        self.neural_rendering_resolution = 64

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def rendering_kwargs(self) -> dict:
        """The official ``rendering_kwargs`` dict (from ``self.rendering``)."""
        return self.rendering.to_kwargs()

    @property
    def num_ws(self) -> int:
        """Number of style vectors (14 for ffhq512-128)."""
        return self.backbone.num_ws

    @property
    def plane_resolution(self) -> int:
        """Side of the tri-plane feature maps (256 for ffhq512-128)."""
        return self.backbone.img_resolution

    # ------------------------------------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Redraw the official random initialisation of every tensor from ``generator`` (module order)."""
        from innout_core.eg3d.backbone import SynthesisBlock, SynthesisLayer, ToRGBLayer

        for module in self.modules():
            if isinstance(module, (FullyConnectedLayer, SynthesisLayer, ToRGBLayer, SynthesisBlock, MappingNetwork)):
                module.reset_parameters(generator)
        self.dataset_label_std.fill_(1.0)

    # ------------------------------------------------------------------------------------------------ stages
    def mapping(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """z [N, z_dim], conditioning label c [N, 25] -> ws [N, num_ws, w_dim] float32.

        c is zeroed when ``c_gen_conditioning_zero`` and scaled by ``c_scale`` (0 when the key is absent from the
        official rendering_kwargs, as officially).
        """
        if self.rendering.c_gen_conditioning_zero:
            c = torch.zeros_like(c)
        c_scale = self.rendering.c_scale if "c_scale" in self.rendering_kwargs else 0.0
        return self.backbone.mapping(
            z, c * c_scale, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )

    def backbone_planes(
        self, ws: Tensor, noise_mode: str = "const", generator: torch.Generator | None = None
    ) -> Tensor:
        """ws [N, num_ws, w_dim] -> planes [N, 96, P, P] float32. 'random' draws 13 randn maps from ``generator``."""
        return self.backbone.synthesis(ws, noise_mode=noise_mode, generator=generator)

    def decode(self, sampled_features: Tensor) -> tuple[Tensor, Tensor]:
        """Face decoder as a DecodeFn: [N, 3, P, 32] -> (rgb [N, P, 32] in (-0.001, 1.001), raw sigma [N, P, 1])."""
        return self.decoder(sampled_features)

    def render(
        self,
        planes: Tensor,
        c: Tensor,
        *,
        resolution: int | None = None,
        generator: torch.Generator | None = None,
        march: bool = True,
        draws: tuple[Tensor, Tensor] | None = None,
        rendering: RenderingConfig | None = None,
    ) -> RenderOutput:
        """Volume-render planes [N, 96, P, P] (or [N, 3, 32, P, P]) from cameras c [N, 25] at R x R rays.

        R = ``resolution`` or ``self.neural_rendering_resolution``. Draws two uniform tensors from ``generator``
        (or uses ``draws``); see :func:`innout_core.eg3d.rendering.render_planes`. ``rendering`` replaces
        ``self.rendering`` for this call only (e.g. :meth:`RenderingConfig.with_sample_mult`); G is not changed.
        """
        n = planes.shape[0]
        if planes.ndim == 4:
            planes = planes.view(n, 3, PLANE_CHANNELS, planes.shape[-2], planes.shape[-1])
        if c.ndim != 2 or c.shape != (n, 25):
            raise ValueError(f"render: camera labels must be [N={n}, 25], got {tuple(c.shape)}")
        r = int(resolution or self.neural_rendering_resolution)
        cam2world, intrinsics = split_label(c.to(torch.float32))
        origins, directions = sample_rays(cam2world, intrinsics, r)
        return render_planes(planes, self.decode, origins, directions, rendering or self.rendering, generator,
                             march=march, draws=draws)

    def superresolve(
        self,
        image_raw: Tensor,
        feature_image: Tensor,
        ws: Tensor,
        noise_mode: str = "none",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """image_raw [N,3,R,R], feature_image [N,32,R,R], ws [N,num_ws,w_dim] -> image [N,3,img_res,img_res]."""
        return self.superresolution(image_raw, feature_image, ws, noise_mode=noise_mode, generator=generator)

    def synthesis(
        self,
        ws: Tensor,
        c: Tensor,
        *,
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
        resolution: int | None = None,
        draws: tuple[Tensor, Tensor] | None = None,
    ) -> SynthesisOutput:
        """ws [N, num_ws, w_dim], rendering camera c [N, 25] -> :class:`SynthesisOutput`.

        RNG order (docs/eg3d.md §14): with 'random' noise, 13 ``randn([N,1,r,r])`` backbone draws, then the render's
        ``rand([N, R*R, S, 1])`` and ``rand([N*R*R, S_imp])``; the SR uses ``rendering.superresolution_noise_mode``
        ('none'). ``resolution`` overrides the neural resolution for this call only.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        r = int(resolution or self.neural_rendering_resolution)
        planes = self.backbone_planes(ws, noise_mode=noise_mode, generator=generator)
        out = self.render(planes, c, resolution=r, generator=generator, draws=draws)
        assert out.rgb is not None and out.depth is not None
        feature_image = features_to_image(out.rgb, r)
        depth_image = features_to_image(out.depth, r)
        rgb_image = feature_image[:, :3]
        image = self.superresolve(
            rgb_image, feature_image, ws, noise_mode=self.rendering.superresolution_noise_mode, generator=generator
        )
        return SynthesisOutput(image, rgb_image, depth_image, feature_image, planes)

    def forward(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs,
    ) -> SynthesisOutput:
        """``synthesis(mapping(z, c), c)``: the same c conditions and renders, as officially."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, c, **synthesis_kwargs)


def generator_from_kwargs(
    init_kwargs: dict, rendering_kwargs: dict, neural_rendering_resolution: int
) -> TriPlaneGenerator:
    """Build an (uninitialised-weights) generator from official ``init_kwargs`` and the object state.

    ``rendering_kwargs`` (the object's attribute) replaces the copy inside ``init_kwargs``, as the forward pass reads
    the attribute. Raises TypeError/ValueError for kwargs this implementation does not support.
    """
    kwargs = copy.deepcopy(dict(init_kwargs))
    kwargs["rendering_kwargs"] = copy.deepcopy(dict(rendering_kwargs))
    generator = TriPlaneGenerator(**kwargs)
    generator.neural_rendering_resolution = int(neural_rendering_resolution)
    return generator
