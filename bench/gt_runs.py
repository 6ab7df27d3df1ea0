"""Ground-truth benchmark (bench/ground_truth.py): running the points: W+ / masked W+ / PTI fits, one stage-A run,
and the resumable scheduler over worker processes (one torch thread each).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.gt_metrics import (
    _frame_mean,
    _mask_iou,
    curve,
    evaluate_composite,
    latent_drift,
    masked_psnr,
    quality,
    render_ws,
    video_reference,
)
from bench.gt_plan import (
    BenchSettings,
    PTI_CONFIG,
    ROOT,
    RunSpec,
    _read_json,
    _video_seed,
    is_done,
    joint_config_dict,
    pti_path,
    run_hash,
    run_path,
    wplus_config,
    wplus_done,
    wplus_paths,
)
from innout_core.errors import BadInputError
from innout_core.store import atomic_path, atomic_write_json


def _init_worker() -> None:
    torch.set_num_threads(1)


@functools.lru_cache(maxsize=2)
def _generator(name: str = "tiny") -> Any:
    from innout_core.eg3d.configs import build_generator

    return build_generator(name).requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _video(name: str, frames: int, seed: int, generator: str = "tiny") -> Any:
    from innout_core.synthetic import ground_truth_suite, make_ground_truth_video

    return make_ground_truth_video(_generator(generator), ground_truth_suite(frames, seed, generator)[name])


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock file: one process computes a cached result, the others wait and then find it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fit_inputs(s: BenchSettings, video_name: str) -> tuple[Any, Any, int]:
    """(generator, ground-truth video, the video's base seed) of a fit."""
    return _generator(s.generator), _video(video_name, s.frames, s.seed, s.generator), _video_seed(s, video_name)


def fit_pti(s: BenchSettings, video_name: str) -> Path:
    """PTI (:data:`PTI_CONFIG`) on the W+ fit's pivots, cached: its render vs the input and vs the clean truth."""
    from innout_core.inversion import InversionConfig, InversionResult, invert_video, render_inversion

    path = pti_path(s, video_name)
    fit_wplus(s, video_name)
    with _exclusive(path):
        if path.is_file():
            return path
        G, video, base = _fit_inputs(s, video_name)
        fit = torch.load(wplus_paths(s, video_name)[1], map_location="cpu")
        pivot = InversionResult(ws=fit["ws"], w_canonical=fit["w_canonical"], generator_state=None, losses=[],
                                seconds=0.0)
        cfg = InversionConfig(**{**wplus_config(s), "method": "pti", **PTI_CONFIG})
        t0 = time.perf_counter()
        pti = invert_video(G, video.frames.clamp(-1, 1), video.cameras, cfg, torch.Generator().manual_seed(base + 7),
                           pivot=pivot)
        secs = time.perf_counter() - t0
        rec = render_inversion(G, pti, video.cameras, torch.Generator().manual_seed(base + 2))
        occ = video.occluded()
        frames, clean = video.frames.clamp(-1, 1), video.clean.clamp(-1, 1)
        metrics = {**quality(rec, frames, occ, "recon_"), **quality(rec, clean, occ, "vs_clean_")}
        atomic_write_json(path, {"bench": "ground_truth/pti", "video": video_name, "config": PTI_CONFIG,
                                 "seconds": round(secs, 2), "metrics": metrics})
    return path


def clean_fit_path(s: BenchSettings, video_name: str) -> Path:
    """The cached figures of the W+ fit of a video's *clean* frames (:func:`fit_wplus_clean`)."""
    j, _ = wplus_paths(s, video_name)
    return j.with_name(j.stem + "-clean.json")


def fit_wplus_clean(s: BenchSettings, video_name: str) -> Path:
    """The benchmark's W+ fit (:func:`wplus_config`) of the video's clean frames, as if no occluder were there,
    cached: its render vs the clean truth on the frames that *are* occluded. The ceiling of any inversion's face behind
    the occluder on this generator (the oracle's removal renders the true latents: no inversion reaches it)."""
    from innout_core.inversion import InversionConfig, invert_video

    path = clean_fit_path(s, video_name)
    with _exclusive(path):
        if path.is_file():
            return path
        G, video, base = _fit_inputs(s, video_name)
        clean = video.clean.clamp(-1, 1)
        t0 = time.perf_counter()
        inv = invert_video(G, clean, video.cameras, InversionConfig(**wplus_config(s)),
                           torch.Generator().manual_seed(base + 1))
        secs = time.perf_counter() - t0
        rec = render_ws(G, inv.ws, video.cameras, base + 2)
        metrics = quality(rec, clean, video.occluded(), "vs_clean_")
        atomic_write_json(path, {"bench": "ground_truth/wplus-clean", "video": video_name, "settings": s.model_dump(),
                                 "seconds": round(secs, 2), "metrics": metrics})
    return path


def fit_json(s: BenchSettings, video_name: str) -> Path:
    """The unmasked W+ fit's figures of a video (fitted first when missing)."""
    return Path(fit_wplus(s, video_name))


def fit_wplus(s: BenchSettings, video_name: str) -> str:
    """Fit W+ to one video (cached): writes the latents (.pt) and the W+ baseline figures (JSON); returns the JSON."""
    j_path, pt_path = wplus_paths(s, video_name)
    with _exclusive(pt_path):  # one fit per video, whichever process asks first
        if not (j_path.is_file() and pt_path.is_file()):
            _fit_wplus_unlocked(s, video_name, j_path, pt_path)
    return str(j_path)


def _fit_wplus_unlocked(s: BenchSettings, video_name: str, j_path: Path, pt_path: Path) -> None:
    from innout_core.inversion import InversionConfig, invert_video

    G = _generator(s.generator)
    video = _video(video_name, s.frames, s.seed, s.generator)
    base = _video_seed(s, video_name)
    cfg = InversionConfig(**wplus_config(s))
    t0 = time.perf_counter()
    inv = invert_video(G, video.frames.clamp(-1, 1), video.cameras, cfg, torch.Generator().manual_seed(base + 1))
    secs = time.perf_counter() - t0
    rec = render_ws(G, inv.ws, video.cameras, base + 2)
    occ = video.occluded()
    frames, clean = video.frames.clamp(-1, 1), video.clean.clamp(-1, 1)
    w_avg = G.backbone.mapping.w_avg
    losses = inv.losses
    tail = max(1, len(losses) // 10)
    metrics = {**quality(rec, frames, occ, "recon_"), **quality(rec, clean, occ, "vs_clean_"),
               "face_psnr_vs_clean": _frame_mean(masked_psnr(rec, clean, video.masks), occ),
               "occluder_psnr_vs_clean": _frame_mean(masked_psnr(rec, clean, 1 - video.masks), occ),
               **latent_drift(inv.ws, w_avg, inv.ws, video.ws)}

    out = {"bench": "ground_truth/wplus", "video": video_name, "settings": s.model_dump(),
           "config": cfg.model_dump(mode="json"), "seconds": round(secs, 2), "metrics": metrics,
           "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
           "loss_rel_change_last_10pct": (losses[-tail - 1] - losses[-1]) / losses[-1] if len(losses) > tail else None,
           "curve": curve(losses), "reference": video_reference(G, video, base + 3)}
    with atomic_path(pt_path) as tmp:
        torch.save({"ws": inv.ws.cpu(), "w_canonical": inv.w_canonical.cpu()}, tmp)
    atomic_write_json(j_path, out)


def start_masks(s: BenchSettings, video_name: str, kind: str) -> torch.Tensor:
    """The masks of a masked start: the true ones (``'user'``) or residual masks against the unmasked W+ fit's
    canonical latent (``'auto-residual'``, :func:`innout_core.auto_masks.residual_masks` with its defaults), or those
    after one or two refinement rounds against their masked fit's render (``'auto-refined'``, ``'auto-refined2'``,
    ``refine_masks``).
    [T,1,H,W] in {0,1}, 1 = face."""
    from innout_core import auto_masks as am

    video = _video(video_name, s.frames, s.seed, s.generator)
    if kind == "user":
        return video.masks
    previous = {"auto-refined": "auto-residual", "auto-refined2": "auto-refined"}.get(kind)
    if previous is not None:  # one more refinement round on the previous masks' masked fit (cached; made with them)
        first = start_masks(s, video_name, previous)
        _, pt = fit_wplus_masked(s, video_name, previous)
        ws = torch.load(pt, map_location="cpu")["ws"]
        seed = _video_seed(s, video_name) + (6 if kind == "auto-refined" else 7)
        return am.refine_masks(_generator(s.generator), video.frames.clamp(-1, 1), video.cameras, first,
                               lambda masks: ws, None, torch.Generator().manual_seed(seed))
    if kind != "auto-residual":
        raise BadInputError(f"a masked start needs user, auto-residual or auto-refined[2] masks, got {kind!r}")
    fit_wplus(s, video_name)
    fit = torch.load(wplus_paths(s, video_name)[1], map_location="cpu")
    T = video.frames.shape[0]
    ref = render_ws(_generator(s.generator), fit["w_canonical"].expand(T, -1, -1).contiguous(), video.cameras,
                    _video_seed(s, video_name) + 5)
    return am.residual_masks(video.frames.clamp(-1, 1), ref)


def fit_wplus_masked(s: BenchSettings, video_name: str, kind: str) -> tuple[Path, Path]:
    """The masked W+ fit of a video with ``kind`` masks (:func:`start_masks`), cached: latents (.pt, with the masks)
    and figures (JSON: render vs input on the face region, vs the clean truth on the occluder region and on whole
    occluded frames). Returns (JSON path, .pt path)."""
    from innout_core.inversion import InversionConfig, invert_video

    j_path, pt_path = wplus_paths(s, video_name, kind)
    with _exclusive(pt_path):
        if j_path.is_file() and pt_path.is_file():
            return j_path, pt_path
        G = _generator(s.generator)
        video = _video(video_name, s.frames, s.seed, s.generator)
        masks = start_masks(s, video_name, kind)
        base = _video_seed(s, video_name)
        t0 = time.perf_counter()
        inv = invert_video(G, video.frames.clamp(-1, 1), video.cameras, InversionConfig(**wplus_config(s)),
                           torch.Generator().manual_seed(base + 1), masks=masks)
        secs = time.perf_counter() - t0
        rec = render_ws(G, inv.ws, video.cameras, base + 2)
        occ = video.occluded()
        frames, clean = video.frames.clamp(-1, 1), video.clean.clamp(-1, 1)
        metrics = {**quality(rec, frames, occ, "recon_"), **quality(rec, clean, occ, "vs_clean_"),
                   "face_psnr_vs_input": _frame_mean(masked_psnr(rec, frames, video.masks), occ),
                   "occluder_psnr_vs_clean": _frame_mean(masked_psnr(rec, clean, 1 - video.masks), occ),
                   "mask_iou": _mask_iou(1 - masks, 1 - video.masks)}
        with atomic_path(pt_path) as tmp:
            torch.save({"ws": inv.ws.cpu(), "w_canonical": inv.w_canonical.cpu(), "masks": masks.cpu()}, tmp)
        atomic_write_json(j_path, {"bench": "ground_truth/wplus-masked", "video": video_name, "masks": kind,
                                   "settings": s.model_dump(), "seconds": round(secs, 2), "metrics": metrics,
                                   "curve": curve(inv.losses)})
    return j_path, pt_path


def _auto_masks(G: Any, video: Any, ws: torch.Tensor, spec: RunSpec, joint_cfg: Any, seed: int,
                settings: BenchSettings) -> tuple[torch.Tensor, dict[str, Any]]:
    """Automatic masks for ``spec.masks`` ('auto-residual' or 'auto-share'); returns (masks [T,1,H,W], info)."""
    if spec.masks.startswith("auto-refined"):
        raise BadInputError("auto-refined masks are a masked start's (start=wplus-masked)")
    from innout_core import auto_masks as am

    frames, cams = video.frames.clamp(-1, 1), video.cameras
    t0 = time.perf_counter()
    opts = dict(spec.auto)
    reference = opts.pop("reference", "frame")  # 'canonical': the W+ fit's shared latent, every frame's camera
    if reference == "canonical":
        ws = torch.load(wplus_paths(settings, spec.video)[1], map_location="cpu")["w_canonical"]
        ws = ws.expand(frames.shape[0], -1, -1).contiguous()
    if spec.masks == "auto-residual":
        cfg = am.ResidualMaskConfig(**opts)
        recon = render_ws(G, ws, cams, seed)
        masks = am.residual_masks(frames, recon, cfg)
        info = {"method": "residual", "reference": reference, "config": cfg.model_dump()}
    else:
        scfg = am.ShareMaskConfig(**opts)
        from innout_core.joint import share_masks

        masks, share = share_masks(G, frames, cams, ws, joint_cfg, scfg, seed)
        info = {"method": "share", "reference": reference, "config": scfg.model_dump()}
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["iou_vs_true"] = _mask_iou(1 - masks, 1 - video.masks)
    return masks, info


def execute_run(s: BenchSettings, spec: RunSpec) -> str:
    """One sweep point: stage A (+ stage B), every figure, one JSON (atomic). Returns the JSON path."""
    from innout_core.joint import JointConfig, render_composite_video, run_stage_a
    from innout_core.sr_tuning import SRTuningConfig, run_stage_b

    out_path = run_path(s, spec)
    h = run_hash(s, spec)
    G = _generator(s.generator)
    video = _video(spec.video, s.frames, s.seed, s.generator)
    base = _video_seed(s, spec.video)
    frames, cams = video.frames.clamp(-1, 1), video.cameras
    wplus_ref = None
    masked_fit: dict[str, Any] | None = None
    if spec.start == "oracle":
        ws0 = video.ws.clone()
    elif spec.start == "wplus-masked":
        mj, mpt = fit_wplus_masked(s, spec.video, spec.masks)
        fit = torch.load(mpt, map_location="cpu")
        ws0 = fit["ws"]
        masked_fit = _read_json(mj)
        wplus_ref = (_read_json(fit_json(s, spec.video)) or {}).get("metrics")
    else:
        j_path, pt_path = wplus_paths(s, spec.video)
        if not pt_path.is_file():
            fit_wplus(s, spec.video)
        fit = torch.load(pt_path, map_location="cpu")
        ws0 = fit["ws"] if spec.start == "wplus" else fit["w_canonical"].expand(frames.shape[0], -1, -1).clone()
        wplus_ref = (_read_json(j_path) or {}).get("metrics")
    jd = joint_config_dict(spec)
    cfg = JointConfig.model_validate(jd)
    fit_pti(s, spec.video)  # the PTI baseline of the video (cached; the merge reads it)
    if spec.start == "wplus-masked":
        fit_wplus_clean(s, spec.video)  # the inversion ceiling behind the occluder (cached; the merge reads it)
    secs: dict[str, float] = {}
    masks, mask_info = None, None
    if spec.masks == "user":
        masks = video.masks
    elif spec.start == "wplus-masked":  # the masks the start was fitted with
        masks = fit["masks"]
        rounds = {"auto-refined": 1, "auto-refined2": 2}.get(spec.masks, 0)
        mask_info = {"method": "residual", "reference": "canonical", "refine_rounds": rounds,
                     "iou_vs_true": _mask_iou(1 - masks, 1 - video.masks)}
    elif spec.masks.startswith("auto"):
        masks, mask_info = _auto_masks(G, video, ws0, spec, cfg, base + 5, s)
        secs["masks"] = mask_info["seconds"]
    t0 = time.perf_counter()
    sa = run_stage_a(G, frames, cams, ws0, cfg, torch.Generator().manual_seed(base + 4), masks=masks)
    secs["stage_a"] = round(time.perf_counter() - t0, 2)
    sr_state = None
    if spec.stage_b_epochs > 0:
        bcfg = SRTuningConfig(epochs=spec.stage_b_epochs, lpips=0.0, checkpoint_every=0)
        t0 = time.perf_counter()
        sr_state = run_stage_b(G, sa, frames, cams, bcfg, torch.Generator().manual_seed(base + 6))
        secs["stage_b"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    comp = render_composite_video(G, sa, cams, torch.Generator().manual_seed(base + 11), sr_state=sr_state)
    removed = render_composite_video(G, sa, cams, torch.Generator().manual_seed(base + 11), sr_state=sr_state,
                                     remove_ood=True)
    removed_rule = None
    if masks is not None:
        removed_rule = render_composite_video(G, sa, cams, torch.Generator().manual_seed(base + 11),
                                              sr_state=sr_state, remove_ood=True, removal_masks=masks).image
    metrics = evaluate_composite(video, comp.image, comp.blend_map, removed.image, removed_rule)
    metrics |= latent_drift(sa.ws, G.backbone.mapping.w_avg, ws0, video.ws)
    metrics |= {f"init_{k}": v for k, v in latent_drift(ws0, G.backbone.mapping.w_avg, ws0, video.ws).items()
                if k != "w_to_init"}
    if masks is not None:
        metrics["mask_iou_input"] = _mask_iou(1 - masks, 1 - video.masks)
    secs["render"] = round(time.perf_counter() - t0, 2)
    result = {"bench": "ground_truth/run", "settings_hash": h, "settings": s.model_dump(), "spec": spec.model_dump(),
              "label": spec.label(), "joint_config": cfg.model_dump(mode="json"), "masks_info": mask_info,
              "metrics": metrics, "wplus": wplus_ref, "masked_fit": masked_fit,
              "reference": video_reference(G, video, base + 3),
              "seconds": secs, "curve": curve([r["total"] for r in sa.losses]), "git_head": _git_head(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
              "load_avg_1min_at_end": os.getloadavg()[0]}
    if spec.stage_b_epochs == 0 and spec.steps > 0:
        _save_preview(out_path.with_suffix(".png"), video, comp, removed.image)
    atomic_write_json(out_path, result)
    return str(out_path)


def _git_head() -> str | None:
    """The repository's HEAD commit (the code a run used, up to uncommitted edits), or None."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _save_preview(path: Path, video: Any, comp: Any, removed: torch.Tensor) -> None:
    """One occluded frame: input | composite | OOD share | removal | clean (PNG, for the README)."""
    import numpy as np
    from PIL import Image

    occ = torch.nonzero(video.occluded()).flatten()
    t = int(occ[len(occ) // 2]) if len(occ) else 0
    H = video.frames.shape[-1]
    share = F.interpolate(comp.blend_map[t : t + 1], size=(H, H), mode="nearest")[0].expand(3, -1, -1) * 2 - 1
    strip = torch.cat([video.frames[t], comp.image[t], share, removed[t], video.clean[t]], dim=2).clamp(-1, 1)
    img = ((strip + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format="PNG")


def execute(s: BenchSettings, plan: list[tuple[int, RunSpec]], jobs: int, stop_at: float | None = None,
            log=print) -> dict[str, list[str]]:
    """Run every unfinished point of ``plan`` (in order) on ``jobs`` processes; W+ fits first where needed.

    Returns {"done": paths, "skipped": labels, "failed": "label: error"}. No new job starts after ``stop_at``
    (a ``time.time()``)."""
    todo = [spec for _, spec in plan if not is_done(s, spec)]
    report: dict[str, list[str]] = {"done": [], "failed": [],
                                    "skipped": [f"{sp.video}-{sp.label()}" for _, sp in plan if is_done(s, sp)]}
    if not todo:
        return report
    if jobs <= 1:  # in this process (tests, --jobs 1)
        for spec in todo:
            if stop_at is not None and time.time() >= stop_at:
                break
            name = f"{spec.video}-{spec.label()}"
            log(f"[{_now()}] start {name}")
            try:
                report["done"].append(execute_run(s, spec))
            except Exception as exc:  # noqa: BLE001 - a failed point is recorded, the sweep goes on
                report["failed"].append(f"{name}: {type(exc).__name__}: {exc}")
                log(f"[{_now()}] FAILED {name}: {exc}")
                continue
            log(f"[{_now()}] done {name}")
        return report
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    inflight: dict[Future, tuple[str, Any]] = {}
    wplus_state: dict[str, str] = {}  # video -> "running" | "done" | "failed"
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker) as pool:
        while todo or inflight:
            late = stop_at is not None and time.time() >= stop_at
            while not late and len(inflight) < jobs and todo:
                pick = None
                for spec in todo:
                    if spec.start == "oracle" or wplus_done(s, spec.video):
                        pick = spec
                        break
                    if wplus_state.get(spec.video) is None:
                        wplus_state[spec.video] = "running"
                        inflight[pool.submit(fit_wplus, s, spec.video)] = ("wplus", spec.video)
                        log(f"[{_now()}] start W+ fit {spec.video}")
                        break
                    if wplus_state.get(spec.video) == "failed":
                        todo.remove(spec)
                        report["failed"].append(f"{spec.video}-{spec.label()}: W+ fit failed")
                        break
                else:
                    break  # every remaining run waits for a W+ fit in flight
                if pick is not None:
                    todo.remove(pick)
                    inflight[pool.submit(execute_run, s, pick)] = ("run", pick)
                    log(f"[{_now()}] start {pick.video}-{pick.label()}")
            if late:
                todo.clear()
            if not inflight:
                break
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                kind, what = inflight.pop(fut)
                name = what if kind == "wplus" else f"{what.video}-{what.label()}"
                try:
                    path = fut.result()
                except Exception as exc:  # noqa: BLE001 - a failed point is recorded, the sweep goes on
                    report["failed"].append(f"{name}: {type(exc).__name__}: {exc}")
                    log(f"[{_now()}] FAILED {name}: {exc}")
                    if kind == "wplus":
                        wplus_state[what] = "failed"
                    continue
                if kind == "wplus":
                    wplus_state[what] = "done"
                else:
                    report["done"].append(path)
                log(f"[{_now()}] done {name}")
    return report


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%H:%M:%S")
