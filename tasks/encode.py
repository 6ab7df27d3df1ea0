"""Stage ``encode``: result videos (H.264 mp4 at the source frame rate) for every finished video-mode branch.

Names (relative to ``encode/``), read by the report:

- ``<key>.mp4`` reconstruction, ``<key>-<edit>.mp4`` each edit (incl. ``remove_ood`` and ``novel_view``),
  ``compare-<key>.mp4`` (input | reconstruction | first edit, labelled);
- ``blend-<key>.mp4``: In-N-Out's OOD blend weight per pixel (white = OOD), nearest-upsampled to the crop size;
- ``compare-methods.mp4``: input | W+ | PTI | In-N-Out | In-N-Out's OOD removal | clean truth (the In-N-Out
  variant shown: user masks, else automatic masks, else the first configured; the clean column for ground-truth
  videos), when those branches exist;
- ``truth-mask.mp4`` / ``truth-clean.mp4``: the manifest's true occluder mask (white = occluder) and clean video,
  for ground-truth data.

``<key>`` is the branch key with ``+`` spelled ``plus`` (``wplus``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from innout_core.store import StageRecord, hash_file, read_record
from tasks.common import StageOutput, VideoJob, config_hash, run_stage
from tasks.edits import edits_stage, load_blend_map, load_edits
from tasks.frames import load_frames
from tasks.plan import Branch

__all__ = ["STAGE", "media_name", "run_encode"]

STAGE = "encode"
_COMPARE_METHODS = (("w+", "W+"), ("pti", "PTI"), ("innout", "In-N-Out"))
#: Which In-N-Out variant ``compare-methods.mp4`` shows, in order of preference (the occluder-aware ones first).
_COMPARE_VARIANTS = ("user-masks", "auto-masks")


def media_name(branch_key: str) -> str:
    """File-name form of a branch key (``w+`` -> ``wplus``)."""
    return branch_key.replace("+", "plus")


def _grey(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[T,1,r,r] in [0,1] -> [T,3,H,W] in [-1,1] (nearest upsampling keeps the map's pixels visible)."""
    up = F.interpolate(maps.float().clamp(0, 1), size=size, mode="nearest")
    return up.expand(-1, 3, -1, -1) * 2 - 1


def compare_branch(branches: list[Branch]) -> Branch | None:
    """The In-N-Out branch ``compare-methods.mp4`` shows: user masks, else automatic masks, else the first."""
    inn = [b for b in branches if b.method == "innout"]
    for v in _COMPARE_VARIANTS:
        for b in inn:
            if b.variant == v:
                return b
    return inn[0] if inn else None


def run_encode(job: VideoJob, branches: list[Branch]) -> StageRecord:
    """Encode the result videos of ``branches`` into ``encode/``."""
    from innout_core.video import EncodeConfig, encode_side_by_side, encode_video

    vids = [b for b in branches if b.mode == "video"]
    recs = [read_record(job.stage_dir(s)) for s in ["face", *(edits_stage(b) for b in vids)]]
    truth = [p for p in (job.video.masks, job.video.clean) if p is not None]
    inputs = [r.output_hash if r else "" for r in recs] + [b.key for b in vids] + [hash_file(p) for p in truth]
    enc = EncodeConfig(preset="veryfast")

    def body(d: Path) -> StageOutput:
        from tasks.face import load_face

        _, _, fps = load_frames(job)
        face = load_face(job, torch.device("cpu"))
        crops = face["crops"]
        size = (crops.shape[-2], crops.shape[-1])
        outputs: dict[str, str] = {}
        recons: dict[str, torch.Tensor] = {}
        removals: dict[str, torch.Tensor] = {}
        for b in vids:
            out = load_edits(job, b)
            name = media_name(b.key)
            recons[b.key] = out["recon"]
            if "remove_ood" in out:
                removals[b.key] = out["remove_ood"]
            outputs[name] = encode_video(out["recon"], d / f"{name}.mp4", fps, enc).name
            cols, labels = [crops, out["recon"]], ["input", b.key]
            for edit, frames in sorted(out.items()):
                if edit == "recon":
                    continue
                outputs[f"{name}-{edit}"] = encode_video(frames, d / f"{name}-{edit}.mp4", fps, enc).name
                if frames.shape[0] == crops.shape[0] and len(cols) == 2:
                    cols.append(frames)
                    labels.append(edit)
            outputs[f"compare-{name}"] = encode_side_by_side(cols, d / f"compare-{name}.mp4", fps, labels, enc).name
            if b.method == "innout" and (blend := load_blend_map(job, b)) is not None:
                outputs[f"blend-{name}"] = encode_video(_grey(blend, size), d / f"blend-{name}.mp4", fps, enc).name
        cols, labels = [crops], ["input"]
        shown = compare_branch(vids)
        for method, label in _COMPARE_METHODS:
            b = shown if method == "innout" else next((b for b in vids if b.method == method), None)
            if b is not None and recons[b.key].shape == crops.shape:
                cols.append(recons[b.key])
                labels.append(label if method != "innout" else f"{label} ({b.key})")
        if shown is not None and (removed := removals.get(shown.key)) is not None and removed.shape == crops.shape:
            cols.append(removed)
            labels.append("removal")
        if "clean" in face:
            cols.append(face["clean"])
            labels.append("clean (truth)")
        if len(cols) > 1:
            outputs["compare-methods"] = encode_side_by_side(cols, d / "compare-methods.mp4", fps, labels, enc).name
        if "masks" in face:  # 1 = face; shown white where the occluder is
            outputs["truth-mask"] = encode_video(_grey(1 - face["masks"], size), d / "truth-mask.mp4", fps, enc).name
        if "clean" in face:
            outputs["truth-clean"] = encode_video(face["clean"], d / "truth-clean.mp4", fps, enc).name
        return StageOutput(outputs, {"videos": len(outputs)})

    return run_stage(job, STAGE, inputs, config_hash(enc), body)
