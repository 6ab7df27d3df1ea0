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

Presets (:meth:`EditConfig.preset`, values and notes in :data:`innout_core.settings.presets.PRESETS`): edit *files* are user-supplied (boundaries
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
from torch import Tensor, nn

from innout_core.errors import BadInputError
from innout_core.settings.edit import (EditConfig, InterfaceGANEdit, NovelViewConfig, SmoothConfig, StyleCLIPEdit,
                                      SyntheticDirectionConfig)
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
    "OFFICIAL_SMOOTH_KERNEL",
    "synthetic_direction",
    "save_direction",
    "load_direction",
    "materialise_edits",
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


def materialise_edits(cfg: EditConfig, G: nn.Module, directory: str | Path, generator: str | None = None
                      ) -> EditConfig:
    """``cfg`` with its synthetic direction (if any) saved as ``<directory>/<name>.npy`` and listed as an ordinary
    :class:`InterfaceGANEdit` (``synthetic=None``), so every branch applies the same file.

    ``generator``: the name of G's config (``innout_core.eg3d.configs``; None for a checkpoint). When that
    generator ships an edit direction (``GeneratorSpec.edit_direction``, e.g. ``tiny-face``'s ``hair_lightness``,
    fitted to its training heads' parameters), the edit applies that direction under its own name with the
    synthetic config's strength and layers; otherwise the brightness direction made from G.
    """
    from innout_core.eg3d.configs import edit_direction_file

    if cfg.synthetic is None:
        return cfg.model_copy(deep=True)
    sd = cfg.synthetic
    shipped = edit_direction_file(generator) if generator is not None else None
    if shipped is not None:
        name, source = shipped
        path = save_direction(load_direction(source, n_ws=1), Path(directory) / f"{name}.npy")
    else:
        name = sd.name
        path = save_direction(synthetic_direction(G, sd.samples, sd.seed), Path(directory) / f"{name}.npy")
    edit = InterfaceGANEdit(name=name, path=path, strength=sd.strength, layers=sd.layers)
    return cfg.model_copy(update={"interfacegan": [*cfg.interfacegan, edit], "synthetic": None}, deep=True)


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
                                         removal_masks=rem_masks if remove_ood else None,
                                         removal_dilation=cfg.removal_dilation,
                                         removal_blend_scale=cfg.removal_blend_scale)
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
