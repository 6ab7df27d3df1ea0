"""Composite volume rendering of the frozen face (InD) field and the OOD field at the same ray samples.

Two forms (docs/method.md §3.4), both with EG3D's midpoint quadrature (every per-sample quantity is replaced by
the mean of its two end samples on each of the S-1 intervals) and density activation ``softplus(sigma - 1)``:

* ``official`` (``MipRayMarcher2.blend_forward``): ``T_k = prod_{j<k} (1 - b_j aO_j + 1e-10)(1 - (1-b_j) aI_j + 1e-10)``.
  With b == 0 this is exactly EG3D's marcher on the face; with b == 1 exactly EG3D's marcher on the OOD field.
* ``paper`` (Eq. 4): ``T_k = exp(-sum_{j<k} (sigmaO_j + sigmaI_j) delta_j)``; both fields always attenuate.

Per interval ``wO_k = T_k b_k aO_k``, ``wI_k = T_k (1-b_k) aI_k``; features ``C = sum(wO cO + wI cI)`` then ``2C - 1``;
weights ``w = wO + wI``; depth ``sum(w zmid)/sum(w)``, NaN -> inf, clamped to the min/max of all depths.

OOD removal (paper §5.4, "blending weights of the OOD objects set to 0") removes the OOD field from a ray: b = 0
*and* its density leaves the transmittance (``ood_keep = 0``), so a removed ray is exactly the face field alone in
both forms (in the official form b = 0 already does this; Eq. 4 would otherwise still attenuate by sigma_O).

:func:`render_composite_video` renders a whole video with the stage-A fields (edited latents, OOD removed, more
samples per ray) and super-resolves it as the release does (:func:`composite_sr`); a fine-tuned SR runs as a separate
module (:func:`sr_module`), so the generator, which a worker shares between tasks, is never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from innout_core.eg3d.rendering import weighted_sum
from innout_core.errors import BadInputError, CheckpointError
from innout_core.ood import OODField

__all__ = [
    "COMPOSITE_SR_NOISE",
    "RELEASE_REMOVAL_BLEND_SCALE",
    "RELEASE_REMOVAL_DILATION",
    "CompositeFrames",
    "CompositeMarch",
    "CompositeRender",
    "composite_march",
    "composite_sr",
    "release_order_ood",
    "render_composite",
    "render_composite_video",
    "sr_module",
]

CompositeForm = Literal["official", "paper"]


@dataclass
class CompositeMarch:
    """Output of :func:`composite_march` (M rays, S samples, C channels)."""

    rgb: Tensor  # [N,M,C] composite features, *2-1 (about [-1,1])
    depth: Tensor  # [N,M,1] world units
    weights: Tensor  # [N,M,S-1,1] total interval weights wO + wI
    acc: Tensor  # [N,M,1] sum of weights, [0,1]
    ood_weights: Tensor  # [N,M,S-1,1] OOD part wO (its sum = OOD opacity seen in the composite)


def _mid(x: Tensor) -> Tensor:
    return (x[:, :, :-1] + x[:, :, 1:]) / 2


def composite_march(
    face_colors: Tensor,
    face_densities: Tensor,
    ood_colors: Tensor,
    ood_densities: Tensor,
    blend: Tensor,
    depths: Tensor,
    *,
    form: CompositeForm = "official",
    ood_keep: Tensor | None = None,
) -> CompositeMarch:
    """Compose the two fields along each ray.

    Args:
        face_colors, ood_colors: [N,M,S,C] decoder features in about [0,1].
        face_densities, ood_densities: [N,M,S,1] raw sigma (softplus(sigma-1) is applied inside, at midpoints).
        blend: [N,M,S,1] b in [0,1] (may exceed 1 for the release's x1.2 removal trick).
        depths: [N,M,S,1] sorted ascending, world units.
        form: ``"official"`` (release transmittance) or ``"paper"`` (Eq. 4).
        ood_keep: [N,M,1,1] (per ray) or [N,M,S,1] in {0,1}; 0 = the OOD field is removed there (it neither blends
            nor attenuates). None = kept everywhere.
    """
    if form not in ("official", "paper"):
        raise BadInputError(f"composite form must be 'official' or 'paper', got {form!r}")
    shapes = {t.shape[:3] for t in (face_colors, face_densities, ood_colors, ood_densities, blend, depths)}
    if len(shapes) != 1 or face_colors.shape != ood_colors.shape or depths.shape[-1] != 1 or depths.shape[2] < 2:
        raise BadInputError("composite_march: inputs must share [N,M,S] (S >= 2) and colour channels")
    w_o, w_i = _interval_weights(face_densities, ood_densities, blend, depths, form, ood_keep)
    c_i, c_o = _mid(face_colors), _mid(ood_colors)
    rgb = (w_o * c_o + w_i * c_i).sum(dim=-2)
    weights = w_o + w_i
    acc = weights.sum(dim=-2)
    depth = _depth(weights, acc, depths)
    return CompositeMarch(rgb=rgb * 2 - 1, depth=depth, weights=weights, acc=acc, ood_weights=w_o)


def _depth(weights: Tensor, acc: Tensor, depths: Tensor) -> Tensor:
    """Expected depth [N,M,1] from interval weights: NaN -> inf, clamped to the min/max of all depths."""
    depth = (weights * _mid(depths)).sum(dim=-2) / acc
    depth = torch.nan_to_num(depth, float("inf"))
    return torch.clamp(depth, torch.min(depths), torch.max(depths))


def _interval_weights(face_densities: Tensor, ood_densities: Tensor, blend: Tensor, depths: Tensor,
                      form: CompositeForm, ood_keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-interval composite weights (wO, wI), each [N,M,S-1,1]; only 1-channel quantities are touched.

    ``ood_keep`` ([N,M,1,1] or [N,M,S,1], 0 = removed) zeroes b and the OOD density on removed rays/samples.
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    s_i = F.softplus(_mid(face_densities) - 1)
    s_o = F.softplus(_mid(ood_densities) - 1)
    b = _mid(blend)
    if ood_keep is not None:
        keep = ood_keep.to(s_o.dtype)
        keep = _mid(keep) if keep.shape[2] == depths.shape[2] and keep.shape[2] > 1 else keep
        s_o = s_o * keep
        b = b * keep
    a_i = 1 - torch.exp(-s_i * deltas)
    a_o = 1 - torch.exp(-s_o * deltas)
    ones = torch.ones_like(a_i[:, :, :1])
    if form == "official":
        factor = (1 - b * a_o + 1e-10) * (1 - (1 - b) * a_i + 1e-10)
        trans = torch.cumprod(torch.cat([ones, factor], dim=-2), dim=-2)[:, :, :-1]
    else:
        tau = (s_o + s_i) * deltas
        trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(ones), tau], dim=-2), dim=-2)[:, :, :-1])
    return trans * b * a_o, trans * (1 - b) * a_i


def _node_weights(w: Tensor) -> Tensor:
    """Interval weights [N,M,S-1,1] -> per-sample weights [N,M,S] with sum_k w_k (c_k + c_k+1)/2 = sum_j w'_j c_j."""
    w = w.squeeze(-1)
    return 0.5 * (F.pad(w, (1, 0)) + F.pad(w, (0, 1)))


def _composite_fused(samples, ood_colors: Tensor, ood_densities: Tensor, blend: Tensor,
                     form: CompositeForm, ood_keep: Tensor | None = None) -> CompositeMarch:
    """:func:`composite_march` of the face samples and OOD values without [N,M,S-1,C] midpoint tensors.

    The colour sums become one small matmul per part (per-sample weights, see :func:`_node_weights`), and the face
    colours are read in the renderer's unsorted coarse/fine order (the node weights are scattered back to it), so
    the sorted [N,M,S,C] face colour tensor is never gathered. Equal to the plain form up to float rounding.
    """
    depths = samples.depths
    w_o, w_i = _interval_weights(samples.densities, ood_densities, blend, depths, form, ood_keep)
    rgb = weighted_sum(_node_weights(w_o), ood_colors)
    node_i = _node_weights(w_i)
    parts = samples.__dict__.get("_color_parts")
    if parts is None:  # colours already sorted (materialised, or a single coarse pass)
        rgb = rgb + weighted_sum(node_i, samples.colors)
    else:
        node_i = torch.zeros_like(node_i).scatter(-1, samples.sort_index.squeeze(-1), node_i)
        start = 0
        for part in parts:
            k = part.shape[2]
            rgb = rgb + weighted_sum(node_i[..., start : start + k], part)
            start += k
    weights = w_o + w_i
    acc = weights.sum(dim=-2)
    return CompositeMarch(rgb=rgb * 2 - 1, depth=_depth(weights, acc, depths), weights=weights, acc=acc,
                          ood_weights=w_o)


def _unsort(sorted_vals: Tensor, sort_index: Tensor) -> Tensor:
    """Inverse of ``gather(concat, sort_index)``: back to concat(coarse, fine) order. [N,M,S,K] -> [N,M,S,K]."""
    idx = sort_index.expand(*sort_index.shape[:3], sorted_vals.shape[-1])
    return torch.empty_like(sorted_vals).scatter(-2, idx, sorted_vals)


def release_order_ood(
    colors: Tensor,
    sigma: Tensor,
    blend: Tensor,
    samples,  # RaySamples
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Reproduce the release's OOD sample-ordering defect (docs/method.md §3.3), for parity only.

    The OOD field was evaluated at the face's points; the release then draws its *own* importance depths from the
    OOD coarse weights, and sorts the OOD values (evaluated at the face's fine points) by those new depths.

    Args:
        colors, sigma, blend: OOD values at ``samples.points()`` (sorted face order), [N,M,S,*].
        samples: the face render's ``RaySamples``.
        generator: RNG for the extra importance draw.
    Returns:
        colors, sigma, blend reordered as the release hands them to the composite, and the OOD's own sorted
        depths [N,M,S,1] (used by the release's OOD-only render), and the coarse flags [N,M,S,1] of that order.
    """
    from innout_core.eg3d.rendering import ray_march, sample_importance

    nc = samples.n_coarse
    vals = _unsort(torch.cat([colors, sigma, blend], dim=-1), samples.sort_index)
    depths_cat = _unsort(samples.depths, samples.sort_index)
    coarse_depths = depths_cat[:, :, :nc]
    n_fine = samples.depths.shape[2] - nc
    with torch.no_grad():
        _, _, w = ray_march(vals[:, :, :nc, : colors.shape[-1]], vals[:, :, :nc, colors.shape[-1] : -1], coarse_depths)
        new_fine = sample_importance(coarse_depths, w, n_fine, generator)
    all_depths = torch.cat([coarse_depths, new_fine], dim=-2)
    all_depths, order = torch.sort(all_depths, dim=-2)
    vals = torch.gather(vals, -2, order.expand(*order.shape[:3], vals.shape[-1]))
    c = colors.shape[-1]
    return vals[..., :c], vals[..., c : c + 1], vals[..., c + 1 :], all_depths, order < nc


@dataclass
class CompositeRender:
    """Everything one composite render produces (R = neural resolution, M = R*R, S samples, C = 32 channels)."""

    rgb: Tensor  # [N,M,C] composite features (*2-1)
    depth: Tensor  # [N,M,1]
    acc: Tensor  # [N,M,1]
    ood_share: Tensor  # [N,M,1] sum of OOD interval weights wO in [0,1]: the occluder opacity in the composite
    ood_rgb: Tensor | None  # [N,M,C] OOD-only render (EG3D marcher, b ignored); None when not asked
    ood_acc: Tensor | None  # [N,M,1] OOD-only opacity; None when not asked
    face_rgb: Tensor | None  # [N,M,C] face-only render (plain EG3D march of the same samples), when asked
    blend: Tensor  # [N,M,S,1] per-sample b as used (sorted order unless release_sample_order)
    is_coarse: Tensor  # [N,M,S,1] bool, sample came from the stratified (coarse) pass
    resolution: int


def render_composite(
    G,
    planes: Tensor,
    c: Tensor,
    ood,
    frame_idx: Tensor,
    generator: torch.Generator | None,
    *,
    form: CompositeForm = "official",
    release_sample_order: bool = False,
    blend_mode: Literal["learned", "zero", "one"] = "learned",
    removal_mask: Tensor | None = None,
    blend_scale: float = 1.0,
    resolution: int | None = None,
    with_face_only: bool = False,
    with_ood_only: bool = True,
    fused: bool = True,
    rendering=None,
) -> CompositeRender:
    """Render face + OOD composite features for N views.

    Args:
        G: frozen ``TriPlaneGenerator``. planes: [N,96,256,256] face tri-planes. c: [N,25] cameras.
        ood: ``OODField``. frame_idx: [N] int64 rows of phi.
        generator: RNG for the stratified/importance draws (and the release-order extra draw).
        form: composite transmittance form.
        release_sample_order: reproduce the release's OOD ordering defect (parity only).
        blend_mode: ``learned`` b, or b forced to 0 (face only: the OOD field removed from every ray, its density
            too, so both forms give the face render) / 1 (OOD only).
        removal_mask: [N,1,R,R] in {0,1}, 1 = remove OOD on that ray (b := 0 for all its samples, and its density
            leaves the transmittance).
        blend_scale: multiply b before removal (release removal uses 1.2).
        resolution: neural rendering resolution R (default ``G.neural_rendering_resolution``).
        with_face_only: also march the face samples alone (``face_rgb``).
        with_ood_only: march the OOD samples alone (``ood_rgb``, ``ood_acc``); False leaves them None (stage A
            without the OOD-only loss needs neither).
        fused: fast forms of the same maths (fused OOD query, composite without colour midpoints or the sorted
            face colour gather); equal to ``fused=False`` up to float rounding.
        rendering: ``RenderingConfig`` for this call instead of ``G.rendering`` (more samples per ray); None = G's.
    """
    from innout_core.eg3d.rendering import ray_march

    R = int(resolution or G.neural_rendering_resolution)
    out = G.render(planes, c, resolution=R, generator=generator, march=False,
                   **({} if rendering is None else {"rendering": rendering}))
    s = out.samples
    n, m, S, _ = s.depths.shape
    pts = s.points().reshape(n, m * S, 3)
    colors, sigma, blend = ood.query(pts, frame_idx, fused=fused)
    colors = colors.reshape(n, m, S, -1)
    sigma = sigma.reshape(n, m, S, 1)
    blend = blend.reshape(n, m, S, 1)
    ood_depths = s.depths
    is_coarse = s.sort_index < s.n_coarse
    if release_sample_order:
        colors, sigma, blend, ood_depths, is_coarse = release_order_ood(colors, sigma, blend, s, generator)
    keep: Tensor | None = None
    if blend_mode == "zero":
        blend = torch.zeros_like(blend)
        keep = torch.zeros(n, m, 1, 1, dtype=blend.dtype, device=blend.device)
    elif blend_mode == "one":
        blend = torch.ones_like(blend)
    if blend_scale != 1.0:
        blend = blend * blend_scale
    if removal_mask is not None:
        if removal_mask.shape != (n, 1, R, R):
            raise BadInputError(f"removal mask must be [{n},1,{R},{R}], got {tuple(removal_mask.shape)}")
        ray_keep = 1 - removal_mask.reshape(n, m, 1, 1).to(blend.dtype)
        blend = blend * ray_keep
        keep = ray_keep if keep is None else keep * ray_keep
    if fused:
        comp = _composite_fused(s, colors, sigma, blend, form, keep)
    else:
        comp = composite_march(s.colors, s.densities, colors, sigma, blend, s.depths, form=form, ood_keep=keep)
    ood_rgb = ood_acc = None
    if with_ood_only:
        ood_rgb, _, ood_w = ray_march(colors, sigma, ood_depths)
        ood_acc = ood_w.sum(dim=-2)
    face_rgb = ray_march(s.colors, s.densities, s.depths)[0] if with_face_only else None
    return CompositeRender(
        rgb=comp.rgb,
        depth=comp.depth,
        acc=comp.acc,
        ood_share=comp.ood_weights.sum(dim=-2),
        ood_rgb=ood_rgb,
        ood_acc=ood_acc,
        face_rgb=face_rgb,
        blend=blend,
        is_coarse=is_coarse,
        resolution=R,
    )

# ----------------------------------------------------------------------------------------------------------------
# composite frames: feature images, the release's SR call, a composite video
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CompositeFrames:
    """A rendered composite video."""

    image: Tensor  # [T,3,H,W] SR composite in [-1,1]
    image_raw: Tensor  # [T,3,R,R] raw composite RGB in [-1,1]
    blend_map: Tensor  # [T,1,R,R] OOD share of each pixel's composite opacity, [0,1]
    ood_opacity: Tensor  # [T,1,R,R] opacity of the OOD-only render, [0,1]
    depth: Tensor  # [T,1,R,R] composite depth, world units


def _features_to_image(x: Tensor, R: int) -> Tensor:
    """[N,R*R,C] -> [N,C,R,R] (ray m = row*R + col)."""
    return x.permute(0, 2, 1).reshape(x.shape[0], x.shape[2], R, R)


def _resize(x: Tensor, R: int, mode: str) -> Tensor:
    if x.shape[-1] == R:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(R, R), mode="nearest")
    return F.interpolate(x, size=(R, R), mode="bilinear", align_corners=False, antialias=False)


#: SR noise wherever the composite or the OOD-only image is super-resolved: the release uses the stored constant
#: noise there (``triplanes_split.py:248-253``), whatever the pickle's ``superresolution_noise_mode`` says.
COMPOSITE_SR_NOISE = "const"


def composite_sr(superresolve: Callable[..., Tensor], feat: Tensor, ws: Tensor,
                 noise_mode: str = COMPOSITE_SR_NOISE) -> Tensor:
    """SR of a composite (or OOD-only) feature image as the release runs it: the raw RGB it is fed is clamped to
    [-1, 1]; the noise is the constant one unless ``noise_mode`` says otherwise (:func:`sr_noise_mode`).

    Args:
        superresolve: ``G.superresolve`` (or a compiled / fine-tuned copy). feat: [N,C,R,R] features (first 3 = raw
            RGB, about [-1,1]). ws: [N,num_ws,w_dim]. noise_mode: 'const' | 'none' | 'random'.
    Returns:
        [N,3,H,W], not clamped.
    """
    return superresolve(feat[:, :3].clamp(-1, 1), feat, ws, noise_mode=noise_mode)


def _morph(x: Tensor, k: int, op: str) -> Tensor:
    """Binary dilation/erosion with a k x k square ([N,1,H,W] float in {0,1})."""
    if k <= 1:
        return x
    pad = k // 2
    if op == "dilate":
        return F.max_pool2d(x, k, stride=1, padding=pad)[..., : x.shape[-2], : x.shape[-1]]
    return 1 - F.max_pool2d(1 - x, k, stride=1, padding=pad)[..., : x.shape[-2], : x.shape[-1]]


# ----------------------------------------------------------------------------------------------------------------
# rendering a composite video
# ----------------------------------------------------------------------------------------------------------------


def sr_module(G, sr_state: dict[str, Tensor] | None = None) -> torch.nn.Module:
    """A private copy of ``G.superresolution`` with ``sr_state`` loaded (None: G's own SR weights).

    Hooks or weights put on the copy never reach G, which a worker shares between tasks (only the SR is copied,
    not G). Raises :class:`CheckpointError` when the state does not fit.
    """
    import copy

    sr = copy.deepcopy(G.superresolution)
    if sr_state is not None:
        try:
            sr.load_state_dict(sr_state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"fine-tuned SR state does not fit this generator "
                                  f"({str(exc).splitlines()[0]})") from None
    return sr


#: The release's removal rule with user masks (``test_outdomain.py``): the OOD region of the mask dilated by a
#: square of this side (pixels at the neural resolution), and every blend weight multiplied by this factor.
RELEASE_REMOVAL_DILATION = 5
RELEASE_REMOVAL_BLEND_SCALE = 1.2


def render_composite_video(
    G,
    stage_a: Any,
    cameras: Tensor,
    generator: torch.Generator | None,
    *,
    sr_state: dict[str, Tensor] | None = None,
    remove_ood: bool = False,
    ws_override: Tensor | None = None,
    removal_masks: Tensor | None = None,
    frame_index: Tensor | None = None,
    batch_size: int = 1,
    superresolution: torch.nn.Module | None = None,
    sample_mult: int = 1,
    removal_dilation: int = RELEASE_REMOVAL_DILATION,
    removal_blend_scale: float = RELEASE_REMOVAL_BLEND_SCALE,
) -> CompositeFrames:
    """Render the composite (face + OOD) video with the stage-A fields, optionally edited latents / OOD removed.

    Args:
        G: frozen generator. stage_a: ``joint.StageAResult``. cameras: [T,25].
        generator: RNG for the ray samples (pass a freshly seeded one for reproducible renders).
        sr_state: fine-tuned SR state dict from stage B (``None`` = G's own SR).
        remove_ood: remove the OOD content. Without ``removal_masks`` every blend weight is set to 0 (paper: the
            face field alone); with them, the release's rule: b *= ``removal_blend_scale`` (1.2) everywhere,
            b = 0 on rays inside the OOD region of the mask dilated by a ``removal_dilation`` square (5 x 5).
        ws_override: [T,14,512] latents to render instead of ``stage_a.ws`` (edits).
        removal_masks: [T,1,H,W] in {0,1}, 1 = face, 0 = OOD (the input-mask convention).
        frame_index: [T] int64 rows of phi per output frame (default 0..T-1).
        batch_size: frames per forward.
        superresolution: the SR module to run (e.g. :func:`sr_module`'s copy, shared by several renders); then
            ``sr_state`` must be None. Default: G's own SR, or a copy with ``sr_state`` loaded.
        sample_mult: stratified and importance samples per ray times this (``gen_3d.py --sample_mult``).
    Returns:
        :class:`CompositeFrames` (CPU float32). G is not changed (no attribute, weight or hook).
    """
    T = cameras.shape[0]
    ws = stage_a.ws if ws_override is None else ws_override
    if cameras.ndim != 2 or cameras.shape[1] != 25 or not torch.isfinite(cameras).all():
        raise BadInputError(f"cameras must be finite [T,25], got {tuple(cameras.shape)}")
    if ws.ndim != 3 or ws.shape[0] != T:
        raise BadInputError(f"latents [{ws.shape[0]},...] do not match {T} cameras")
    if not torch.isfinite(ws).all():
        raise BadInputError("latents contain NaN/inf")
    idx = torch.arange(T) if frame_index is None else frame_index.long().cpu()
    if idx.shape != (T,) or int(idx.max()) >= stage_a.phi.shape[0] or int(idx.min()) < 0:
        raise BadInputError(f"frame index must be [{T}] within 0..{stage_a.phi.shape[0] - 1}")
    device = cameras.device
    if superresolution is not None and sr_state is not None:
        raise BadInputError("pass the fine-tuned SR either as sr_state or loaded in superresolution, not both")
    sr = superresolution or (G.superresolution if sr_state is None else sr_module(G, sr_state))
    rendering = None if sample_mult == 1 else G.rendering.with_sample_mult(sample_mult)
    R = int(stage_a.neural_resolution or G.neural_rendering_resolution)
    ood = OODField.from_state(stage_a.ood_state, stage_a.phi, box_warp=G.rendering.box_warp).to(device)
    rem = None
    if remove_ood and removal_masks is not None:
        H = int(G.init_kwargs["img_resolution"])
        if removal_masks.shape != (T, 1, H, H):
            raise BadInputError(f"removal masks must be [{T},1,{H},{H}]")
        rem = _morph(_resize(1 - removal_masks.float(), R, "nearest"), removal_dilation, "dilate").to(device)
    out: dict[str, list[Tensor]] = {k: [] for k in ("image", "raw", "blend", "opacity", "depth")}
    with torch.no_grad():
        for s in range(0, T, batch_size):
            sl = slice(s, s + batch_size)
            w = ws[sl].to(device)
            planes = G.backbone_planes(w, noise_mode="const")
            r = render_composite(
                G, planes, cameras[sl], ood, idx[sl].to(device), generator, form=stage_a.form, rendering=rendering,
                release_sample_order=stage_a.release_sample_order, resolution=R,
                blend_mode="zero" if (remove_ood and rem is None) else "learned",
                removal_mask=None if rem is None else rem[sl], blend_scale=removal_blend_scale if rem is not None else 1.0,
            )
            feat = _features_to_image(r.rgb, R)
            img = composite_sr(sr, feat, w, stage_a.sr_noise)
            out["image"].append(img.clamp(-1, 1).cpu())
            out["raw"].append(feat[:, :3].clamp(-1, 1).cpu())
            out["blend"].append(_features_to_image(r.ood_share, R).clamp(0, 1).cpu())
            out["opacity"].append(_features_to_image(r.ood_acc, R).clamp(0, 1).cpu())
            out["depth"].append(_features_to_image(r.depth, R).cpu())
    return CompositeFrames(
        image=torch.cat(out["image"]), image_raw=torch.cat(out["raw"]), blend_map=torch.cat(out["blend"]),
        ood_opacity=torch.cat(out["opacity"]), depth=torch.cat(out["depth"]),
    )
