"""W / W+ / PTI inversion of a whole video into a frozen EG3D generator (the baselines of Table 1, and the W+
initialisation of In-N-Out's stage A).

Parametrisation (``invert_multi_ws.py``, docs/method.md §2.1): ``w_t = w_cano + rho * r_t`` with a shared canonical
latent ``w_cano`` and per-frame residuals ``r_t`` (zeros at start), both optimised. W: ``[1,512]`` / ``[T,512]``
repeated to the 14 style vectors; W+: ``[1,14,512]`` / ``[T,14,512]``. Initialisation (§2.2): best of K mapped
samples per frame (LPIPS-AlexNet or L2 against the frame, rendered with the frame's camera); ``w_cano`` = mean of the
per-frame winners. Optimisation (§2.4): shuffled frame batches, one Adam step per batch, ``steps`` epochs, the
official warm-up/cosine learning-rate schedule, ``L = l2 * MSE + lpips * LPIPS-VGG + delta * L_Delta``.
PTI: W+ pivots first, then the whole generator is fine-tuned on the frames with L2 + LPIPS (and optionally PTI's
locality regulariser), pivots fixed. All renders use ``noise_mode='const'`` (docs/method.md §10.5).

Masked fit (masked branch of ``invert_multi_ws.py``, docs/method.md §2.4): with per-frame ``masks`` (1 = face, 0 =
occluder) every pixel term counts only the face region -- the squared error summed over channels and masked pixels
and the LPIPS map summed over masked pixels, each divided by the mask's sum (:func:`masked_photometric`) -- in the
initial sample search, the subset pass, the latent phase and PTI alike. An occluder then cannot pull the latents:
In-N-Out's stage A starts from a face that does not already contain it.

Single-image mode (the paper's "Images" column): pass ``frames[:1], cameras[:1]`` (or use :func:`invert_image`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from innout_core.checkpointing import Checkpointer, make_fingerprint, rng_state, set_rng_state
from innout_core.eg3d.camera import frontal_label  # re-exported: importers of innout_core.inversion use it
from innout_core.errors import BadInputError
from innout_core.losses import LpipsLoader, delta_reg_loss, l2_loss, load_lpips
from innout_core.precision import autocast, use_amp
from innout_core.settings.inversion import InversionConfig

__all__ = [
    "ProgressFn",
    "InversionConfig",
    "InversionResult",
    "frontal_label",
    "lr_factor",
    "initial_latents",
    "masked_photometric",
    "validate_masks",
    "subset_indices",
    "invert_video",
    "invert_image",
    "inversion_fingerprint",
    "render_inversion",
]

ProgressFn = Callable[[int, int, dict[str, float]], None]



@dataclass
class InversionResult:
    """Output of :func:`invert_video`."""

    ws: Tensor  # [T,14,512] float32 per-frame latents (W: the 14 rows of a frame are equal)
    w_canonical: Tensor  # [1,14,512]
    generator_state: dict[str, Tensor] | None  # PTI: fine-tuned G state_dict (None for W / W+)
    losses: list[float]  # total loss per optimiser step (inversion steps, then PTI steps)
    seconds: float  # wall time of invert_video


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def lr_factor(epoch: int, epochs: int, rampup: float, rampdown: float) -> float:
    """Official per-epoch schedule (docs/method.md §2.4): ``t = epoch/epochs``, ``r = min(1, (1-t)/rampdown)``,
    ``r = 1/2 - 1/2 cos(pi r)``, ``r *= min(1, t/rampup)``. Epoch 0 has factor 0 when ``rampup > 0``."""
    t = epoch / max(epochs, 1)
    r = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    r = 0.5 - 0.5 * math.cos(math.pi * r)
    if rampup > 0:
        r *= min(1.0, t / rampup)
    return r


def _device(G: nn.Module) -> torch.device:
    return next(G.parameters()).device


def _validate(G: nn.Module, frames: Tensor, cameras: Tensor) -> None:
    res = int(G.init_kwargs["img_resolution"])
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2:] != (res, res):
        raise BadInputError(f"frames must be [T, 3, {res}, {res}] in [-1, 1], got {list(frames.shape)}")
    if not frames.is_floating_point():
        raise BadInputError(f"frames must be float in [-1, 1], got dtype {frames.dtype}")
    if cameras.shape != (frames.shape[0], 25):
        raise BadInputError(f"cameras must be [{frames.shape[0]}, 25], got {list(cameras.shape)}")
    if frames.shape[0] == 0:
        raise BadInputError("no frames to invert")


def _render(G: nn.Module, ws: Tensor, c: Tensor, generator: torch.Generator | None) -> Tensor:
    """SR image [N,3,H,W] of G at latents ws [N,14,512] and cameras c [N,25], constant noise."""
    return G.synthesis(ws, c, noise_mode="const", generator=generator).image


def inversion_fingerprint(frames: Tensor, cameras: Tensor, cfg: InversionConfig, seed: int | None = None,
                          masks: Tensor | None = None, pivot: Tensor | None = None) -> str:
    """Fingerprint for a :class:`Checkpointer` of this inversion (inputs + config + seed, and the masks of a masked
    fit or the pivot latents [T,14,512] of a PTI run on given pivots; a plain fit keeps the fingerprint it always
    had)."""
    extra = ([] if masks is None else ["masks", masks]) + ([] if pivot is None else ["pivot", pivot])
    return make_fingerprint("inversion", frames, cameras, cfg, seed, *extra)


def validate_masks(masks: Tensor, frames: Tensor) -> Tensor:
    """Check per-frame face masks for a masked fit and return them as float32 on the frames' device.

    Args:
        masks: ``[T, 1, H, W]`` in [0, 1] (1 = face, counted; 0 = occluder, ignored), H, W = the frames'.
        frames: ``[T, 3, H, W]``.
    Raises:
        BadInputError: wrong shape, non-finite or out-of-range values, or no face pixel in any frame.
    """
    T, _, H, W = frames.shape
    if not torch.is_tensor(masks) or masks.shape != (T, 1, H, W):
        raise BadInputError(f"masks must be [{T}, 1, {H}, {W}] (one per frame, 1 = face), got "
                            f"{list(getattr(masks, 'shape', []))}")
    m = masks.to(frames.device, torch.float32)
    if not torch.isfinite(m).all() or float(m.min()) < 0 or float(m.max()) > 1:
        raise BadInputError("masks must be finite values in [0, 1] (1 = face, 0 = occluder)")
    if float(m.sum()) == 0:
        raise BadInputError("masks mark no face pixel in any frame (1 = face, 0 = occluder): inverted masks?")
    return m


def masked_photometric(synth: Tensor, target: Tensor, mask: Tensor | None,
                       lpips_map: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Per-image pixel terms of the inversion, plain or masked.

    Args:
        synth, target: ``[N, 3, H, W]`` in [-1, 1].
        mask: ``[N, 1, H, W]`` in [0, 1] (1 = counted) or None.
        lpips_map: ``[N, 1, H, W]`` spatial LPIPS of (synth, target), or None.
    Returns:
        ``(l2 [N], lpips [N] or None)``. Without a mask: the mean squared error over channels and pixels and the
        spatial mean of the LPIPS map. With one (official masked branch): ``sum(m * (synth - target)^2) / sum(m)``
        (summed over channels, so an all-ones mask gives 3x the plain MSE) and ``sum(m * lpips_map) / sum(m)``; an
        image whose mask is empty gives 0.
    """
    err = (synth - target).square()
    if mask is None:
        return err.flatten(1).mean(dim=1), None if lpips_map is None else lpips_map.flatten(1).mean(dim=1)
    den = mask.flatten(1).sum(dim=1).clamp_min(1e-8)
    l2 = (err * mask).flatten(1).sum(dim=1) / den
    lp = None if lpips_map is None else (lpips_map * mask).flatten(1).sum(dim=1) / den
    return l2, lp


class _Lpips:
    """Lazily loaded LPIPS models (MissingWeightsError from innout_core.weights when the backbone is absent)."""

    def __init__(self, device: torch.device, loader: LpipsLoader | None = None) -> None:
        self.device = device
        self.loader = loader or load_lpips
        self.models: dict[str, nn.Module] = {}

    def __call__(self, net: str, x: Tensor, y: Tensor) -> Tensor:
        """Per-image spatial-mean LPIPS, [N]."""
        return self.map(net, x, y).flatten(1).mean(dim=1)

    def map(self, net: str, x: Tensor, y: Tensor) -> Tensor:
        """Spatial LPIPS map, [N,1,H,W]."""
        if net not in self.models:
            self.models[net] = self.loader(net, spatial=True, device=self.device)
        return self.models[net](x, y)


@torch.no_grad()
def initial_latents(G: nn.Module, frames: Tensor, cameras: Tensor, cfg: InversionConfig,
                    generator: torch.Generator, lpips: _Lpips | None = None,
                    masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Best-of-K initialisation (docs/method.md §2.2).

    Draws ``K = cfg.init_samples`` z ~ N(0, I) from ``generator``, maps them with the frontal conditioning label
    (psi = 1), renders every sample with every frame's camera and keeps, per frame, the sample with the lowest score
    (LPIPS-AlexNet or MSE; with ``masks`` [T,1,H,W] the face region only, :func:`masked_photometric`).

    Returns:
        ``(best [T,14,512], scores [T])`` float32.
    """
    device = frames.device
    frames, cameras = frames[:: cfg.init_stride], cameras[:: cfg.init_stride]
    masks = None if masks is None else masks[:: cfg.init_stride]
    T, K = frames.shape[0], cfg.init_samples
    z = torch.randn(K, G.z_dim, generator=generator, device=generator.device).to(device)
    ws = G.mapping(z, frontal_label(G, K, cfg.cond_focal), truncation_psi=1.0)
    best_score = torch.full((T,), float("inf"), device=device)
    best_idx = torch.zeros(T, dtype=torch.long, device=device)
    pairs = [(k, t) for k in range(K) for t in range(T)]
    for i in range(0, len(pairs), cfg.init_chunk):
        chunk = pairs[i : i + cfg.init_chunk]
        ks = torch.tensor([p[0] for p in chunk], device=device)
        ts = torch.tensor([p[1] for p in chunk], device=device)
        img = _render(G, ws[ks], cameras[ts], generator)
        m = None if masks is None else masks[ts]
        if cfg.init_metric == "lpips":
            assert lpips is not None
            lp_map = lpips.map("alex", img, frames[ts])
            score = masked_photometric(img, frames[ts], m, lp_map)[1]
        else:
            score = masked_photometric(img, frames[ts], m)[0]
        for k, t, s in zip(ks.tolist(), ts.tolist(), score.tolist()):
            if s < best_score[t]:
                best_score[t], best_idx[t] = s, k
    return ws[best_idx].float(), best_score


def subset_indices(T: int, n: int) -> Tensor:
    """``n`` evenly spaced frame indices of ``T`` (first and last included) for the subset pass; the release does not
    record how its 16 frames were chosen. [n] int64."""
    return torch.linspace(0, T - 1, min(n, T)).round().long()


def _batches(T: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    perm = torch.randperm(T, generator=generator, device=generator.device).cpu()
    b = T if batch_size <= 0 else batch_size
    return [perm[i : i + b] for i in range(0, T, b)]


# ---------------------------------------------------------------------------------------------------------------
# main entry points
# ---------------------------------------------------------------------------------------------------------------
def invert_video(
    G: nn.Module,
    frames: Tensor,
    cameras: Tensor,
    cfg: InversionConfig,
    generator: torch.Generator,
    *,
    checkpoint: Checkpointer | None = None,
    progress: ProgressFn | None = None,
    pivot: InversionResult | None = None,
    masks: Tensor | None = None,
    lpips_loader: LpipsLoader | None = None,
) -> InversionResult:
    """Invert all frames of a video with W, W+ or PTI, optionally on the face region only.

    Args:
        G: frozen TriPlaneGenerator (never modified; PTI fine-tunes a copy).
        frames: ``[T, 3, H, W]`` float in [-1, 1], H = W = ``G.init_kwargs['img_resolution']``.
        cameras: ``[T, 25]`` EG3D labels (used as given; not optimised, as the official ``use_pre_pose``).
        cfg: settings (:meth:`InversionConfig.preset`).
        generator: every random draw (init samples, shuffling, ray samples, locality samples).
        checkpoint: resumes from / saves to this :class:`Checkpointer` (state after the init search, then every
            ``checkpoint.every`` optimiser steps, and at the end).
        progress: called after each optimiser step with ``(step, total, losses)``.
        pivot: PTI only: an existing W+ result of these frames used as the pivots (the latent phase is skipped;
            its losses and seconds are carried over), so one W+ run serves both W+ and PTI.
        masks: ``[T, 1, H, W]`` in [0, 1], 1 = face: the masked fit (official masked branch; every pixel term,
            the initial search and the subset pass count the face region only). None = every pixel.
        lpips_loader: loads the LPIPS models (default :func:`innout_core.losses.load_lpips`).
    Returns:
        :class:`InversionResult` (ws detached, float32, on frames' device).
    """
    start = time.perf_counter()
    _validate(G, frames, cameras)
    G.requires_grad_(False)
    device = frames.device
    frames = frames.float()
    cameras = cameras.float().to(device)
    masks = None if masks is None else validate_masks(masks, frames)
    T = frames.shape[0]
    n_ws = int(G.num_ws)
    need_lpips = cfg.lambda_lpips > 0 or cfg.init_metric == "lpips" or (
        cfg.method == "pti" and (cfg.pti_lambda_lpips > 0 or (cfg.pti_locality and cfg.locality_lambda_lpips > 0)))
    lpips = _Lpips(device, lpips_loader) if need_lpips else None
    if pivot is not None:
        if cfg.method != "pti":
            raise BadInputError(f"a pivot is only used by PTI, not by method {cfg.method!r}")
        if pivot.ws.shape != (T, n_ws, pivot.ws.shape[-1]) or pivot.generator_state is not None:
            raise BadInputError(f"PTI pivot must be a W/W+ result of {T} frames, got ws {list(pivot.ws.shape)}")
        cfg = cfg.model_copy(update={"steps": 0})
    steps_per_epoch = math.ceil(T / (T if cfg.batch_size <= 0 else cfg.batch_size))
    n_inv = cfg.steps * steps_per_epoch
    n_pti = cfg.pti_steps * steps_per_epoch if cfg.method == "pti" else 0
    total = n_inv + n_pti

    state = checkpoint.latest() if checkpoint is not None else None
    is_w = cfg.method == "w"
    amp_dtype = use_amp(cfg.amp, device)
    if state is None and pivot is not None:  # latents are replaced by the pivot's after the (empty) phase 1
        cano = pivot.w_canonical.to(device, torch.float32).clone()
        resid = torch.zeros((T, *cano.shape[1:]), device=device)
    elif state is None and 0 < cfg.subset_frames < T:  # the release's subset pass, then all frames from its cano
        idx = subset_indices(T, cfg.subset_frames).to(device)
        sub_cfg = cfg.model_copy(update={"method": "w" if is_w else "w+", "subset_frames": 0,
                                         "steps": cfg.steps if cfg.subset_steps is None else cfg.subset_steps})
        sub = invert_video(G, frames[idx], cameras[idx], sub_cfg, generator,
                           masks=None if masks is None else masks[idx])
        cano = (sub.w_canonical[:, 0] if is_w else sub.w_canonical).to(device).clone()
        resid = torch.zeros((T, *cano.shape[1:]), device=device)
    elif state is None:
        best, _ = initial_latents(G, frames, cameras, cfg, generator, lpips, masks)
        cano0 = best.mean(dim=0, keepdim=True)  # [1,14,512]
        cano = (cano0[:, 0] if is_w else cano0).clone()
        resid = torch.zeros((T, *cano.shape[1:]), device=device)
    else:
        cano, resid = state["cano"].to(device), state["resid"].to(device)
    cano.requires_grad_(True)
    resid.requires_grad_(True)
    opt = torch.optim.Adam([cano, resid], lr=cfg.lr)
    losses: list[float] = []
    step, perm_left = 0, None
    Gt: nn.Module | None = None
    opt_g: torch.optim.Optimizer | None = None
    if state is not None:
        step = int(state["step"])
        losses = list(state["losses"])
        set_rng_state(generator, state["rng"])
        perm_left = state.get("perm_left")
        if state.get("phase") == "inv":
            opt.load_state_dict(state["opt"])

    def latents() -> Tensor:
        w = cano + cfg.residual_weight * resid
        return w[:, None, :].expand(T, n_ws, w.shape[-1]) if is_w else w

    def photometric(gen: nn.Module, ws: Tensor, idx: Tensor, w_l2: float, w_lpips: float
                    ) -> tuple[dict[str, Tensor], Tensor]:
        """Render frames ``idx`` of ``gen`` at ``ws`` (under the amp switch): L2 + LPIPS-VGG terms and their sum
        (face region only for a masked fit)."""
        with autocast(amp_dtype, device):
            synth = _render(gen, ws, cameras[idx], generator).float()
            lp_map = lpips.map("vgg", synth, frames[idx]).float() if w_lpips > 0 else None
        if masks is None:
            l2 = l2_loss(synth, frames[idx])
            lp = None if lp_map is None else lp_map.flatten(1).mean(dim=1).mean()
        else:  # official: sums over the whole batch divided by the batch's mask sum
            m = masks[idx]
            den = m.sum().clamp_min(1e-8)
            l2 = ((synth - frames[idx]).square() * m).sum() / den
            lp = None if lp_map is None else (lp_map * m).sum() / den
        parts = {"l2": l2}
        loss = w_l2 * parts["l2"]
        if lp is not None:
            parts["lpips"] = lp
            loss = loss + w_lpips * lp
        return parts, loss

    def optimise(optimiser: torch.optim.Optimizer, loss: Tensor, parts: dict[str, Tensor]) -> None:
        """One optimiser step on ``loss``; records it and reports progress."""
        nonlocal step
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, total, {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})

    def snapshot(phase: str, perm: list[Tensor] | None) -> dict[str, Any]:
        snap: dict[str, Any] = {"cano": cano.detach().cpu(), "resid": resid.detach().cpu(), "losses": list(losses),
                                "rng": rng_state(generator), "phase": phase,
                                "perm_left": [p.clone() for p in perm] if perm else None}
        if phase == "inv":
            snap["opt"] = opt.state_dict()
        else:
            assert Gt is not None and opt_g is not None
            snap["g_state"] = {k: v.detach().cpu() for k, v in Gt.state_dict().items()}
            snap["opt_g"] = opt_g.state_dict()
        return snap

    if checkpoint is not None and state is None:
        checkpoint.maybe_save(0, lambda: snapshot("inv", None), force=True)

    # -- phase 1: latent optimisation ------------------------------------------------------------------------
    while step < n_inv:
        epoch = step // steps_per_epoch
        f = lr_factor(epoch, cfg.steps, cfg.lr_rampup, cfg.lr_rampdown) if cfg.lr_schedule == "official" else 1.0
        for g in opt.param_groups:
            g["lr"] = cfg.lr * f
        batches = perm_left if perm_left else _batches(T, cfg.batch_size, generator)
        perm_left = None
        while batches:
            idx = batches.pop(0).to(device)
            ws = latents()[idx]
            parts, loss = photometric(G, ws, idx, cfg.lambda_l2, cfg.lambda_lpips)
            if not is_w and cfg.lambda_delta > 0:
                official = cfg.delta_form == "official"  # official: range(1, 13) of 14, i.e. all but the last
                parts["delta"] = delta_reg_loss(ws, n_deltas=n_ws - 2 if official else n_ws - 1, squared=not official)
                loss = loss + cfg.lambda_delta * parts["delta"]
            optimise(opt, loss, parts)
            if checkpoint is not None:
                checkpoint.maybe_save(step, lambda: snapshot("inv", batches), force=step == n_inv and n_pti == 0)

    ws_final = latents().detach().float()
    w_canonical = (cano[:, None, :].expand(1, n_ws, cano.shape[-1]) if is_w else cano).detach().float()
    if pivot is not None:
        ws_final, w_canonical = pivot.ws.to(device, torch.float32).clone(), pivot.w_canonical.to(device).float()
        if state is None:
            losses = list(pivot.losses)

    # -- phase 2: PTI generator fine-tuning ------------------------------------------------------------------
    g_state: dict[str, Tensor] | None = None
    if cfg.method == "pti":
        Gt = copy.deepcopy(G).requires_grad_(True)
        if state is not None and state.get("phase") == "pti":
            Gt.load_state_dict(state["g_state"])
        opt_g = torch.optim.Adam(Gt.parameters(), lr=cfg.pti_lr)
        if state is not None and state.get("phase") == "pti":
            opt_g.load_state_dict(state["opt_g"])
        while step < total:
            batches = perm_left if perm_left else _batches(T, cfg.batch_size, generator)
            perm_left = None
            while batches:
                idx = batches.pop(0).to(device)
                parts, loss = photometric(Gt, ws_final[idx], idx, cfg.pti_lambda_l2, cfg.pti_lambda_lpips)
                if cfg.pti_locality:
                    parts["locality"] = _locality_loss(G, Gt, ws_final[idx[:1]], cameras[idx[:1]], cfg, generator,
                                                       lpips)
                    loss = loss + parts["locality"]
                optimise(opt_g, loss, parts)
                if checkpoint is not None:
                    checkpoint.maybe_save(step, lambda: snapshot("pti", batches), force=step == total)
        g_state = {k: v.detach().clone() for k, v in Gt.state_dict().items()}

    seconds = time.perf_counter() - start + (pivot.seconds if pivot is not None else 0.0)
    return InversionResult(ws=ws_final, w_canonical=w_canonical, generator_state=g_state, losses=losses,
                           seconds=seconds)


def _locality_loss(G: nn.Module, Gt: nn.Module, pivot: Tensor, camera: Tensor, cfg: InversionConfig,
                   generator: torch.Generator, lpips: _Lpips | None) -> Tensor:
    """PTI's ball-holder regulariser: latents at distance ``alpha`` from the pivot towards random mapped samples
    (psi 0.5) must render the same with the tuned and the original generator (L2 + LPIPS, mean over samples)."""
    n = cfg.locality_samples
    z = torch.randn(n, G.z_dim, generator=generator, device=generator.device).to(pivot.device)
    with torch.no_grad():
        w = G.mapping(z, frontal_label(G, n, cfg.cond_focal), truncation_psi=cfg.locality_psi)
        d = w - pivot
        morphed = pivot + cfg.locality_alpha * d / torch.linalg.vector_norm(d.flatten(1), dim=1).view(n, 1, 1)
        cams = camera.expand(n, -1)
        state = generator.get_state()
        old = _render(G, morphed, cams, generator)
    generator.set_state(state)  # same ray samples for both generators
    new = _render(Gt, morphed, cams, generator)
    loss = cfg.locality_lambda_l2 * F.mse_loss(new, old)
    if cfg.locality_lambda_lpips > 0:
        assert lpips is not None
        loss = loss + cfg.locality_lambda_lpips * lpips("vgg", new, old).mean()
    return loss


def invert_image(G: nn.Module, frames: Tensor, cameras: Tensor, cfg: InversionConfig, generator: torch.Generator,
                 **kwargs: Any) -> InversionResult:
    """Single-image mode (paper's "Images" column): :func:`invert_video` on the first frame only."""
    return invert_video(G, frames[:1], cameras[:1], cfg, generator, **kwargs)


@torch.no_grad()
def render_inversion(G: nn.Module, result: InversionResult, cameras: Tensor, generator: torch.Generator,
                     chunk: int = 4) -> Tensor:
    """Render an inversion: ``[T, 3, H, W]`` in [-1, 1] (clamped), with PTI's tuned generator when present."""
    if cameras.shape != (result.ws.shape[0], 25):
        raise BadInputError(f"cameras must be [{result.ws.shape[0]}, 25], got {list(cameras.shape)}")
    net = G
    if result.generator_state is not None:
        net = copy.deepcopy(G)
        net.load_state_dict(result.generator_state)
    device = _device(net)
    ws, cams = result.ws.to(device), cameras.float().to(device)
    out = [_render(net, ws[i : i + chunk], cams[i : i + chunk], generator) for i in range(0, ws.shape[0], chunk)]
    return torch.cat(out).clamp(-1, 1)
