"""Editing after reconstruction: InterfaceGAN directions, StyleCLIP latent mappers, OOD removal, novel views and
causal temporal smoothing, all rendered through the composite renderer (`composite.render_composite_video`).

Official behaviour followed (docs/method.md §5):

* InterfaceGAN (§5.2): ``w' = w + f * d``; a ``[1, 512]`` boundary is broadcast to all 14 style vectors; f = 2.2.
* StyleCLIP (§5.1): ``w' = w + s * M(w)`` with the official ``LevelsMapper`` (coarse 0-3, medium 4-7, fine 8-13,
  each PixelNorm + 4 x EqualLinear(512, 512, lr_mul 0.01, fused leaky ReLU)); s = 0.04 (``run_test_styleclip.sh``).
* OOD removal (§5.4): delegated to the composite renderer (``remove_ood=True``). With user masks the release's
  rule (5x5-dilated mask, b x 1.2, b = 0 on OOD rays); without, the paper's (b = 0 on every ray: the face alone).
* Novel views (§5.6): one frame's w+ and phi rendered along ``eg3d.camera.orbit_labels``.
* Smoothing (§5.5): causal 3-tap kernel [0.125, 0.375, 0.5] on w+, phi and the SR block0 features.

Presets (:meth:`EditConfig.preset`, notes in :data:`EDIT_PRESET_NOTES`): edit *files* are user-supplied (boundaries
and mappers are not released), so presets set strengths' context, smoothing, removal and novel views; ``tiny-demo``
adds a direction derived from the ``tiny`` generator itself (:func:`synthetic_direction`), or the direction a named
generator ships (``tiny-face``: fitted to its training heads' parameters), so the embedded default exercises a
semantic edit without any download.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from innout_core.errors import BadInputError
from innout_core.smoothing import OFFICIAL_SMOOTH_KERNEL, causal_smooth, smooth_sr_block0  # noqa: F401
from innout_core.styleclip import (  # noqa: F401  (re-exported: edit is where they have always been imported)
    EqualLinear,
    Mapper,
    PixelNorm,
    StyleCLIPMapper,
    apply_styleclip,
    load_styleclip_mapper,
)

__all__ = [
    "InterfaceGANEdit",
    "StyleCLIPEdit",
    "NovelViewConfig",
    "SmoothConfig",
    "SyntheticDirectionConfig",
    "EditConfig",
    "EDIT_PRESET_NOTES",
    "OFFICIAL_SMOOTH_KERNEL",
    "synthetic_direction",
    "save_direction",
    "load_direction",
    "apply_interfacegan",
    "PixelNorm",
    "EqualLinear",
    "Mapper",
    "StyleCLIPMapper",
    "load_styleclip_mapper",
    "apply_styleclip",
    "causal_smooth",
    "smooth_sr_block0",
    "run_edits",
]


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
class InterfaceGANEdit(BaseModel):
    """One InterfaceGAN edit: ``w' = w + strength * d`` on the chosen style vectors."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="edit name; output key of run_edits (e.g. 'smile')")
    path: Path = Field(description="boundary .npy of shape [512], [1,512] or [14,512] (user-supplied)")
    strength: float = Field(2.2, description="step f along the direction (official vid_edit.py default 2.2)")
    layers: list[int] | None = Field(None, description="style-vector indices to edit (0..13); None = all 14")


class StyleCLIPEdit(BaseModel):
    """One StyleCLIP latent-mapper edit: ``w' = w + strength * M(w)``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="edit name; output key of run_edits (e.g. 'eyeglasses')")
    path: Path = Field(description="mapper checkpoint (best_model.pt with 'state_dict', or a bare state dict)")
    strength: float = Field(0.04, description="factor_step s (official run_test_styleclip.sh uses 0.04)")


class NovelViewConfig(BaseModel):
    """Camera orbit around one frame (official ``gen_3d.py``: amplitude 0.15 rad yaw and pitch)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="render the 'novel_view' output")
    frame: int = Field(0, ge=0, description="index of the frame whose w+ and phi are shown")
    n_frames: int = Field(60, ge=1, description="number of views along the orbit (official w_frames 60)")
    yaw_range: float = Field(0.15, description="yaw amplitude, radians")
    pitch_range: float = Field(0.15, description="pitch amplitude, radians")
    pitch_offset: float = Field(-0.05, description="constant pitch offset, radians (official gen_3d.py: -0.05)")
    sample_mult: int = Field(1, ge=1, description="multiply both depth sample counts per ray (gen_3d.py "
                             "--sample_mult, default 2: 96 + 96 on ffhq512-128)")


class SmoothConfig(BaseModel):
    """Causal temporal smoothing at render time (official ``--smooth_out``; not in the paper)."""

    model_config = ConfigDict(extra="forbid")
    ws: float = Field(0.0, ge=0.0, le=1.0, description="factor for w+ (0 = off, 1 = the official 3-tap kernel)")
    phi: float = Field(0.0, ge=0.0, le=1.0, description="factor for the per-frame OOD code phi (0 = off, 1 = official)")
    sr: float = Field(0.0, ge=0.0, le=1.0, description="factor for SR block0 features (0 = off, 1 = official)")

    @classmethod
    def official(cls) -> "SmoothConfig":
        """``--smooth_out=True`` as in ``run_test_styleclip.sh``: full kernel on w+, phi and SR block0."""
        return cls(ws=1.0, phi=1.0, sr=1.0)


class SyntheticDirectionConfig(BaseModel):
    """A direction made from the generator itself (the ``tiny-demo`` stand-in for an InterfaceGAN boundary), or,
    for a generator that ships one (``tiny-face``), its shipped direction (:meth:`EditConfig.materialise`).

    Definition (:func:`synthetic_direction`): map ``samples`` seeded z with the frontal conditioning label
    (psi = 1), render each one's raw image, score it by mean luminance, and take the unit-norm difference between
    the mean w of the brighter half and of the darker half -- a class-mean ("LDA without covariance") boundary
    normal for the attribute "brightness", which any generator renders, so the edit has a visible, measurable
    effect. Saved as a ``[1, w_dim]`` float32 ``.npy`` like an InterfaceGAN boundary (:func:`save_direction`).
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field("brighter", description="edit name; output key of run_edits")
    samples: int = Field(64, ge=2, description="mapped samples scored to build the direction")
    seed: int = Field(0, description="seed of the z samples and of the renders' ray samples")
    strength: float = Field(2.2, description="step along the unit direction (the official InterfaceGAN factor)")
    layers: list[int] | None = Field(None, description="style-vector indices to edit; None = all")


class EditConfig(BaseModel):
    """What `run_edits` renders. Defaults: no semantic edit, OOD removal on, no novel view, no smoothing.
    Named presets: :meth:`preset` (``paper`` / ``official`` / ``fast`` / ``tiny-demo``)."""

    model_config = ConfigDict(extra="forbid")
    interfacegan: list[InterfaceGANEdit] = Field(default_factory=list, description="InterfaceGAN edits")
    styleclip: list[StyleCLIPEdit] = Field(default_factory=list, description="StyleCLIP mapper edits")
    synthetic: SyntheticDirectionConfig | None = Field(
        None, description="direction derived from the generator itself (tiny-demo); None = off")
    novel_view: NovelViewConfig = Field(default_factory=NovelViewConfig, description="orbit settings")
    remove_ood: bool = Field(True, description="render the 'remove_ood' output (OOD blend weights set to 0)")
    removal_masks: bool = Field(True, description="with user masks, remove by the release's rule (5x5-dilated mask, "
                                "b x 1.2, b = 0 on OOD rays); False or no masks: b = 0 on every ray (paper)")
    smooth: SmoothConfig = Field(default_factory=SmoothConfig, description="causal smoothing factors")

    @classmethod
    def preset(cls, name: str) -> "EditConfig":
        """Named preset (see :data:`EDIT_PRESET_NOTES`). Edit lists start empty except ``tiny-demo``'s synthetic
        direction: user edits are added as overrides; their per-edit default strengths are the official ones
        (InterfaceGAN 2.2, StyleCLIP 0.04)."""
        if name == "paper":
            return cls(novel_view=NovelViewConfig(enabled=True))
        if name == "official":
            return cls(novel_view=NovelViewConfig(enabled=True, sample_mult=2), smooth=SmoothConfig.official())
        if name == "fast":
            return cls(smooth=SmoothConfig.official())
        if name == "tiny-demo":
            return cls(synthetic=SyntheticDirectionConfig(),
                       novel_view=NovelViewConfig(enabled=True, n_frames=8, yaw_range=0.3))
        raise BadInputError(f"unknown edit preset {name!r}; choose one of {sorted(EDIT_PRESET_NOTES)}")

    def materialise(self, G: nn.Module, directory: str | Path, generator: str | None = None) -> "EditConfig":
        """Save the synthetic direction (if any) as ``<directory>/<name>.npy`` and return a config in which it is
        an ordinary :class:`InterfaceGANEdit` (``synthetic=None``), so every branch applies the same file.

        ``generator``: the name of G's config (``innout_core.eg3d.configs``; None for a checkpoint). When that
        generator ships an edit direction (``GeneratorSpec.edit_direction``, e.g. ``tiny-face``'s
        ``hair_lightness``, fitted to its training heads' parameters), the edit applies that direction under its
        own name with the synthetic config's strength and layers; otherwise the brightness direction made from G.
        """
        from innout_core.eg3d.configs import edit_direction_file

        if self.synthetic is None:
            return self.model_copy(deep=True)
        sd = self.synthetic
        shipped = edit_direction_file(generator) if generator is not None else None
        if shipped is not None:
            name, source = shipped
            path = save_direction(load_direction(source, n_ws=1), Path(directory) / f"{name}.npy")
        else:
            name = sd.name
            path = save_direction(synthetic_direction(G, sd.samples, sd.seed), Path(directory) / f"{name}.npy")
        edit = InterfaceGANEdit(name=name, path=path, strength=sd.strength, layers=sd.layers)
        return self.model_copy(update={"interfacegan": [*self.interfacegan, edit], "synthetic": None}, deep=True)


#: One sentence per preset: what it is for and which source it follows.
EDIT_PRESET_NOTES: dict[str, str] = {
    "paper": "Paper §4.6/§5: InterfaceGAN and StyleCLIP edits (user-supplied files, official strengths), OOD "
    "removal by zero blend weights, novel views; no temporal smoothing (the paper has none).",
    "official": "Release (docs/method.md §5): as paper plus --smooth_out (causal [0.125, 0.375, 0.5] on w+, phi and "
    "SR block0), StyleCLIP step 0.04, InterfaceGAN factor 2.2, gen_3d.py orbit (60 views, 0.15 rad, pitch -0.05, "
    "doubled depth samples), OOD removal by the release's rule where user masks exist.",
    "fast": "Quick real runs: official smoothing and strengths, OOD removal, no novel-view video.",
    "tiny-demo": "Embedded default: a 'brighter' direction made from the tiny generator itself (unit class-mean "
    "difference, strength 2.2) or the generator's shipped direction (tiny-face: hair_lightness), OOD removal and "
    "an 8-view orbit; no smoothing, so an edit differs from the reconstruction only by the edit.",
}


@torch.no_grad()
def synthetic_direction(G: nn.Module, samples: int = 64, seed: int = 0) -> Tensor:
    """The generator's own "brightness" direction (see :class:`SyntheticDirectionConfig`).

    Args:
        G: TriPlaneGenerator (any config; ``tiny`` in the embedded default).
        samples: number of mapped z samples (>= 2); seed: their seed (and the renders' ray samples).
    Returns:
        float32 ``[1, w_dim]`` of unit L2 norm on G's device; deterministic for a given G, samples and seed.
    """
    from innout_core.eg3d.camera import frontal_label

    if samples < 2:
        raise BadInputError(f"synthetic direction needs at least 2 samples, got {samples}")
    device = next(G.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen).to(device)
    c = frontal_label(G, samples)
    w = G.mapping(z, c, truncation_psi=1.0)
    lum = torch.cat([_raw_luminance(G, w[i : i + 8], c[i : i + 8], gen) for i in range(0, samples, 8)])
    order = lum.argsort()
    half = samples // 2
    d = w[order[-half:], 0].mean(dim=0) - w[order[:half], 0].mean(dim=0)
    return (d / d.norm().clamp_min(1e-12))[None].float()


def _raw_luminance(G: nn.Module, ws: Tensor, c: Tensor, generator: torch.Generator | None) -> Tensor:
    """Mean of the raw (neural-resolution) RGB of each render, ``[N]``; no super-resolution needed."""
    planes = G.backbone_planes(ws, noise_mode="const")
    return G.render(planes, c, generator=generator).rgb[..., :3].mean(dim=(1, 2))


def save_direction(direction: Tensor, path: str | Path) -> Path:
    """Write a ``[1, w_dim]`` / ``[w_dim]`` / ``[n_ws, w_dim]`` direction as float32 ``.npy`` atomically."""
    from innout_core.store import atomic_path

    path = Path(path)
    arr = direction.detach().cpu().numpy().astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
    return path


# ---------------------------------------------------------------------------------------------------------------
# InterfaceGAN
# ---------------------------------------------------------------------------------------------------------------
def load_direction(path: str | Path, w_dim: int = 512, n_ws: int = 14) -> Tensor:
    """Load an InterfaceGAN boundary.

    Args:
        path: ``.npy`` of shape ``[w_dim]``, ``[1, w_dim]`` or ``[n_ws, w_dim]``.
    Returns:
        float32 ``[n_ws, w_dim]`` (a single direction is repeated on every style vector).
    Raises:
        BadInputError: missing/unreadable file, non-finite values, or a wrong shape (message names both shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError("InterfaceGAN direction not found; pass an existing .npy boundary file", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any numpy read failure is a bad input
        raise BadInputError(f"cannot read InterfaceGAN direction as .npy ({type(exc).__name__}: {exc})", path) from exc
    shape = tuple(arr.shape)
    if shape in ((w_dim,), (1, w_dim)):
        d = torch.from_numpy(np.asarray(arr, dtype=np.float32).reshape(1, w_dim)).repeat(n_ws, 1)
    elif shape == (n_ws, w_dim):
        d = torch.from_numpy(np.asarray(arr, dtype=np.float32).copy())
    else:
        raise BadInputError(
            f"InterfaceGAN direction has shape {list(shape)}, expected [{w_dim}], [1, {w_dim}] or [{n_ws}, {w_dim}]",
            path,
        )
    if not torch.isfinite(d).all():
        raise BadInputError("InterfaceGAN direction contains NaN or infinite values", path)
    return d


def apply_interfacegan(ws: Tensor, direction: Tensor, strength: float, layers: Sequence[int] | None = None) -> Tensor:
    """``w' = w + strength * d`` on the chosen style vectors (``latent_editor.py:36-53``).

    Args:
        ws: ``[T, n_ws, w_dim]`` latents.
        direction: ``[w_dim]``, ``[1, w_dim]`` or ``[n_ws, w_dim]``.
        strength: step along the direction (official default 2.2).
        layers: style-vector indices to edit; None = all.
    Returns:
        ``[T, n_ws, w_dim]``, same dtype/device as ``ws``; unselected style vectors are unchanged.
    """
    if ws.ndim != 3:
        raise BadInputError(f"ws must be [T, n_ws, w_dim], got {list(ws.shape)}")
    n_ws, w_dim = ws.shape[1:]
    d = direction.to(ws)
    if d.ndim == 1:
        d = d[None]
    if d.shape[-1] != w_dim or d.shape[0] not in (1, n_ws):
        raise BadInputError(f"direction shape {list(direction.shape)} does not fit ws shape {list(ws.shape)}")
    d = d.expand(n_ws, w_dim)
    sel = torch.ones(n_ws, 1, dtype=ws.dtype, device=ws.device)
    if layers is not None:
        bad = [i for i in layers if not 0 <= int(i) < n_ws]
        if bad:
            raise BadInputError(f"InterfaceGAN layers {bad} out of range 0..{n_ws - 1}")
        sel = torch.zeros_like(sel)
        sel[list(int(i) for i in layers)] = 1
    return ws + float(strength) * (d * sel)[None]


# ---------------------------------------------------------------------------------------------------------------
# Rendering edits through the composite renderer
# ---------------------------------------------------------------------------------------------------------------
def run_edits(
    G: nn.Module,
    stage_a,
    cameras: Tensor,
    cfg: EditConfig,
    generator: torch.Generator,
    *,
    sr_state: dict[str, Tensor] | None = None,
    removal_masks: Tensor | None = None,
) -> dict[str, Tensor]:
    """Render every configured edit through the composite renderer.

    Args:
        G: frozen TriPlaneGenerator.
        stage_a: ``joint.StageAResult`` (its ``ws`` [T,14,512] and ``phi`` [T,32] are the edited quantities).
        cameras: ``[T, 25]`` EG3D labels.
        cfg: what to render.
        generator: RNG for the renderer's stratified/importance samples (re-seeded copy per output, so every edit
            sees the same ray samples as the reconstruction).
        sr_state: fine-tuned SR state dict from stage B.
        removal_masks: [T,1,H,W] user masks (1 = face, 0 = OOD): with ``cfg.removal_masks`` the ``remove_ood``
            output follows the release's rule; None = the paper's rule.
    Returns:
        ``{name: frames [T', 3, H, W] in [-1, 1]}`` with one entry per InterfaceGAN/StyleCLIP/synthetic edit name,
        ``"remove_ood"`` and ``"novel_view"`` (T' = ``cfg.novel_view.n_frames``) when enabled.
    """
    from innout_core.eg3d.camera import orbit_labels
    from innout_core.composite import render_composite_video, sr_module

    names = [e.name for e in cfg.interfacegan] + [e.name for e in cfg.styleclip]
    if cfg.synthetic is not None:
        names.append(cfg.synthetic.name)
    reserved = {"remove_ood", "novel_view"}
    dup = {n for n in names if names.count(n) > 1 or n in reserved}
    if dup:
        raise BadInputError(f"edit names must be unique and not {sorted(reserved)}: {sorted(dup)}")
    T = stage_a.ws.shape[0]
    if cameras.shape[0] != T:
        raise BadInputError(f"cameras [{cameras.shape[0]}, 25] do not match {T} frames of stage A")

    base = stage_a
    if cfg.smooth.phi > 0:
        base = dataclasses.replace(base, phi=causal_smooth(base.phi, cfg.smooth.phi))
    ws0 = causal_smooth(base.ws, cfg.smooth.ws) if cfg.smooth.ws > 0 else base.ws
    seed_state = generator.get_state()

    rem_masks = removal_masks if (cfg.removal_masks and removal_masks is not None) else None
    # the SR every edit runs: a private copy when it is fine-tuned or hooked for smoothing (G is shared by a worker)
    sr = sr_module(G, sr_state) if (sr_state is not None or cfg.smooth.sr > 0) else G.superresolution

    def render(sa, cams: Tensor, ws: Tensor, remove_ood: bool = False, frame_index: Tensor | None = None,
               sample_mult: int = 1) -> Tensor:
        generator.set_state(seed_state)
        with torch.no_grad(), smooth_sr_block0(sr, cfg.smooth.sr):
            out = render_composite_video(G, sa, cams, generator, superresolution=sr, remove_ood=remove_ood,
                                         ws_override=ws, frame_index=frame_index, sample_mult=sample_mult,
                                         removal_masks=rem_masks if remove_ood else None)
        return out.image.clamp(-1, 1)

    results: dict[str, Tensor] = {}
    for e in cfg.interfacegan:
        d = load_direction(e.path, w_dim=ws0.shape[2], n_ws=ws0.shape[1])
        results[e.name] = render(base, cameras, apply_interfacegan(ws0, d, e.strength, e.layers))
    if cfg.synthetic is not None:
        sd = cfg.synthetic
        d = synthetic_direction(G, sd.samples, sd.seed).to(ws0)
        results[sd.name] = render(base, cameras, apply_interfacegan(ws0, d, sd.strength, sd.layers))
    for e in cfg.styleclip:
        mapper = load_styleclip_mapper(e.path)
        results[e.name] = render(base, cameras, apply_styleclip(ws0, mapper, e.strength))
    if cfg.remove_ood:
        results["remove_ood"] = render(base, cameras, ws0, remove_ood=True)
    nv = cfg.novel_view
    if nv.enabled:
        if nv.frame >= T:
            raise BadInputError(f"novel_view.frame {nv.frame} out of range for {T} frames")
        cams = orbit_labels(nv.n_frames, nv.yaw_range, nv.pitch_range, pitch_offset=nv.pitch_offset).to(cameras)
        idx = torch.full((nv.n_frames,), nv.frame, dtype=torch.long)
        results["novel_view"] = render(base, cams, ws0[idx], frame_index=idx, sample_mult=nv.sample_mult)
    return results
