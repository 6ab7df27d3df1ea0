"""Stage ``masks-auto[-image]``: automatic OOD masks of a video (``innout_core.auto_masks``), the masks of the
``auto-masks`` variant's masked W+ fit and stage A.

Evidence against a render that cannot paint the occluder: by default the W+ fit's shared canonical latent at every
frame's camera (``joint.auto_mask``: source, reference, thresholds); with ``refine_rounds`` the masks are then
refined against W+ fits on their face region (the inversion stage's W+ settings; one fit per round). Writes
``masks.safetensors`` (``masks`` [T,1,H,W] in {0,1}, 1 = face), ``masks.json`` (what they came from, the OOD
fraction per frame, and their IoU with the manifest's masks when the entry has some) and ``masks.png`` (a strip of
frames with the OOD region tinted, for the report).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from innout_core.store import StageRecord, atomic_path, atomic_write_text, read_record
from tasks.common import (StageOutput, VideoJob, config_hash, load_generator_cached, resolve_device, run_stage,
                          save_tensors, stage_generator)
from tasks.face import STAGE as FACE
from tasks.face import load_face
from tasks.inversion import invert_stage, load_inversion
from tasks.plan import masks_stage

__all__ = ["mask_strip", "run_auto_masks"]

#: Frames shown in ``masks.png``.
STRIP_FRAMES = 8


def mask_strip(frames: torch.Tensor, masks: torch.Tensor, n: int = STRIP_FRAMES, size: int = 128) -> torch.Tensor:
    """Up to ``n`` evenly spaced frames side by side with the OOD region (mask 0) tinted red.

    Args:
        frames: [T,3,H,W] in [-1,1]. masks: [T,1,H,W] in {0,1}, 1 = face.
    Returns:
        [size, k*size, 3] uint8 (k = min(n, T)).
    """
    import torch.nn.functional as F

    idx = torch.linspace(0, frames.shape[0] - 1, min(n, frames.shape[0])).round().long()
    img = (frames[idx].clamp(-1, 1) + 1) / 2
    ood = (1 - masks[idx]).clamp(0, 1)
    red = torch.tensor([1.0, 0.1, 0.1]).view(1, 3, 1, 1)
    tinted = img * (1 - 0.55 * ood) + red * 0.55 * ood
    tinted = F.interpolate(tinted, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (torch.cat(list(tinted), dim=2).permute(1, 2, 0).clamp(0, 1) * 255).round().byte()


def run_auto_masks(job: VideoJob, mode: str) -> StageRecord:
    """Automatic masks of the video (or its first frame in image mode) from the face crops and the W+ fit."""
    from innout_core.auto_masks import auto_masks
    from innout_core.inversion import invert_video
    from innout_core.joint import first_pass_share, mask_iou

    cfg = job.config
    jcfg = cfg.joint_config("auto-masks")
    refine = jcfg.auto_mask.source == "residual" and jcfg.auto_mask.refine_rounds > 0
    icfg = cfg.inversion_config("w+")
    stage = masks_stage(mode)
    inputs = [(read_record(job.stage_dir(s)) or StageRecord(stage=s, video=job.id)).output_hash
              for s in (FACE, invert_stage("w+", mode))]

    def body(d: Path) -> StageOutput:
        import numpy as np
        from PIL import Image

        dev = resolve_device(cfg.device)
        G = load_generator_cached(cfg, dev)
        t = load_face(job, dev, mode)
        inv, _ = load_inversion(job, "w+", mode, dev)
        share_pass = functools.partial(first_pass_share, G, t["crops"], t["cameras"], jcfg)

        def masked_fit(masks: torch.Tensor) -> torch.Tensor:  # refinement rounds: the masked start's own recipe
            return invert_video(G, t["crops"], t["cameras"], icfg, stage_generator(job, stage + "/refine", dev),
                                masks=masks).ws

        masks, source = auto_masks(G, t["crops"], t["cameras"], inv.ws, jcfg.auto_mask,
                                   stage_generator(job, stage, dev), w_canonical=inv.w_canonical,
                                   share_pass=share_pass, masked_fit=masked_fit)
        masks = masks.float().cpu()
        save_tensors(d / "masks.safetensors", {"masks": masks})
        meta = {"source": source, "ood_fraction": [round(float(x), 5) for x in (1 - masks).flatten(1).mean(1)]}
        if "masks" in t:  # the manifest's masks (ground truth on synthetic data): how close the automatic ones are
            meta["iou_vs_manifest_masks"] = mask_iou(1 - masks, 1 - t["masks"].cpu())
        atomic_write_text(d / "masks.json", json.dumps(meta))
        with atomic_path(d / "masks.png") as tmp:
            Image.fromarray(np.ascontiguousarray(mask_strip(t["crops"].cpu(), masks).numpy())).save(tmp, format="PNG")
        info = {"source": source, "ood_fraction_mean": float((1 - masks).mean())}
        if "iou_vs_manifest_masks" in meta:
            info["iou_vs_manifest_masks"] = meta["iou_vs_manifest_masks"]
        return StageOutput({"masks": "masks.safetensors", "meta": "masks.json", "strip": "masks.png"}, info)

    return run_stage(job, stage, inputs, config_hash(jcfg.auto_mask, jcfg if jcfg.auto_mask.source == "share" else None,
                                                       cfg.generator, str(cfg.checkpoint), cfg.seed,
                                                       *([icfg] if refine else [])), body)
