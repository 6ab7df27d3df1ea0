"""Automatic OOD (occluder) masks without a face-parsing model, with temporal consistency.

Two sources of evidence, each turned into a mask the same way (:func:`hysteresis_masks`):

* :func:`residual_masks`: the per-pixel error of a converged W+ reconstruction, ``e = mean_c |frame - G(w_t)|``,
  box-blurred. An occluder is what the face model cannot explain, so its pixels carry the largest errors of the
  video; thresholds are robust statistics over the whole video (median + k * 1.4826 * MAD, with a floor).
* :func:`masks_from_share`: the OOD share of the composite (``CompositeFrames.blend_map``) after a first,
  mask-free stage-A pass (``joint.share_masks``): the part of each pixel's opacity the OOD field took on.

Hysteresis in space *and time*: pixels above the high threshold seed the mask; pixels above the low threshold join
it when they touch the mask in the same frame or, within ``temporal`` frames, at the same place -- so a weak
occluder edge in one frame is kept when the occluder was clearly there in the next, while isolated weak specks are
not. The OOD region is then cleaned by a morphological opening, closing and a dilation (square kernels).

Stage A (``mask_mode: auto``) calls :func:`auto_masks` with :class:`AutoMaskConfig` (``JointConfig.auto_mask``):
the evidence is computed against a *reference* face -- by default the W+ inversion's shared canonical latent
rendered at every frame's camera, which cannot follow the occluder the way the per-frame W+ fit does (measured on
the ground-truth suite: mean IoU with the true occluder 0.60 against the canonical render, 0.27 against the per-frame
fit).

Returned masks follow the input-mask convention: ``[T,1,H,W]`` float32 in {0,1}, 1 = face, 0 = OOD.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from innout_core.errors import BadInputError
from innout_core.settings.joint import AutoMaskConfig, ResidualMaskConfig, ShareMaskConfig

_log = logging.getLogger("innout.auto_masks")


__all__ = [
    "ResidualMaskConfig",
    "ShareMaskConfig",
    "AutoMaskConfig",
    "auto_masks",
    "reference_latents",
    "render_reference",
    "residual_error",
    "robust_threshold",
    "hysteresis_masks",
    "clean_region",
    "residual_masks",
    "masks_from_share",
    "refine_masks",
    "MaskedFit",
]

#: ``masked_fit(masks)`` -> per-frame latents [T,L,D] of a W+ fit whose pixel loss counts only the face region of
#: ``masks`` ([T,1,H,W], 1 = face); injected by the caller (the inversion stage's settings), as ``share_pass`` is.
MaskedFit = Callable[[Tensor], Tensor]


def _check_video(x: Tensor, name: str, channels: int | None = None) -> None:
    if not torch.is_tensor(x) or x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"[T,{channels},H,W]" if channels else "[T,C,H,W]"
        raise BadInputError(f"{name} must be {want}, got {tuple(getattr(x, 'shape', ()))}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise BadInputError(f"{name} must be finite floats")


def _box(x: Tensor, k: int) -> Tensor:
    if k <= 1:
        return x
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)[..., : x.shape[-2], : x.shape[-1]]


def _dilate(x: Tensor, k: int) -> Tensor:
    if k <= 1:
        return x
    return F.max_pool2d(x, k, stride=1, padding=k // 2)[..., : x.shape[-2], : x.shape[-1]]


def _erode(x: Tensor, k: int) -> Tensor:
    return 1 - _dilate(1 - x, k)


def residual_error(frames: Tensor, recon: Tensor, blur: int = 1) -> Tensor:
    """Mean absolute RGB error per pixel, box-blurred. frames, recon: [T,3,H,W] in [-1,1] -> [T,1,H,W] >= 0."""
    _check_video(frames, "frames", 3)
    _check_video(recon, "reconstruction", 3)
    if frames.shape != recon.shape:
        raise BadInputError(f"frames {tuple(frames.shape)} and reconstruction {tuple(recon.shape)} differ in shape")
    return _box((frames.float() - recon.float()).abs().mean(dim=1, keepdim=True), blur)


def robust_threshold(values: Tensor, k_mad: float, floor: float = 0.0) -> float:
    """``max(median + k_mad * 1.4826 * MAD, floor)`` over every element of ``values``."""
    v = values.flatten().float()
    med = v.median()
    mad = (v - med).abs().median()
    return max(float(med + k_mad * 1.4826 * mad), floor)


def hysteresis_masks(score: Tensor, high: float, low: float, temporal: int = 1) -> Tensor:
    """Spatio-temporal hysteresis: pixels with ``score > high`` seed; pixels with ``score > low`` join when they are
    8-connected to the region in the same frame or at the same place within ``temporal`` frames.

    Args:
        score: [T,1,H,W] evidence (larger = more likely OOD). high, low: thresholds (low <= high).
        temporal: frames either side through which a weak pixel may be linked (0 = per frame).
    Returns:
        [T,1,H,W] float32 in {0,1}, 1 = OOD.
    """
    _check_video(score, "score", 1)
    if low > high:
        raise BadInputError(f"hysteresis: low threshold {low} is above the high threshold {high}")
    strong = (score > high).float()
    weak = (score > low).float()
    x = strong.permute(1, 0, 2, 3)[None]  # [1,1,T,H,W]
    w = weak.permute(1, 0, 2, 3)[None]
    kt = 2 * temporal + 1
    for _ in range(score.shape[0] * score.shape[-1] * score.shape[-2]):  # at most one new pixel per pass
        grown = F.max_pool3d(x, (kt, 3, 3), stride=1, padding=(temporal, 1, 1)) * w
        grown = torch.maximum(grown, x)
        if torch.equal(grown, x):
            break
        x = grown
    return x[0].permute(1, 0, 2, 3).contiguous()


def clean_region(ood: Tensor, open_size: int, close_size: int, dilate: int) -> Tensor:
    """Opening, closing, dilation of an OOD region [T,1,H,W] in {0,1} (square kernels; 1 = skip a step)."""
    x = _dilate(_erode(ood, open_size), open_size)
    x = _erode(_dilate(x, close_size), close_size)
    return _dilate(x, dilate)


def residual_masks(frames: Tensor, recon: Tensor, cfg: ResidualMaskConfig | None = None) -> Tensor:
    """Masks from a reconstruction's residual (see the module docstring).

    Args:
        frames: [T,3,H,W] the input video in [-1,1]. recon: [T,3,H,W] its W+ reconstruction (const noise).
        cfg: thresholds and clean-up (:class:`ResidualMaskConfig`).
    Returns:
        [T,1,H,W] float32 in {0,1}, 1 = face, 0 = OOD.
    """
    c = cfg or ResidualMaskConfig()
    e = residual_error(frames, recon, c.blur)
    high = robust_threshold(e, c.k_mad, c.min_error)
    ood = hysteresis_masks(e, high, c.low_ratio * high, c.temporal)
    return 1 - clean_region(ood, c.open_size, c.close_size, c.dilate)


def masks_from_share(share: Tensor, size: int, cfg: ShareMaskConfig | None = None) -> Tensor:
    """Masks from an OOD-share map.

    Args:
        share: [T,1,R,R] OOD share of the composite in [0,1] (``CompositeFrames.blend_map``).
        size: output side H (the frames' resolution); the share is upsampled bilinearly.
        cfg: thresholds and clean-up (:class:`ShareMaskConfig`).
    Returns:
        [T,1,H,H] float32 in {0,1}, 1 = face, 0 = OOD.
    """
    c = cfg or ShareMaskConfig()
    _check_video(share, "OOD share", 1)
    s = share.float() if share.shape[-1] == size else F.interpolate(share.float(), size=(size, size),
                                                                    mode="bilinear", align_corners=False)
    ood = hysteresis_masks(s, c.high, min(c.low, c.high), c.temporal)
    return 1 - clean_region(ood, c.open_size, c.close_size, c.dilate)


def reference_latents(ws: Tensor, w_canonical: Tensor | None, reference: str) -> tuple[Tensor, str]:
    """The face latents automatic masks compare the frames with.

    Args:
        ws: [T,L,D] per-frame W+ latents. w_canonical: [1,L,D] (or [L,D]) the inversion's shared latent, or None.
        reference: ``'canonical'`` or ``'frame'`` (:attr:`AutoMaskConfig.reference`).
    Returns:
        (latents [T,L,D], the reference used: ``'canonical'`` or ``'frame'``). ``'canonical'`` without a
        ``w_canonical`` falls back to ``'frame'`` and logs a one-line warning.
    """
    if reference == "frame":
        return ws, "frame"
    if w_canonical is None:
        _log.warning("automatic masks: reference 'canonical' asked but no canonical latent given; "
                     "using the per-frame W+ render")
        return ws, "frame"
    wc = w_canonical if w_canonical.ndim == 3 else w_canonical[None]
    if wc.shape[0] != 1 or wc.shape[1:] != ws.shape[1:]:
        raise BadInputError(f"canonical latent must be [1,{ws.shape[1]},{ws.shape[2]}], got {tuple(w_canonical.shape)}")
    if not torch.isfinite(wc).all():
        raise BadInputError("canonical latent contains NaN/inf (a failed inversion?); rerun the inversion stage")
    return wc.to(ws.device, ws.dtype).expand(ws.shape[0], -1, -1), "canonical"


@torch.no_grad()
def render_reference(G: Any, ws: Tensor, cameras: Tensor, generator: torch.Generator | None,
                     batch_size: int = 4) -> Tensor:
    """``G.synthesis`` SR images of latents ws [T,L,D] at cameras [T,25] (const noise, ``batch_size`` frames per
    forward, ray samples from ``generator``) -> [T,3,H,W] clamped to [-1,1]."""
    out = [G.synthesis(ws[s : s + batch_size], cameras[s : s + batch_size], noise_mode="const",
                       generator=generator).image.clamp(-1, 1) for s in range(0, ws.shape[0], batch_size)]
    return torch.cat(out)


def refine_masks(G: Any, frames: Tensor, cameras: Tensor, masks: Tensor, masked_fit: MaskedFit,
                 cfg: ResidualMaskConfig | None, generator: torch.Generator | None, rounds: int = 1,
                 batch_size: int = 4) -> Tensor:
    """Refinement rounds of residual masks: fit W+ on the face region of the current masks (``masked_fit``), then
    take new residual masks against that fit's render.

    The canonical render is blind to the occluder but also to each frame's expression, so its residual is diffuse;
    the masked fit follows each frame's face and cannot paint what the masks hid, so where it still differs from the
    frame is the occluder (measured on the `tiny-face` suite, seeds 0 and 1: mean IoU with the true occluder 0.39 ->
    0.51 after one round, 0.55 after two). Each round replaces the masks (a union with the previous ones measured worse: it keeps their false area).

    Args:
        frames: [T,3,H,W] in [-1,1]. cameras: [T,25]. masks: [T,1,H,W] in {0,1}, 1 = face (the first round's).
        masked_fit: :data:`MaskedFit`. cfg: residual thresholds. generator: ray samples of the renders.
    Returns:
        [T,1,H,W] float32 in {0,1}, 1 = face.
    """
    for _ in range(rounds):
        ws = masked_fit(masks)
        masks = residual_masks(frames, render_reference(G, ws, cameras, generator, batch_size), cfg)
    return masks


def auto_masks(G: Any, frames: Tensor, cameras: Tensor, ws: Tensor, cfg: AutoMaskConfig | None,
               generator: torch.Generator, *, w_canonical: Tensor | None = None,
               share_pass: Callable[[Tensor, int, int], Tensor] | None = None,
               parsing: Tensor | None = None, masked_fit: MaskedFit | None = None) -> tuple[Tensor, str]:
    """Automatic OOD masks of a video (stage A's ``mask_mode: auto``).

    Args:
        G: frozen generator. frames: [T,3,H,W] in [-1,1]. cameras: [T,25]. ws: [T,L,D] per-frame W+ latents.
        cfg: :class:`AutoMaskConfig` (None = defaults).
        generator: ray samples of the reference render ('residual'); seeds the first pass ('share').
        w_canonical: [1,L,D] the W+ inversion's shared latent (reference 'canonical').
        share_pass: source 'share': ``share_pass(ws, seed, steps)`` runs a mask-free stage-A pass of ``steps``
            from ``ws`` [T,L,D] seeded by ``seed`` and returns its OOD share [T,1,R,R] in [0,1]
            (stage A passes ``joint.first_pass_share``; injected so this module does not import joint).
        parsing: optional [T,1,H,W] in {0,1} from a user face-parsing model, 1 = may be OOD (a non-skin class);
            the OOD region is intersected with it.
        masked_fit: needed for ``cfg.refine_rounds > 0`` (source 'residual'): :func:`refine_masks`.
    Returns:
        (masks [T,1,H,W] float32 in {0,1}, 1 = face, 0 = OOD; what was used, e.g. ``'residual vs canonical'``).
    """
    c = cfg or AutoMaskConfig()
    if parsing is not None and (parsing.ndim != 4 or parsing.shape[0] != frames.shape[0] or parsing.shape[1] != 1
                                or parsing.shape[2:] != frames.shape[2:]):
        raise BadInputError(f"parsing masks must be [{frames.shape[0]},1,{frames.shape[2]},{frames.shape[3]}], "
                            f"got {tuple(parsing.shape)}")
    if c.source == "residual" and c.refine_rounds > 0 and masked_fit is None:
        raise BadInputError("auto_mask.refine_rounds needs a masked W+ fit (masked_fit); set refine_rounds: 0")
    ref_ws, used = reference_latents(ws, w_canonical, c.reference)
    if c.source == "residual":
        masks = residual_masks(frames, render_reference(G, ref_ws, cameras, generator, c.batch_size), c.residual)
        if c.refine_rounds > 0:
            masks = refine_masks(G, frames, cameras, masks, masked_fit, c.residual, generator, c.refine_rounds,
                                 c.batch_size)
            used += f", refined {c.refine_rounds}x against the masked fit"
    else:
        if share_pass is None:
            raise BadInputError("automatic masks from the OOD share need a first stage-A pass (share_pass)")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        masks = masks_from_share(share_pass(ref_ws, seed, c.share.first_pass_steps), frames.shape[-1], c.share)
    if parsing is not None:
        masks = 1 - (1 - masks) * (parsing.to(masks.device) > 0.5).float()
    return masks, f"{c.source} vs {used}"
