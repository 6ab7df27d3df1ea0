"""Named EG3D generator configs: ``ffhq512-128`` (the released architecture), ``tiny`` (the embedded default) and
``tiny-face`` (``tiny`` trained on procedural heads).

- ``ffhq512-128``: exactly the released ``init_kwargs`` / ``rendering_kwargs`` (docs/eg3d.md §1), neural resolution 128.
  ``build_generator`` gives it the official random initialisation (seeded); real weights come from
  ``checkpoint.load_generator``.
- ``tiny``: the same architecture family scaled down so one ``synthesis`` takes a few tens of milliseconds on one
  CPU core: 64x64 tri-planes (10 ws), backbone channels min(1024 // res, 32), neural resolution 32 with 12 + 12
  samples per ray, SR 32 -> 128 px with (32, 16) channels. Its weights are fixed and made in code from the seed
  (official init, perturbed so nothing is trivially 0/1, w_avg from mapped samples, low frequencies boosted and the
  density rescaled so renders mix empty and opaque space).
- ``tiny-face``: the ``tiny`` architecture with the weights shipped in the package
  (``innout_core/eg3d/weights/tiny-face/``: ``model.safetensors`` + ``config.json``, made by
  ``bench/train_tiny_face.py``), read with ``checkpoint.load_generator`` (sha256-checked). Its InterfaceGAN-style
  directions (``directions/<name>.npy``, ``[1, 512]``, made by ``bench/tiny_face_directions.py``) are listed by
  :func:`shipped_directions`; :attr:`GeneratorSpec.edit_direction` names the one the ``tiny-demo`` edit uses.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from innout_core.eg3d.camera import CANONICAL_FRONTAL_LABEL
from innout_core.eg3d.generator import TriPlaneGenerator, generator_from_kwargs

__all__ = [
    "GeneratorSpec",
    "TinyWeightsConfig",
    "CONFIGS",
    "WEIGHTS_ROOT",
    "build_generator",
    "generator_from_kwargs",
    "weights_dir",
    "shipped_directions",
    "edit_direction_file",
]

#: Where shipped generator weights live (package data, installed with the wheel).
WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"
_SR_MODULE = "training.superresolution.SuperresolutionHybrid8XDC"


class TinyWeightsConfig(BaseModel):
    """How ``tiny``'s fixed weights are made from the official init (all draws from one seeded generator)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_jitter: float = Field(0.25, description="std of noise added to weights/const, in units of their init std")
    bias_jitter: float = Field(0.2, description="std of noise added to effective conv/FC biases")
    affine_bias_jitter: float = Field(0.3, description="std of noise added to style (affine) biases (init 1)")
    noise_strength_std: float = Field(0.1, description="std of the per-layer noise_strength scalars (init 0)")
    low_freq_gain: float = Field(4.0, description="factor on the torgb weights of the 4x4-16x16 blocks (smooth planes)")
    sr_residual_gain: float = Field(0.1, description="factor on the SR torgb weights (image ~ upsampled raw image)")
    w_avg_samples: int = Field(512, description="z samples mapped (frontal camera) to set w_avg")
    sigma_mean: float = Field(-1.0, description="target mean of raw sigma over the box, for the mean latent")
    sigma_std: float = Field(8.0, description="target std of raw sigma over the box, for the mean latent")
    density_points: int = Field(8192, description="uniform points in the box used to measure sigma statistics")


class GeneratorSpec(BaseModel):
    """A named generator configuration: official constructor kwargs + object state + how weights are made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field(description="one sentence: what the config is for")
    init_kwargs: dict = Field(description="official TriPlaneGenerator constructor kwargs (incl. rendering_kwargs)")
    neural_rendering_resolution: int = Field(description="rays per image side R of the neural rendering")
    tiny_weights: TinyWeightsConfig | None = Field(
        None, description="fixed in-code weights recipe (tiny); None = official random init"
    )
    weights: str | None = Field(
        None, description="folder under innout_core/eg3d/weights/ with shipped trained weights (our safetensors "
        "format), loaded by build_generator; None = weights made in code"
    )
    edit_direction: str | None = Field(
        None, description="shipped direction (<weights>/directions/<name>.npy) that the tiny-demo edit applies; "
        "None = a direction made from the generator itself"
    )


def _rendering_kwargs(depth: int, image_resolution: int) -> dict:
    return {
        "image_resolution": image_resolution,
        "disparity_space_sampling": False,
        "clamp_mode": "softplus",
        "superresolution_module": _SR_MODULE,
        "c_gen_conditioning_zero": False,
        "gpc_reg_prob": 0.5,
        "c_scale": 1.0,
        "superresolution_noise_mode": "none",
        "density_reg": 0.25,
        "density_reg_p_dist": 0.004,
        "reg_type": "l1",
        "decoder_lr_mul": 1.0,
        "sr_antialias": True,
        "depth_resolution": depth,
        "depth_resolution_importance": depth,
        "ray_start": 2.25,
        "ray_end": 3.3,
        "box_warp": 1,
        "avg_camera_radius": 2.7,
        "avg_camera_pivot": [0, 0, 0.2],
    }


CONFIGS: dict[str, GeneratorSpec] = {
    "ffhq512-128": GeneratorSpec(
        description="The released EG3D ffhq512-128 / ffhqrebalanced512-128 architecture (load real weights into it).",
        init_kwargs={
            "z_dim": 512,
            "w_dim": 512,
            "mapping_kwargs": {"num_layers": 2},
            "channel_base": 32768,
            "channel_max": 512,
            "fused_modconv_default": "inference_only",
            "rendering_kwargs": _rendering_kwargs(48, 512),
            "num_fp16_res": 0,
            "sr_num_fp16_res": 4,
            "sr_kwargs": {"channel_base": 32768, "channel_max": 512, "fused_modconv_default": "inference_only"},
            "conv_clamp": None,
            "c_dim": 25,
            "img_resolution": 512,
            "img_channels": 3,
        },
        neural_rendering_resolution=128,
    ),
    "tiny": GeneratorSpec(
        description="Embedded default for the demo and tests: same architecture family, fixed in-code weights, "
        "64x64 planes, 32x32 neural rendering with 12+12 samples, 128x128 output; tens of ms per image on a CPU.",
        init_kwargs={
            "z_dim": 512,
            "w_dim": 512,
            "mapping_kwargs": {"num_layers": 2},
            "channel_base": 1024,
            "channel_max": 32,
            "plane_resolution": 64,
            "fused_modconv_default": "inference_only",
            "rendering_kwargs": _rendering_kwargs(12, 128),
            "num_fp16_res": 0,
            "sr_num_fp16_res": 4,
            "sr_kwargs": {
                "channel_base": 32768,
                "channel_max": 512,
                "fused_modconv_default": "inference_only",
                "block_channels": [32, 16],
            },
            "conv_clamp": None,
            "c_dim": 25,
            "img_resolution": 128,
            "img_channels": 3,
        },
        neural_rendering_resolution=32,
        tiny_weights=TinyWeightsConfig(),
    ),
}
CONFIGS["tiny-face"] = GeneratorSpec(
    description="The tiny architecture trained (bench/train_tiny_face.py) to draw the procedural head family of "
    "innout_core.synthetic.heads; weights shipped in the package, with edit directions fitted to the heads' "
    "parameters.",
    init_kwargs=copy.deepcopy(CONFIGS["tiny"].init_kwargs),
    neural_rendering_resolution=CONFIGS["tiny"].neural_rendering_resolution,
    weights="tiny-face",
    edit_direction="hair_lightness",  # the held-out fit does not find smile in w (directions/directions.json)
)


def weights_dir(name: str) -> Path | None:
    """The package folder of a named generator's shipped weights (None when its weights are made in code)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown generator config {name!r}; choose one of {sorted(CONFIGS)}")
    folder = CONFIGS[name].weights
    return None if folder is None else WEIGHTS_ROOT / folder


def shipped_directions(name: str) -> dict[str, Path]:
    """Edit directions shipped with a named generator: ``{name: <weights>/directions/<name>.npy}`` (sorted; empty
    when the generator ships none)."""
    folder = weights_dir(name)
    if folder is None or not (folder / "directions").is_dir():
        return {}
    return {p.stem: p for p in sorted((folder / "directions").glob("*.npy"))}


def edit_direction_file(name: str) -> tuple[str, Path] | None:
    """``(direction name, .npy path)`` of the shipped direction a named generator edits with by default
    (:attr:`GeneratorSpec.edit_direction`); None when it has none (an unknown name has none either: a checkpoint's
    generator is not a named one).

    Raises:
        CheckpointError: the spec names a direction whose file is not installed.
    """
    spec = CONFIGS.get(name)
    if spec is None or spec.edit_direction is None:
        return None
    path = shipped_directions(name).get(spec.edit_direction)
    if path is None:
        from innout_core.errors import CheckpointError

        folder = weights_dir(name)
        missing = (folder / "directions" if folder else WEIGHTS_ROOT) / f"{spec.edit_direction}.npy"
        raise CheckpointError(f"generator {name!r} edits along {spec.edit_direction!r} but that shipped direction "
                              "is not installed (reinstall innout)", missing)
    return spec.edit_direction, path


def build_generator(name: str, seed: int = 0) -> TriPlaneGenerator:
    """A named generator in eval mode (CPU, float32).

    ``ffhq512-128``: the official random initialisation from ``seed``. ``tiny``: fixed embedded weights made from
    ``seed`` (see module docstring). ``tiny-face``: the shipped trained weights (``seed`` unused). Same name + seed
    -> bitwise-identical state dict.

    Raises:
        KeyError: unknown name. CheckpointError: shipped weights missing, corrupt (sha256) or not of this
            architecture (one line naming the file).
    """
    if name not in CONFIGS:
        raise KeyError(f"unknown generator config {name!r}; choose one of {sorted(CONFIGS)}")
    spec = CONFIGS[name]
    if spec.weights is not None:
        return _load_shipped(name, spec).requires_grad_(True)
    kwargs = copy.deepcopy(spec.init_kwargs)
    generator = generator_from_kwargs(kwargs, kwargs["rendering_kwargs"], spec.neural_rendering_resolution)
    rng = torch.Generator().manual_seed(int(seed))
    generator.reset_parameters(rng)
    if spec.tiny_weights is not None:
        _make_tiny_weights(generator, spec.tiny_weights, rng)
    return generator.eval()


def _load_shipped(name: str, spec: GeneratorSpec) -> TriPlaneGenerator:
    """Load ``spec.weights`` from the package with the checked loader; the architecture must be ``spec``'s."""
    from innout_core.eg3d.checkpoint import load_generator, read_network
    from innout_core.errors import CheckpointError

    folder = WEIGHTS_ROOT / str(spec.weights)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"the shipped weights of generator {name!r} are not installed (reinstall innout; "
                              "the package data holds config.json and model.safetensors)", folder / "config.json")
    net = read_network(folder)  # sha256-checked: a corrupt or truncated model.safetensors fails here
    if net.init_kwargs != spec.init_kwargs or net.neural_rendering_resolution != spec.neural_rendering_resolution:
        raise CheckpointError(f"shipped weights are not of the {name!r} architecture (init_kwargs or neural "
                              "resolution differ from innout_core.eg3d.configs)", folder / "config.json")
    return load_generator(folder)


def _frontal_label() -> torch.Tensor:
    """Canonical frontal camera label [1, 25] float32 (:data:`~innout_core.eg3d.camera.CANONICAL_FRONTAL_LABEL`)."""
    return torch.tensor([CANONICAL_FRONTAL_LABEL], dtype=torch.float32)


@torch.no_grad()
def _make_tiny_weights(g: TriPlaneGenerator, cfg: TinyWeightsConfig, rng: torch.Generator) -> None:
    """Perturb the official init into fixed, non-trivial weights with structured density (all draws from rng)."""

    def randn_like(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=rng, dtype=t.dtype)

    for name, p in g.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        module = g.get_submodule(name.rsplit(".", 1)[0])
        if leaf == "noise_strength":
            p.copy_(randn_like(p) * cfg.noise_strength_std)
        elif leaf == "bias":
            if name.endswith("affine.bias"):
                p.add_(randn_like(p) * cfg.affine_bias_jitter)
            else:
                gain = getattr(module, "bias_gain", 1.0)  # FC biases are scaled at run time
                p.add_(randn_like(p) * (cfg.bias_jitter / gain))
        elif leaf in ("weight", "const"):
            std = 1.0 / getattr(module, "lr_multiplier", 1.0) if leaf == "weight" else 1.0
            p.add_(randn_like(p) * (cfg.weight_jitter * std))
    synthesis = g.backbone.synthesis
    for block in synthesis.blocks():
        if block.resolution <= 16:
            block.torgb.weight.mul_(cfg.low_freq_gain)
    for block in (g.superresolution.block0, g.superresolution.block1):
        block.torgb.weight.mul_(cfg.sr_residual_gain)
    # w_avg: the mean mapped latent for a frontal conditioning camera (as training's EMA would give).
    z = torch.randn([cfg.w_avg_samples, g.z_dim], generator=rng)
    c = _frontal_label().expand(cfg.w_avg_samples, -1)
    g.backbone.mapping.w_avg.zero_()
    ws = g.mapping(z, c)
    g.backbone.mapping.w_avg.copy_(ws[:, 0].mean(dim=0))
    # Density: rescale the sigma row of the decoder's last layer so raw sigma over the box has the target moments.
    planes = g.backbone_planes(g.backbone.mapping.w_avg.expand(1, g.num_ws, -1), noise_mode="const")
    from innout_core.eg3d.rendering import sample_from_planes

    pts = torch.rand([1, cfg.density_points, 3], generator=rng) - 0.5
    feats = sample_from_planes(planes.view(1, 3, -1, *planes.shape[-2:]), pts, g.rendering.box_warp)
    _, sigma = g.decode(feats)
    mean, std = float(sigma.mean()), float(sigma.std())
    last = g.decoder.net[2]
    scale = cfg.sigma_std / max(std, 1e-6)
    # sigma = x.W0 * wg + b0 * bg: scaling W0 and (b0 - mean) maps sigma -> (sigma - mean) * scale + target.
    last.weight[0].mul_(scale)
    b_eff = float(last.bias[0]) * last.bias_gain
    new_b = (b_eff - mean) * scale + cfg.sigma_mean
    last.bias[0] = new_b / last.bias_gain
    assert math.isfinite(new_b)
