"""Stages ``invert-<w|w+|pti>[-image]``: W / W+ / PTI inversion of the face crops, resumable, plus their renders;
and ``invert-w+-<user-masks|auto-masks>[-image]``: In-N-Out's occluder-aware start, the W+ fit on the face region
only (the masks of the face stage, or of the automatic-masks stage)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from innout_core.store import StageRecord, atomic_write_text, read_record
from tasks.common import (StageOutput, VideoJob, config_hash, load_generator_cached, load_tensors, progress_writer,
                          resolve_device, run_stage, save_tensors, stage_generator)
from tasks.face import STAGE as FACE
from tasks.face import load_face
from tasks.plan import innout_start, masks_stage

__all__ = ["invert_stage", "load_inversion", "load_start_masks", "run_invert"]


def invert_stage(method: str, mode: str, masked_variant: str | None = None) -> str:
    """Stage name, e.g. ``invert-w+``, ``invert-pti-image`` or (``masked_variant``) ``invert-w+-user-masks``."""
    if masked_variant is not None:
        return innout_start(masked_variant, mode)
    return f"invert-{method}" + ("-image" if mode == "image" else "")


def load_start_masks(job: VideoJob, variant: str, mode: str, device: torch.device) -> torch.Tensor:
    """The masks of a masked variant's start, [T,1,H,W] in {0,1} (1 = face): the face stage's (``user-masks``,
    the manifest's masks through the crop transform) or the automatic-masks stage's (``auto-masks``)."""
    from innout_core.errors import BadInputError
    from innout_core.inversion import validate_masks

    face = load_face(job, device, mode)
    if variant == "auto-masks":
        source = job.stage_dir(masks_stage(mode)) / "masks.safetensors"
        masks = load_tensors(source, device)["masks"]
    else:
        source, masks = job.video.masks, face.get("masks")
        if masks is None:
            raise BadInputError("variant 'user-masks' needs the manifest entry's 'masks:' file", path=job.video.path)
    try:
        return validate_masks(masks, face["crops"])
    except BadInputError as err:  # name the masks file, not the video
        raise BadInputError(err.message, path=source) from None


def run_invert(job: VideoJob, method: str, mode: str, masked_variant: str | None = None) -> StageRecord:
    """Invert with ``method``; writes ``result.safetensors`` (ws [T,14,512], w_canonical [1,14,512]),
    ``generator.safetensors`` (PTI), ``renders.safetensors`` (frames [T,3,H,W] in [-1,1]) and ``losses.json``.
    ``masked_variant`` ('user-masks' | 'auto-masks'): the masked W+ fit (face region only) with that variant's
    masks, In-N-Out's start for the variant. PTI tunes the generator around the ``invert-w+`` stage's latents (its
    pivots), so one W+ fit serves the W+ baseline, PTI and In-N-Out."""
    from innout_core.checkpointing import Checkpointer
    from innout_core.inversion import invert_video, inversion_fingerprint, render_inversion

    cfg = job.config
    icfg = cfg.inversion_config(method)
    stage = invert_stage(method, mode, masked_variant)
    face = read_record(job.stage_dir(FACE))
    inputs = [face.output_hash if face else ""]
    if masked_variant == "auto-masks":
        rec = read_record(job.stage_dir(masks_stage(mode)))
        inputs.append(rec.output_hash if rec else "")
    if method == "pti":
        rec = read_record(job.stage_dir(invert_stage("w+", mode)))
        inputs.append(rec.output_hash if rec else "")

    def body(d: Path) -> StageOutput:
        dev = resolve_device(cfg.device)
        G = load_generator_cached(cfg, dev)
        t = load_face(job, dev, mode)
        masks = None if masked_variant is None else load_start_masks(job, masked_variant, mode, dev)
        pivot = load_inversion(job, "w+", mode, dev)[0] if method == "pti" else None
        gen = stage_generator(job, stage, dev)
        fp = inversion_fingerprint(t["crops"], t["cameras"], icfg, cfg.seed, masks,
                                   None if pivot is None else pivot.ws)
        every = icfg.pti_steps if pivot is not None else icfg.steps
        ckpt = Checkpointer(d / "ckpt", every=max(1, every // 4), fingerprint=fp)
        resumed = max(ckpt.steps(), default=None)
        res = invert_video(G, t["crops"], t["cameras"], icfg, gen, checkpoint=ckpt, progress=progress_writer(d),
                           masks=masks, pivot=pivot)
        outputs = {"result": "result.safetensors", "renders": "renders.safetensors", "losses": "losses.json"}
        save_tensors(d / "result.safetensors", {"ws": res.ws, "w_canonical": res.w_canonical})
        if res.generator_state is not None:
            save_tensors(d / "generator.safetensors", res.generator_state)
            outputs["generator"] = "generator.safetensors"
        renders = render_inversion(G, res, t["cameras"], stage_generator(job, stage + "/render", dev))
        save_tensors(d / "renders.safetensors", {"frames": renders})
        atomic_write_text(d / "losses.json", json.dumps([float(x) for x in res.losses]))
        info = {"resumed_from_step": resumed, "method_seconds": res.seconds,
                "final_loss": float(res.losses[-1]) if res.losses else None}
        if masks is not None:
            info |= {"masks": masked_variant, "face_fraction": float(masks.mean())}
        return StageOutput(outputs, info)

    return run_stage(job, stage, inputs, config_hash(icfg, cfg.generator, str(cfg.checkpoint), cfg.seed), body)


def load_inversion(job: VideoJob, method: str, mode: str, device: torch.device, masked_variant: str | None = None):
    """The saved :class:`~innout_core.inversion.InversionResult` and renders ``[T,3,H,W]`` (``masked_variant``: the
    masked fit of that variant)."""
    from innout_core.inversion import InversionResult

    d = job.stage_dir(invert_stage(method, mode, masked_variant))
    r = load_tensors(d / "result.safetensors", device)
    gs = load_tensors(d / "generator.safetensors", device) if (d / "generator.safetensors").is_file() else None
    result = InversionResult(ws=r["ws"], w_canonical=r["w_canonical"], generator_state=gs, losses=[], seconds=0.0)
    return result, load_tensors(d / "renders.safetensors", device)["frames"]
