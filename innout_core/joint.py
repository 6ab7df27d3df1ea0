"""Stage A: joint optimisation of the OOD field (tri-plane, decoder, per-frame phi) and the per-frame w+.

Follows docs/method.md §3.5–3.7 and paper §4.2–4.4. One frame per step (batch 1, as the
release), frames visited in an epoch-wise random order drawn from the caller's ``torch.Generator``; every random draw
(stratified / importance samples, frame order, initialisation) comes from that generator, so a run resumed from a
checkpoint ends with bitwise the same parameters as an uninterrupted one (same device).

Losses (each weight configurable; 0 skips the term): raw L2 and LPIPS of the composite at the neural resolution,
masked OOD-only raw L2 (needs masks), SR L2 through the frozen SR, blend entropy of ``b**skew``, blend area
``(max b)^2``, latent regulariser L_w, delta regulariser L_Delta and (ours, not the paper's or the release's; needs
masks) the mask-supervised OOD share ``blend_mask`` (:func:`innout_core.losses.share_mask_loss`). ``reduction``:
``mean`` (the release) or ``sum`` (the paper's Eq. 5/6 sums over pixels and samples, for which its weights were set;
see ``losses.py``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from innout_core.auto_masks import auto_masks, masks_from_share, reference_latents
from innout_core.checkpointing import Checkpointer, make_fingerprint, rng_state, set_rng_state
from innout_core.composite import (  # render_composite_video and CompositeFrames: re-exported from here
    COMPOSITE_SR_NOISE,
    CompositeFrames,
    _features_to_image,
    _resize,
    composite_sr,
    render_composite,
    render_composite_video,
)
from innout_core.errors import BadInputError, CheckpointError
from innout_core.losses import (
    LpipsLoader,
    blend_area_loss,
    blend_entropy_loss,
    delta_reg_loss,
    depth_loss,
    l2_loss,
    latent_reg_loss,
    load_lpips,
    lpips_loss,
    masked_l2_loss,
    share_mask_loss,
)
from innout_core.ood import OODField
from innout_core.precision import autocast, maybe_compile, optimizer_step, use_amp
from innout_core.settings.joint import JointConfig, LossWeights, ShareMaskConfig

__all__ = [
    "LossWeights",
    "JointConfig",
    "StageAResult",
    "CompositeFrames",
    "ProgressFn",
    "run_stage_a",
    "first_pass_share",
    "share_masks",
    "stage_a_fingerprint",
    "uses_canonical",
    "mask_iou",
    "render_composite_video",
    "validate_inputs",
    "COMPOSITE_SR_NOISE",
    "composite_sr",
    "sr_noise_mode",
    "mean_latent",
]

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass
class StageAResult:
    """What stage A learned (CPU tensors)."""

    ood_state: dict[str, Tensor]  # OOD tri-plane + decoder (OODField.ood_state())
    phi: Tensor  # [T, phi_dim] per-frame codes
    ws: Tensor  # [T, 14, 512] refined w+
    losses: list[dict]  # one dict of floats per step
    seconds: float  # wall time of this call (excludes time before a resume)
    masks: Tensor | None = None  # [T,1,H,W] masks used (user or automatic), 1 = face
    mask_source: str | None = None  # 'user', 'given', or the automatic masks' source, e.g. 'residual vs canonical'
    form: str = "official"  # composite form to render with
    sr_noise: str = "const"  # SR noise mode of every composite render (JointConfig.sr_noise, resolved)
    depth_used: bool = False  # L_D was optimised (depth maps given and weight > 0)
    release_sample_order: bool = False
    neural_resolution: int | None = None


# ----------------------------------------------------------------------------------------------------------------
# validation and helpers
# ----------------------------------------------------------------------------------------------------------------


def _img_res(G) -> int:
    return int(G.init_kwargs["img_resolution"])


def _num_ws(G) -> int:
    """Style vectors per latent of G (``TriPlaneGenerator.num_ws``: 14 on the 512^2 EG3D)."""
    return int(G.num_ws)


def validate_inputs(G, frames: Tensor, cameras: Tensor, ws: Tensor | None = None, masks: Tensor | None = None) -> None:
    """Check shapes, dtypes and finiteness of the stage inputs; raise :class:`BadInputError` with a clear message."""
    H = _img_res(G)
    if not torch.is_tensor(frames) or frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2:] != (H, H):
        raise BadInputError(f"frames must be [T,3,{H},{H}], got {tuple(getattr(frames, 'shape', ()))}")
    if not frames.is_floating_point() or not torch.isfinite(frames).all():
        raise BadInputError("frames must be finite floats in [-1,1]")
    T = frames.shape[0]
    if T < 1:
        raise BadInputError("frames: empty video")
    if cameras.ndim != 2 or cameras.shape != (T, 25):
        raise BadInputError(f"cameras must be [{T},25] (one per frame), got {tuple(cameras.shape)}")
    if not torch.isfinite(cameras).all():
        raise BadInputError("cameras contain NaN/inf")
    if ws is not None:
        L = _num_ws(G)
        if ws.ndim != 3 or ws.shape[0] != T or ws.shape[1] != L:
            raise BadInputError(f"latents must be [{T},{L},w_dim] (one per frame), got {tuple(ws.shape)}")
        if not torch.isfinite(ws).all():
            raise BadInputError("latents contain NaN/inf (a failed inversion?); rerun the inversion stage")
    if masks is not None:
        if masks.shape != (T, 1, H, H):
            raise BadInputError(f"masks must be [{T},1,{H},{H}], got {tuple(masks.shape)}")
        if not torch.isfinite(masks).all() or masks.min() < 0 or masks.max() > 1:
            raise BadInputError("masks must be in [0,1] (1 = face, 0 = occluder)")


@contextmanager
def _frozen(G):
    """Temporarily set requires_grad=False on every parameter of G (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in G.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield G
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def sr_noise_mode(G, setting: str) -> str:
    """The SR noise mode of composite renders for ``JointConfig.sr_noise``: 'const' (the release), or for
    'generator' the generator's ``rendering.superresolution_noise_mode`` (what its SR was trained and is rendered
    with by ``G.synthesis``)."""
    return COMPOSITE_SR_NOISE if setting == "const" else str(G.rendering.superresolution_noise_mode)


def uses_canonical(cfg: JointConfig, w_canonical: Tensor | None) -> bool:
    """Whether stage A's automatic masks are computed against ``w_canonical`` (mask_mode 'auto', reference
    'canonical' and a latent given)."""
    return cfg.mask_mode == "auto" and cfg.auto_mask.reference == "canonical" and w_canonical is not None


def stage_a_fingerprint(frames: Tensor, cameras: Tensor, ws_init: Tensor, cfg: JointConfig,
                        masks: Tensor | None = None, depth: Tensor | None = None,
                        w_canonical: Tensor | None = None) -> str:
    """Fingerprint of stage-A inputs + config (give it to the :class:`Checkpointer`); ``w_canonical`` counts only
    where the automatic masks use it (:func:`uses_canonical`)."""
    extra: list[Any] = [] if depth is None else [depth]  # runs without depth maps keep their fingerprint
    if uses_canonical(cfg, w_canonical):
        extra += ["w_canonical", w_canonical]
    return make_fingerprint("stage-a", frames, cameras, ws_init, masks, cfg.model_dump(mode="json"), *extra)


@torch.no_grad()
def mean_latent(G, n: int = 10_000, seed: int = 0, chunk: int = 1000) -> Tensor:
    """Paper Eq. 1's w-bar: the mean of ``G.mapping(z, frontal label, psi=1)`` over ``n`` z ~ N(0, I) drawn from a
    generator seeded with ``seed`` (chunked). Returns [num_ws, w_dim] float32 on G's device."""
    from innout_core.eg3d.camera import frontal_label

    device = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    total = None
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        z = torch.randn(k, G.z_dim, generator=g).to(device)
        part = G.mapping(z, frontal_label(G, k), truncation_psi=1.0).double().sum(dim=0)
        total = part if total is None else total + part
    return (total / n).float()


def first_pass_share(G, frames: Tensor, cameras: Tensor, joint_cfg: "JointConfig", ws: Tensor, seed: int,
                     steps: int) -> Tensor:
    """The OOD share of a mask-free stage-A pass (automatic masks from the share, ``auto_mask.source: share``).

    Args:
        G: frozen generator. frames [T,3,H,W] in [-1,1]. cameras [T,25]. joint_cfg: the stage's config (run with
            ``mask_mode='none'``, ``steps`` steps, no checkpoints). ws [T,14,512]: the pass's initial w+.
        seed: seeds the pass and its render.
    Returns:
        [T,1,R,R] OOD share of the composite in [0,1] (``CompositeFrames.blend_map``).
    """
    first = joint_cfg.model_copy(update={"mask_mode": "none", "steps": steps, "checkpoint_every": 0})
    sa = run_stage_a(G, frames, cameras, ws, first, torch.Generator().manual_seed(seed))
    return render_composite_video(G, sa, cameras, torch.Generator().manual_seed(seed + 1)).blend_map


def share_masks(G, frames: Tensor, cameras: Tensor, ws: Tensor, joint_cfg: "JointConfig",
                cfg: ShareMaskConfig | None, seed: int) -> tuple[Tensor, Tensor]:
    """Masks from the OOD share of a first, mask-free stage-A pass (:func:`first_pass_share`).

    Returns:
        (masks [T,1,H,W] float32 in {0,1}, 1 = face; the first pass's OOD share [T,1,R,R]).
    """
    c = cfg or ShareMaskConfig()
    share = first_pass_share(G, frames, cameras, joint_cfg, ws, seed, c.first_pass_steps)
    return masks_from_share(share, frames.shape[-1], c), share


def mask_iou(pred_ood: Tensor, true_ood: Tensor) -> float:
    """IoU of two OOD regions ([T,1,H,W], > 0.5 = OOD), over the whole video; 1.0 when both are empty."""
    p, t = pred_ood > 0.5, true_ood > 0.5
    union = (p | t).sum().item()
    return 1.0 if union == 0 else (p & t).sum().item() / union


# ----------------------------------------------------------------------------------------------------------------
# stage A
# ----------------------------------------------------------------------------------------------------------------


def run_stage_a(
    G,
    frames: Tensor,
    cameras: Tensor,
    ws_init: Tensor,
    cfg: JointConfig,
    generator: torch.Generator,
    *,
    masks: Tensor | None = None,
    depth: Tensor | None = None,
    depth_kind: Literal["depth", "disparity"] = "depth",
    checkpoint: Checkpointer | None = None,
    progress: ProgressFn | None = None,
    w_canonical: Tensor | None = None,
    lpips_loader: LpipsLoader | None = None,
    on_step: Callable[[torch.optim.Optimizer], None] | None = None,
) -> StageAResult:
    """Jointly optimise OOD tri-plane, decoder, phi and w+ (stage A).

    Args:
        G: frozen ``TriPlaneGenerator`` (its parameters are not changed; requires_grad is restored afterwards).
        frames: [T,3,H,W] in [-1,1], H = ``G.init_kwargs['img_resolution']``.
        cameras: [T,25] EG3D labels.
        ws_init: [T,14,512] W+ inversion latents.
        cfg: :class:`JointConfig`.
        generator: the only random source (initialisation, frame order, ray samples).
        masks: [T,1,H,W] in {0,1}, 1 = face; required for ``mask_mode='user'``, ignored for ``'none'``,
            computed by :func:`innout_core.auto_masks.auto_masks` (``cfg.auto_mask``) for ``'auto'`` when not
            given, or taken from the checkpoint when resuming.
        depth: [T,1,h,w] monocular depth (or disparity, ``depth_kind``) per frame, any scale and shift, for L_D
            (paper Eq. 7, single image); resized bilinearly to the neural resolution. None = no L_D.
        checkpoint: resumable checkpoints every ``cfg.checkpoint_every`` steps (its ``every`` decides).
        progress: called after each step with (step, total, losses).
        w_canonical: [1,14,512] the W+ inversion's shared canonical latent: the reference of automatic masks
            (``auto_mask.reference='canonical'``, rendered at every frame's camera); without it they fall back to
            the per-frame ``ws_init`` render (logged).
        lpips_loader: loads the LPIPS model (default :func:`innout_core.losses.load_lpips`).
        on_step: called with the optimiser after each step (its parameters' ``.grad``: that step's gradients).
    Raises:
        BadInputError: wrong shapes, mismatched counts, NaN latents, missing user masks.
        CheckpointError: a checkpoint made for other inputs/config.
    """
    t0 = time.perf_counter()
    validate_inputs(G, frames, cameras, ws_init, masks if cfg.mask_mode != "none" else None)
    if cfg.mask_mode == "user" and masks is None:
        raise BadInputError("mask_mode 'user' needs one mask per frame (masks/<frame>.png, 1 = face); "
                            "or use mask_mode 'auto' or 'none'")
    device = frames.device
    T = frames.shape[0]
    R = int(cfg.neural_resolution or G.neural_rendering_resolution)
    w = cfg.weights
    use_depth = depth is not None and w.depth > 0
    if use_depth and (depth.ndim != 4 or depth.shape[:2] != (T, 1) or not torch.isfinite(depth).all()):
        raise BadInputError(f"depth maps must be finite [{T},1,h,w] (one per frame), got {tuple(depth.shape)}")
    if uses_canonical(cfg, w_canonical):
        reference_latents(ws_init, w_canonical, "canonical")  # shape / NaN check before any work
    fp = stage_a_fingerprint(frames, cameras, ws_init, cfg, masks if cfg.mask_mode != "none" else None,
                             depth if use_depth else None, w_canonical)
    resume = checkpoint.latest() if checkpoint is not None else None
    if resume is not None and resume.get("fingerprint") != fp:
        raise CheckpointError("stage-A checkpoint belongs to other frames, cameras, latents or config; "
                              "delete it to start over", checkpoint.directory)

    with _frozen(G):
        mask_source = None
        if cfg.mask_mode == "none":
            use_masks = None
        elif cfg.mask_mode == "user":
            use_masks, mask_source = masks.to(device, torch.float32), "user"
        elif masks is not None:
            use_masks, mask_source = masks.to(device, torch.float32), "given"
        elif resume is not None and resume.get("masks") is not None:
            use_masks, mask_source = resume["masks"].to(device), resume.get("mask_source")
        else:
            first_pass = functools.partial(first_pass_share, G, frames, cameras, cfg)
            use_masks, mask_source = auto_masks(G, frames, cameras, ws_init, cfg.auto_mask, generator,
                                                w_canonical=w_canonical, share_pass=first_pass)
        targets_raw = _resize(frames, R, "bilinear")
        depth_raw = None
        if use_depth:
            depth_raw = F.interpolate(depth.to(device, torch.float32), size=(R, R), mode="bilinear",
                                      align_corners=False, antialias=depth.shape[-1] > R)
        region_raw = None if use_masks is None else 1 - _resize(_resize(use_masks, _img_res(G), "nearest"), R,
                                                                  "nearest")
        lp = (lpips_loader or load_lpips)(cfg.lpips_net, spatial=True, device=device) if w.lpips > 0 else None
        w_avg = None
        if w.latent > 0:
            w_avg = (G.backbone.mapping.w_avg if cfg.w_avg == "tracked" else mean_latent(G, cfg.w_avg_samples)).to(
                device)

        ood = OODField(T, cfg.ood_channels, cfg.ood_resolution, cfg.phi_dim, box_warp=G.rendering.box_warp,
                       generator=generator).to(device)
        ws = torch.nn.Parameter(ws_init.detach().clone().to(device, torch.float32))
        groups = [{"params": [ood.triplanes, *ood.decoder.parameters(), ood.phi], "lr": cfg.lr}]
        if cfg.lr_w > 0:
            groups.append({"params": [ws], "lr": cfg.lr_w})
        else:
            ws.requires_grad_(False)
        opt = torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8)
        perm: Tensor | None = None
        pos = 0
        history: list[dict] = []
        start = 0
        if resume is not None:
            with torch.no_grad():
                ood.load_state_dict(resume["ood"])
                ws.copy_(resume["ws"])
            opt.load_state_dict(resume["opt"])
            set_rng_state(generator, resume["rng"])
            perm = resume["perm"]
            pos = int(resume["pos"])
            history = list(resume["losses"])
            start = int(resume["step"])

        def snapshot() -> dict[str, Any]:
            return {"fingerprint": fp, "ood": {k: v.detach().clone() for k, v in ood.state_dict().items()},
                    "ws": ws.detach().clone(), "opt": opt.state_dict(), "rng": rng_state(generator),
                    "perm": perm, "pos": pos, "losses": list(history),
                    "masks": use_masks if cfg.mask_mode == "auto" else None, "mask_source": mask_source}

        plane_cache: dict[int, Tensor] = {}
        frozen_w = not ws.requires_grad
        amp_dtype = use_amp(cfg.amp, device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        superresolve = maybe_compile(G.superresolve, cfg.compile, device)
        noise = sr_noise_mode(G, cfg.sr_noise)
        need_ood_only = w.l2_ood > 0 and region_raw is not None
        need_ood_sr = (w.sr_l2_ood > 0 and region_raw is not None) or cfg.compute_unused
        region_full = None if use_masks is None else 1 - use_masks
        for step in range(start, cfg.steps):
            if perm is None or pos >= T:
                perm = torch.randperm(T, generator=generator, device=generator.device).cpu()
                pos = 0
            t = int(perm[pos])
            pos += 1
            wt = ws[t : t + 1]
            if frozen_w:  # no gradient to w: no backbone backward, and tri-planes can be cached
                planes = plane_cache.get(t)
                if planes is None:
                    with torch.no_grad():
                        planes = G.backbone_planes(wt, noise_mode="const")
                    if (len(plane_cache) + 1) * planes.numel() * planes.element_size() <= cfg.plane_cache_mb * 2**20:
                        plane_cache[t] = planes
            with autocast(amp_dtype, device):
                if not frozen_w:
                    planes = G.backbone_planes(wt, noise_mode="const")
                r = render_composite(G, planes, cameras[t : t + 1], ood, torch.tensor([t], device=device),
                                     generator, form=cfg.composite_form,
                                     release_sample_order=cfg.release_sample_order, resolution=R,
                                     with_ood_only=need_ood_only or need_ood_sr or not cfg.fused, fused=cfg.fused)
                feat = _features_to_image(r.rgb.float(), R)
                sr = composite_sr(superresolve, feat, wt, noise).float() if w.sr_l2 > 0 else None
                sr_o = None
                if need_ood_sr:
                    feat_o = _features_to_image(r.ood_rgb.float(), R)
                    sr_o = composite_sr(superresolve, feat_o, wt, noise).float()
            raw = feat[:, :3].clamp(-1, 1) if cfg.clamp_raw else feat[:, :3]
            terms: dict[str, Tensor] = {}
            red = cfg.reduction
            if w.l2 > 0:
                terms["l2"] = l2_loss(raw, targets_raw[t : t + 1], red)
            if need_ood_only:
                raw_o = _features_to_image(r.ood_rgb.float(), R)[:, :3]
                raw_o = raw_o.clamp(-1, 1) if cfg.clamp_raw else raw_o
                terms["l2_ood"] = masked_l2_loss(raw_o, targets_raw[t : t + 1], region_raw[t : t + 1], reduction=red)
            if lp is not None:
                terms["lpips"] = lpips_loss(lp, raw, targets_raw[t : t + 1])
            if sr is not None:
                sr = sr.clamp(-1, 1) if cfg.clamp_raw else sr
                terms["sr_l2"] = l2_loss(sr, frames[t : t + 1], red)
            if sr_o is not None and w.sr_l2_ood > 0 and region_full is not None:
                sr_o = sr_o.clamp(-1, 1) if cfg.clamp_raw else sr_o
                terms["sr_l2_ood"] = masked_l2_loss(sr_o, frames[t : t + 1], region_full[t : t + 1], reduction=red)
            if w.blend_entropy > 0:
                terms["blend_entropy"] = blend_entropy_loss(r.blend.float(), cfg.blend_entropy_skew, red)
            if w.blend_area > 0:
                terms["blend_area"] = blend_area_loss(r.blend.float(), r.is_coarse, red)
            if w.blend_mask > 0 and region_raw is not None:
                share = _features_to_image(r.ood_share.float(), R)
                terms["blend_mask"] = share_mask_loss(share, region_raw[t : t + 1], red)
            if depth_raw is not None:
                terms["depth"] = depth_loss(_features_to_image(r.depth.float(), R), depth_raw[t : t + 1],
                                            depth_kind, red)
            if w.latent > 0:
                terms["latent"] = latent_reg_loss(wt, w_avg, cfg.latent_squared)
            if w.delta > 0:
                terms["delta"] = delta_reg_loss(wt, min(cfg.delta_count, wt.shape[1] - 1), cfg.delta_squared)
            total = sum(getattr(w, k) * v for k, v in terms.items())
            opt.zero_grad(set_to_none=True)
            optimizer_step(total, opt, scaler)
            if on_step is not None:
                on_step(opt)
            rec = {k: float(v.detach()) for k, v in terms.items()}
            rec["total"] = float(total.detach())
            rec["frame"] = float(t)
            history.append(rec)
            if progress is not None:
                progress(step + 1, cfg.steps, rec)
            if checkpoint is not None:
                checkpoint.maybe_save(step + 1, snapshot)
        if checkpoint is not None and cfg.steps > start:
            checkpoint.maybe_save(cfg.steps, snapshot, force=True)

    return StageAResult(
        ood_state={k: v.detach().cpu().clone() for k, v in ood.ood_state().items()},
        phi=ood.phi.detach().cpu().clone(),
        ws=ws.detach().cpu().clone(),
        losses=history,
        seconds=time.perf_counter() - t0,
        masks=None if use_masks is None else use_masks.detach().cpu(),
        mask_source=mask_source,
        form=cfg.composite_form,
        sr_noise=sr_noise_mode(G, cfg.sr_noise),
        depth_used=use_depth,
        release_sample_order=cfg.release_sample_order,
        neural_resolution=R,
    )
