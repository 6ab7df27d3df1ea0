"""Stages ``invert-<w|w+|pti>[-image]``: W / W+ / PTI inversion of the face crops, resumable, plus their renders."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from innout_core.store import StageRecord, atomic_write_text, read_record
from tasks.common import (StageOutput, VideoJob, config_hash, load_generator_cached, load_tensors, progress_writer,
                          resolve_device, run_stage, save_tensors, stage_generator)
from tasks.face import STAGE as FACE
from tasks.face import load_face

__all__ = ["invert_stage", "load_inversion", "run_invert"]


def invert_stage(method: str, mode: str) -> str:
    """Stage name, e.g. ``invert-w+`` or ``invert-pti-image``."""
    return f"invert-{method}" + ("-image" if mode == "image" else "")


def run_invert(job: VideoJob, method: str, mode: str) -> StageRecord:
    """Invert with ``method``; writes ``result.safetensors`` (ws [T,14,512], w_canonical [1,14,512]),
    ``generator.safetensors`` (PTI), ``renders.safetensors`` (frames [T,3,H,W] in [-1,1]) and ``losses.json``."""
    from innout_core.checkpointing import Checkpointer
    from innout_core.inversion import invert_video, inversion_fingerprint, render_inversion

    cfg = job.config
    icfg = cfg.inversion_config(method)
    stage = invert_stage(method, mode)
    face = read_record(job.stage_dir(FACE))

    def body(d: Path) -> StageOutput:
        dev = resolve_device(cfg.device)
        G = load_generator_cached(cfg, dev)
        t = load_face(job, dev, mode)
        gen = stage_generator(job, stage, dev)
        fp = inversion_fingerprint(t["crops"], t["cameras"], icfg, cfg.seed)
        ckpt = Checkpointer(d / "ckpt", every=max(1, icfg.steps // 4), fingerprint=fp)
        resumed = max(ckpt.steps(), default=None)
        res = invert_video(G, t["crops"], t["cameras"], icfg, gen, checkpoint=ckpt, progress=progress_writer(d))
        outputs = {"result": "result.safetensors", "renders": "renders.safetensors", "losses": "losses.json"}
        save_tensors(d / "result.safetensors", {"ws": res.ws, "w_canonical": res.w_canonical})
        if res.generator_state is not None:
            save_tensors(d / "generator.safetensors", res.generator_state)
            outputs["generator"] = "generator.safetensors"
        renders = render_inversion(G, res, t["cameras"], stage_generator(job, stage + "/render", dev))
        save_tensors(d / "renders.safetensors", {"frames": renders})
        atomic_write_text(d / "losses.json", json.dumps([float(x) for x in res.losses]))
        return StageOutput(outputs, {"resumed_from_step": resumed, "method_seconds": res.seconds, "final_loss": float(res.losses[-1])
                                     if res.losses else None})

    return run_stage(job, stage, [face.output_hash if face else ""],
                     config_hash(icfg, cfg.generator, str(cfg.checkpoint), cfg.seed), body)


def load_inversion(job: VideoJob, method: str, mode: str, device: torch.device):
    """The saved :class:`~innout_core.inversion.InversionResult` and renders ``[T,3,H,W]``."""
    from innout_core.inversion import InversionResult

    d = job.stage_dir(invert_stage(method, mode))
    r = load_tensors(d / "result.safetensors", device)
    gs = load_tensors(d / "generator.safetensors", device) if (d / "generator.safetensors").is_file() else None
    result = InversionResult(ws=r["ws"], w_canonical=r["w_canonical"], generator_state=gs, losses=[], seconds=0.0)
    return result, load_tensors(d / "renders.safetensors", device)["frames"]
