"""Ground-truth benchmark (bench/ground_truth.py): the metrics of a run against the known truth.

Images are [T,3,H,W] in [-1,1]; "occluded" frames have >= 1 % occluder; masks [T,1,H,W] in {0,1}, 1 = face.
PSNR/SSIM per frame then averaged; the OOD share and IoU against the true occluder; latent drift in W+.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR over the pixels of ``region`` ([T,1,H,W] in {0,1}); NaN for frames with an empty region.
    pred, target: [T,3,H,W] in [-1,1]; data range 2."""
    r = region.expand_as(pred).double()
    mse = ((pred.double() - target.double()).square() * r).flatten(1).sum(1) / r.flatten(1).sum(1)
    return (10 * torch.log10(4.0 / mse)).float()


def _frame_mean(x: torch.Tensor, sel: torch.Tensor) -> float | None:
    v = x[sel]
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else None


def quality(pred: torch.Tensor, target: torch.Tensor, occluded: torch.Tensor, prefix: str = "") -> dict[str, Any]:
    """PSNR/SSIM per frame ([T,3,H,W] in [-1,1]) averaged over occluded and over unoccluded frames."""
    from innout_core.metrics import psnr, ssim

    p, q = psnr(pred, target), ssim(pred, target)
    return {f"{prefix}psnr_occ": _frame_mean(p, occluded), f"{prefix}ssim_occ": _frame_mean(q, occluded),
            f"{prefix}psnr_unocc": _frame_mean(p, ~occluded), f"{prefix}ssim_unocc": _frame_mean(q, ~occluded)}


def share_metrics(blend_map: torch.Tensor, true_ood: torch.Tensor) -> dict[str, float]:
    """OOD share of the composite on/off the true occluder and the occluder IoU (share > 0.5), over the video.

    blend_map: [T,1,R,R] in [0,1] (upsampled nearest to true_ood's size); true_ood: [T,1,H,W] in {0,1}, 1 = occluder.
    """
    from innout_core.joint import mask_iou

    share = F.interpolate(blend_map.float(), size=true_ood.shape[-2:], mode="nearest")
    on, off = true_ood > 0.5, true_ood <= 0.5
    return {"ood_share_on": float(share[on].mean()) if on.any() else float("nan"),
            "ood_share_off": float(share[off].mean()) if off.any() else float("nan"),
            "iou": mask_iou(share, true_ood)}


def latent_drift(ws: torch.Tensor, w_avg: torch.Tensor, w_init: torch.Tensor, w_true: torch.Tensor,
                 prefix: str = "") -> dict[str, float]:
    """Mean over frames of ||w - w_avg||, ||w - w_init||, ||w - w_true|| (Frobenius over [14,512])."""
    def dist(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm((a - b).flatten(1), dim=1).mean())

    return {f"{prefix}w_to_avg": dist(ws, w_avg.expand_as(ws)), f"{prefix}w_to_init": dist(ws, w_init),
            f"{prefix}w_to_true": dist(ws, w_true)}


def evaluate_composite(video: Any, image: torch.Tensor, blend_map: torch.Tensor, removed: torch.Tensor,
                       removed_rule: torch.Tensor | None = None) -> dict[str, Any]:
    """Every image figure of one run: composite vs input, face region vs clean, OOD share / IoU, removal vs clean.

    video: a ``GroundTruthVideo``; image, removed, removed_rule: [T,3,H,W] in [-1,1]; blend_map [T,1,R,R]."""
    occ = video.occluded()
    frames, clean = video.frames.clamp(-1, 1), video.clean.clamp(-1, 1)
    true_ood = 1 - video.masks
    m = quality(image, frames, occ, "recon_")
    m |= {k: v for k, v in quality(image, clean, occ, "recon_vs_clean_").items() if "_occ" in k}
    m["face_psnr_vs_clean"] = _frame_mean(masked_psnr(image, clean, video.masks), occ)
    m |= share_metrics(blend_map, true_ood)
    m |= quality(removed, clean, occ, "removal_")
    if removed_rule is not None:
        m |= {k: v for k, v in quality(removed_rule, clean, occ, "removal_rule_").items() if "_occ" in k}
    return m


def video_reference(G: Any, video: Any, gen_seed: int) -> dict[str, Any]:
    """Per-video baselines that need no fit: input vs clean, and the true latents' render vs input and clean."""
    occ = video.occluded()
    frames, clean = video.frames.clamp(-1, 1), video.clean.clamp(-1, 1)
    truth = render_ws(G, video.ws, video.cameras, gen_seed)
    return {"frames": int(frames.shape[0]), "occluded_frames": int(occ.sum()),
            "occluder_fraction": float((1 - video.masks).mean()),
            **quality(frames, clean, occ, "input_vs_clean_"),
            **quality(truth, frames, occ, "truth_render_vs_input_"),
            **quality(truth, clean, occ, "truth_render_vs_clean_")}


def render_ws(G: Any, ws: torch.Tensor, cameras: torch.Tensor, gen_seed: int) -> torch.Tensor:
    """G's SR images at latents ws [T,14,512] (const noise), [T,3,H,W] clamped to [-1,1]."""
    g = torch.Generator().manual_seed(gen_seed)
    with torch.no_grad():
        return torch.cat([G.synthesis(ws[t : t + 1], cameras[t : t + 1], noise_mode="const", generator=g).image
                          for t in range(ws.shape[0])]).clamp(-1, 1)


def hidden_share(masks: torch.Tensor) -> float | None:
    """How much of the occluder no frame looks behind: the pixels occluded in *every* frame, as a share of the mean
    occluder area of the occluded frames (image space; the camera moves little in the suite). 1 = an occluder that
    never moves or leaves, 0 = one that uncovers, in some frame, everything it hides. masks: [T,1,H,W], 1 = face.
    None without an occluder."""
    ood = (1 - masks) > 0.5
    area = ood.flatten(1).sum(1).float()
    if not (area > 0).any():
        return None
    return float(ood.all(0).sum()) / float(area[area > 0].mean())


def curve(values: list[float], n: int = 20) -> list[float]:
    """At most ``n + 1`` evenly spaced points of a loss history (first and last included)."""
    if not values:
        return []
    idx = sorted({round(i * (len(values) - 1) / n) for i in range(n + 1)})
    return [round(float(values[i]), 6) for i in idx]


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    from innout_core.joint import mask_iou

    return mask_iou(a, b)
