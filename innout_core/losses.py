"""Losses of stage A / stage B: pixel L2, LPIPS, blend entropy, blend area, mask-supervised OOD share, latent (L_w)
and delta (L_Delta) terms.

All pixel inputs are float tensors in [-1, 1]. ``reduction`` picks how a term is reduced over its elements:
``"mean"`` (the release: every term a mean) or ``"sum"`` (the paper: Eq. 5 sums squared errors over pixels and
channels, Eq. 6 sums the blend entropy over the samples of every ray). The paper's weights (lambda_w = 1,
lambda_Delta = 1e-3, lambda_b = 1) only have the paper's balance with ``"sum"``: with means, the pixel L2 shrinks by
3*R*R and the entropy by R*R*S. LPIPS is a spatial mean in both (it is defined as one); L_w and L_Delta are per
frame. See docs/method.md §3.6–3.7 and paper §4.1–4.4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import torch
from torch import Tensor

from innout_core.errors import BadInputError

__all__ = [
    "l2_loss",
    "masked_l2_loss",
    "lpips_loss",
    "blend_entropy_loss",
    "blend_area_loss",
    "share_mask_loss",
    "latent_reg_loss",
    "delta_reg_loss",
    "align_depth",
    "depth_loss",
    "load_lpips",
    "LpipsLoader",
]


Reduction = Literal["mean", "sum"]
#: ``(net, spatial, device) -> frozen LPIPS model``, as :func:`load_lpips`; the stages take one as an argument so a
#: benchmark can pass a stand-in (a random trunk of the same cost) without patching this module
LpipsLoader = Callable[..., torch.nn.Module]


def _reduce(x: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    raise BadInputError(f"loss reduction must be 'mean' or 'sum', got {reduction!r}")


class LPIPSModel(Protocol):
    def __call__(self, x: Tensor, y: Tensor) -> Tensor: ...


def l2_loss(x: Tensor, y: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Squared error over every element, mean or sum (paper Eq. 5: sum). x, y: same shape, any range. Scalar."""
    if x.shape != y.shape:
        raise BadInputError(f"l2_loss: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}")
    return _reduce((x - y).square(), reduction)


def masked_l2_loss(x: Tensor, y: Tensor, region: Tensor, eps: float = 0.0, reduction: Reduction = "mean") -> Tensor:
    """Official RAW_L2_O: ``sum((region*(x-y))^2) / sum(region broadcast to x)`` (``reduction="sum"``: the
    numerator alone, i.e. the squared error summed over the region).

    Args:
        x, y: [N,C,H,W].
        region: [N,1,H,W] in [0,1], 1 = pixel counted (for RAW_L2_O: the OOD region = 1 - mask).
        eps: added to the denominator; the official code uses 0 (NaN when the region is empty). With ``eps = 0`` an
            empty region returns exactly 0 instead of NaN.
    """
    r = region.expand_as(x)
    num = (r * (x - y)).square().sum()
    if reduction == "sum":
        return num
    if reduction != "mean":
        raise BadInputError(f"loss reduction must be 'mean' or 'sum', got {reduction!r}")
    den = r.sum()
    if eps == 0.0 and float(den) == 0.0:
        return num * 0.0
    return num / (den + eps)


def lpips_loss(model: LPIPSModel, x: Tensor, y: Tensor) -> Tensor:
    """Mean of the LPIPS map (official: ``lpips.LPIPS(net='vgg', spatial=True)(x, y).mean()``). x, y: [N,3,H,W] in [-1,1]."""
    return model(x, y).mean()


def load_lpips(net: str = "vgg", spatial: bool = True, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The frozen LPIPS model from ``innout_core.weights`` (raises MissingWeightsError if its backbone is absent)."""
    from innout_core.weights import load_lpips_model

    model = load_lpips_model(net, spatial)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def blend_entropy_loss(blend: Tensor, skew: float = 2.0, reduction: Reduction = "mean") -> Tensor:
    """Official BLENDW_LOSS: binary entropy of ``b**skew``, averaged over every sample (``reduction="sum"``: summed
    over every sample of every ray, paper Eq. 6 inside Eq. 5's sum over rays).

    ``p = clamp(b^skew, 1e-19, 1 - 1e-19)``, ``q = max(1 - p, 1e-19)``, ``H = -(p ln p + q ln q)``.
    (fp32 rounds ``1 - 1e-19`` to 1, exactly as the release does on GPU.) skew 2 = official, skew 1 = the paper's
    intended binary entropy of b. blend: any shape, values in [0, 1]. Returns a scalar (mean: in [0, ln 2]).
    """
    p = blend.pow(skew).clamp(1e-19, 1 - 1e-19)
    q = (1 - p).clamp(min=1e-19)
    return _reduce(-(p * p.log() + q * q.log()), reduction)


def blend_area_loss(blend: Tensor, is_coarse: Tensor | None = None, reduction: Reduction = "mean") -> Tensor:
    """Official BLENDW_AREA_LOSS (from D²NeRF): mean (or sum) over rays of ``(max_k b_k)^2``.

    Args:
        blend: [N,M,S,1] per-sample blend weight in [0,1].
        is_coarse: [N,M,S,1] bool; when given, the coarse and fine sample sets are reduced separately and the two
            results averaged (the release's form); None = one set.
    """
    b = blend.squeeze(-1)
    if is_coarse is None:
        return _reduce(b.amax(dim=-1).square(), reduction)
    c = is_coarse.squeeze(-1)
    coarse = _reduce(torch.where(c, b, torch.zeros_like(b)).amax(dim=-1).square(), reduction)
    fine = _reduce(torch.where(~c, b, torch.zeros_like(b)).amax(dim=-1).square(), reduction)
    return 0.5 * (coarse + fine)


def share_mask_loss(share: Tensor, region: Tensor, reduction: Reduction = "mean", eps: float = 1e-4) -> Tensor:
    """Mask-supervised OOD share (ours, not in the paper or the release): binary cross-entropy of the composite's
    per-pixel OOD share against the OOD region of the given masks, mean (or sum) over pixels.

    The release uses masks only to fit the OOD-only render inside them (RAW_L2_O); nothing tells the composite to
    *give* those rays to the OOD field, so a moving occluder that the OOD tri-plane draws blurrily keeps a share near
    0.5 and the face field keeps part of it. This term says it directly.

    Args:
        share: [N,1,R,R] OOD share of the composite opacity in [0,1] (``CompositeRender.ood_share`` as an image).
        region: [N,1,R,R] in [0,1], 1 = OOD (1 - mask).
        eps: share clamp away from 0 and 1 (keeps the log finite).
    """
    p = share.clamp(eps, 1 - eps)
    return _reduce(-(region * p.log() + (1 - region) * (1 - p).log()), reduction)


def latent_reg_loss(ws: Tensor, w_avg: Tensor, squared: bool = True) -> Tensor:
    """L_w: ``||w_t - w_avg||`` per frame (Frobenius over [14,512]), averaged over frames.

    Args:
        ws: [T,14,512]. w_avg: [512] or [14,512] or [1,14,512] (broadcast).
        squared: True = paper Eq. 1 (squared norm); False = the mask-free release script (plain norm).
    """
    d = (ws - w_avg).flatten(1)
    if squared:
        return d.square().sum(dim=1).mean()
    return torch.linalg.vector_norm(d, dim=1).mean()  # subgradient 0 at d = 0 (no NaN)


def delta_reg_loss(ws: Tensor, n_deltas: int = 13, squared: bool = True) -> Tensor:
    """L_Delta: ``sum_{i=1..n_deltas} ||w_i - w_0||`` per frame, averaged over frames.

    Args:
        ws: [T,L,512] with L > n_deltas. n_deltas: 13 = paper (all deltas), 12 = release (``range(1, 13)``).
        squared: True = paper (squared norms), False = release (plain norms).
    """
    if ws.shape[1] <= n_deltas:
        raise BadInputError(f"delta_reg_loss: need more than {n_deltas} style vectors, got {ws.shape[1]}")
    d = ws[:, 1 : n_deltas + 1] - ws[:, :1]
    per = d.square().sum(dim=-1) if squared else torch.linalg.vector_norm(d, dim=-1)
    return per.sum(dim=1).mean()


def align_depth(mono: Tensor, rendered: Tensor, kind: Literal["depth", "disparity"] = "depth",
                eps: float = 1e-6) -> Tensor:
    """Scale-and-shift alignment of a monocular estimate to the rendered depth (no gradient), per image.

    ``kind="depth"``: ``(s, t) = argmin sum (s * mono + t - rendered)^2`` and the result is ``s * mono + t``;
    ``kind="disparity"`` (MiDaS's raw output, inverse depth up to scale and shift): the fit is made against
    ``1 / rendered`` and the result is ``1 / max(s * mono + t, eps)``.

    Args:
        mono: [N,1,H,W] the user's depth or disparity map (any scale and shift).
        rendered: [N,1,H,W] rendered depth, world units (> 0).
    Returns:
        [N,1,H,W] depth in the rendered depth's units (detached).
    """
    if mono.shape != rendered.shape or mono.ndim != 4:
        raise BadInputError(f"align_depth: shapes differ {tuple(mono.shape)} vs {tuple(rendered.shape)}")
    with torch.no_grad():
        x = mono.flatten(1).double()
        y = rendered.detach().flatten(1).double()
        if kind == "disparity":
            y = 1.0 / y.clamp_min(eps)
        elif kind != "depth":
            raise BadInputError(f"depth kind must be 'depth' or 'disparity', got {kind!r}")
        xm, ym = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
        var = (x - xm).square().sum(dim=1, keepdim=True)
        scale = ((x - xm) * (y - ym)).sum(dim=1, keepdim=True) / var.clamp_min(1e-12)
        shift = ym - scale * xm
        fit = scale * x + shift
        if kind == "disparity":
            fit = 1.0 / fit.clamp_min(eps)
        return fit.to(mono.dtype).view_as(mono)


def depth_loss(rendered: Tensor, mono: Tensor, kind: Literal["depth", "disparity"] = "depth",
               reduction: Reduction = "mean") -> Tensor:
    """Paper Eq. 7: ``L_D = ||D_C - D_reg||_1`` with ``D_reg`` the monocular map rescaled to the render by a
    least-squares scale and shift (:func:`align_depth`, no gradient through the fit).

    Args:
        rendered: [N,1,H,W] composite depth (gradient flows here). mono: [N,1,H,W] depth or disparity.
        kind: what ``mono`` holds. reduction: mean or sum over pixels (the paper's L1 norm is a sum).
    """
    return _reduce((rendered - align_depth(mono, rendered, kind)).abs(), reduction)
