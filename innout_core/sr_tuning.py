"""Stage B: fine-tune EG3D's super-resolution module on the stage-A composite (docs/method.md §4, paper §4.5).

Everything upstream of the SR (face field, OOD field, phi, w+) is frozen, so the SR inputs of a frame — raw RGB
[3,R,R], the 32-channel feature image [32,R,R] and w — are fixed up to the renderer's random ray samples. The default
(``cached=True``) renders them once per frame, with a per-frame seed, and trains the SR alone: one SR forward/backward
per step instead of a full tri-plane render. ``cached=False`` re-renders every step like the release; with
``per_frame_seeds=True`` it draws exactly the same samples as the cached mode (same loss curve, bitwise), with
``per_frame_seeds=False`` it draws fresh samples every step from the run's generator (the release's behaviour).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from innout_core.checkpointing import Checkpointer, make_fingerprint, rng_state, set_rng_state
from innout_core.composite import _features_to_image, render_composite
from innout_core.errors import BadInputError, CheckpointError
from innout_core.joint import (
    ProgressFn,
    StageAResult,
    validate_inputs,
)
from innout_core.losses import LpipsLoader, l2_loss, load_lpips, lpips_loss
from innout_core.ood import OODField
from innout_core.precision import autocast, maybe_compile, optimizer_step, use_amp
from innout_core.settings.sr_tuning import SRTuningConfig

__all__ = ["SRTuningConfig", "run_stage_b", "sr_inputs", "stage_b_fingerprint"]


def stage_b_fingerprint(stage_a: StageAResult, frames: Tensor, cameras: Tensor, cfg: SRTuningConfig) -> str:
    """Fingerprint of stage-B inputs + config (give it to the :class:`Checkpointer`)."""
    return make_fingerprint("stage-b", stage_a.ood_state, stage_a.phi, stage_a.ws, frames, cameras,
                            cfg.model_dump(mode="json"))


def _frame_generator(base: int, t: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed((base + 1_000_003 * t) % (2**63 - 1))


def sr_inputs(G, ood: OODField, stage_a: StageAResult, cameras: Tensor, t: int,
              generator: torch.Generator | None, *, fused: bool = True,
              grad: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The SR inputs of frame t: raw RGB [1,3,R,R] clamped to [-1,1] (as the release feeds it), feature image
    [1,C,R,R] (about [-1,1]), w [1,14,512].

    ``grad=True`` builds the render's autograd graph with w (and whatever of ``ood`` requires grad) as leaves, as
    the release does in stage B; the values are the same.
    """
    device = cameras.device
    R = int(stage_a.neural_resolution or G.neural_rendering_resolution)
    w = stage_a.ws[t : t + 1].to(device)
    if grad:
        w = w.detach().clone().requires_grad_(True)
    with torch.set_grad_enabled(grad):
        planes = G.backbone_planes(w, noise_mode="const")
        r = render_composite(G, planes, cameras[t : t + 1], ood, torch.tensor([t], device=device), generator,
                             form=stage_a.form, release_sample_order=stage_a.release_sample_order, resolution=R,
                             with_ood_only=not fused, fused=fused)
        feat = _features_to_image(r.rgb, R)
    return feat[:, :3].clamp(-1, 1), feat, w


def run_stage_b(
    G,
    stage_a: StageAResult,
    frames: Tensor,
    cameras: Tensor,
    cfg: SRTuningConfig,
    generator: torch.Generator,
    *,
    checkpoint: Checkpointer | None = None,
    progress: ProgressFn | None = None,
    lpips_loader: LpipsLoader | None = None,
    on_step: Callable[[torch.optim.Optimizer], None] | None = None,
) -> dict[str, Tensor]:
    """Fine-tune a copy of ``G.superresolution``; G itself is not modified.

    Args:
        G: frozen generator. stage_a: stage-A result. frames: [T,3,H,W] in [-1,1]. cameras: [T,25].
        cfg: :class:`SRTuningConfig`. generator: random source (per-frame seed base, frame order, samples).
        checkpoint, progress: as stage A; ``progress(step, total, {"l2":..., "lpips":..., "total":...})``.
        lpips_loader: loads the LPIPS model (default :func:`innout_core.losses.load_lpips`).
        on_step: called with the optimiser after each step (its parameters' ``.grad``: that step's gradients).
    Returns:
        the fine-tuned ``superresolution`` state dict (CPU tensors).
    """
    validate_inputs(G, frames, cameras, stage_a.ws)
    T = frames.shape[0]
    if stage_a.phi.shape[0] != T:
        raise BadInputError(f"stage-A result has {stage_a.phi.shape[0]} frames, video has {T}")
    device = frames.device
    fp = stage_b_fingerprint(stage_a, frames, cameras, cfg)
    resume = checkpoint.latest() if checkpoint is not None else None
    if resume is not None and resume.get("fingerprint") != fp:
        raise CheckpointError("stage-B checkpoint belongs to other inputs or config; delete it to start over",
                              checkpoint.directory)

    Gb = copy.deepcopy(G)
    Gb.requires_grad_(False)
    sr = Gb.superresolution
    sr.requires_grad_(True)
    ood = OODField.from_state(stage_a.ood_state, stage_a.phi, box_warp=G.rendering.box_warp).to(device)
    release_grad = cfg.release_render_grad and not cfg.cached
    ood.requires_grad_(release_grad)
    opt = torch.optim.Adam(sr.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    lp = (lpips_loader or load_lpips)(cfg.lpips_net, spatial=True, device=device) if cfg.lpips > 0 else None
    base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    perm: Tensor | None = None
    pos, start = 0, 0
    history: list[dict] = []
    if resume is not None:
        sr.load_state_dict(resume["sr"])
        opt.load_state_dict(resume["opt"])
        set_rng_state(generator, resume["rng"])
        base, perm, pos, history, start = int(resume["base"]), resume["perm"], int(resume["pos"]), \
            list(resume["losses"]), int(resume["step"])

    def gen_for(t: int) -> torch.Generator:
        return _frame_generator(base, t, device) if cfg.per_frame_seeds else generator

    cache: list[tuple[Tensor, Tensor, Tensor]] | None = None
    if cfg.cached:
        cache = [sr_inputs(G, ood, stage_a, cameras, t, gen_for(t), fused=cfg.fused) for t in range(T)]
    amp_dtype = use_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    superresolve = maybe_compile(Gb.superresolve, cfg.compile, device)

    def snapshot() -> dict[str, Any]:
        return {"fingerprint": fp, "sr": {k: v.detach().clone() for k, v in sr.state_dict().items()},
                "opt": opt.state_dict(), "rng": rng_state(generator), "base": base, "perm": perm, "pos": pos,
                "losses": list(history)}

    noise = stage_a.sr_noise  # the composite path's SR noise (the release: constant), as stage A trained with
    per_epoch = -(-T // cfg.batch_frames)
    total_steps = cfg.epochs * per_epoch
    for step in range(start, total_steps):
        if perm is None or pos >= T:
            perm = torch.randperm(T, generator=generator, device=generator.device).cpu()
            pos = 0
        batch = [int(i) for i in perm[pos : pos + cfg.batch_frames]]
        pos += len(batch)
        t = batch[0]
        parts = []
        for f in batch:
            if cache is not None:
                parts.append(cache[f])
            else:  # Gb: the frozen copy, so a release-style backward never reaches the caller's G
                parts.append(sr_inputs(Gb, ood, stage_a, cameras, f, gen_for(f), fused=cfg.fused, grad=release_grad))
        raw, feat, w = parts[0] if len(parts) == 1 else (torch.cat(x) for x in zip(*parts))
        target = frames[t : t + 1] if len(batch) == 1 else frames[torch.tensor(batch, device=device)]
        with autocast(amp_dtype, device):
            img = superresolve(raw, feat, w, noise_mode=noise).float()
        img = img.clamp(-1, 1) if cfg.clamp else img
        terms: dict[str, Tensor] = {}
        if cfg.l2 > 0:  # "sum": per frame, averaged over the frames of a batch like the LPIPS term
            terms["l2"] = l2_loss(img, target, cfg.reduction) / (len(batch) if cfg.reduction == "sum" else 1)
        if lp is not None:  # VGG at full resolution costs as much as the SR: it runs under the same autocast
            with autocast(amp_dtype, device):
                terms["lpips"] = lpips_loss(lp, img, target).float()
        total = cfg.l2 * terms.get("l2", 0.0) + cfg.lpips * terms.get("lpips", 0.0)
        opt.zero_grad(set_to_none=True)
        if torch.is_tensor(total) and total.requires_grad:
            optimizer_step(total, opt, scaler)
            if on_step is not None:
                on_step(opt)
        rec = {k: float(v.detach()) for k, v in terms.items()}
        rec["total"] = float(total.detach()) if torch.is_tensor(total) else float(total)
        rec["frame"] = float(t)
        history.append(rec)
        if progress is not None:
            progress(step + 1, total_steps, rec)
        if checkpoint is not None:
            checkpoint.maybe_save(step + 1, snapshot)
    if checkpoint is not None and total_steps > start:
        checkpoint.maybe_save(total_steps, snapshot, force=True)
    return {k: v.detach().cpu().clone() for k, v in sr.state_dict().items()}
