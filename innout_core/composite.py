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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from innout_core.errors import BadInputError
from innout_core.eg3d.rendering import weighted_sum

__all__ = ["CompositeMarch", "composite_march", "CompositeRender", "render_composite", "release_order_ood"]

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
