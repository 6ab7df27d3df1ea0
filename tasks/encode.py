"""Stage ``encode``: result videos (H.264 mp4 at the source frame rate) for every finished video-mode branch:
``<key>.mp4`` (reconstruction), ``<key>-<edit>.mp4`` and ``compare-<key>.mp4`` (input | reconstruction | first
edit, labelled)."""

from __future__ import annotations

from pathlib import Path

from flows.plan import Branch
from innout_core.store import StageRecord, read_record
from tasks.common import StageOutput, VideoJob, config_hash, run_stage
from tasks.edits import edits_stage, load_edits
from tasks.frames import load_frames

__all__ = ["STAGE", "run_encode"]

STAGE = "encode"


def run_encode(job: VideoJob, branches: list[Branch]) -> StageRecord:
    """Encode the result videos of ``branches`` into ``encode/``."""
    from innout_core.video import EncodeConfig, encode_side_by_side, encode_video

    vids = [b for b in branches if b.mode == "video"]
    recs = [read_record(job.stage_dir(s)) for s in ["face", *(edits_stage(b) for b in vids)]]
    inputs = [r.output_hash if r else "" for r in recs] + [b.key for b in vids]
    enc = EncodeConfig(preset="veryfast")

    def body(d: Path) -> StageOutput:
        import torch

        from tasks.face import load_face

        _, _, fps = load_frames(job)
        crops = load_face(job, torch.device("cpu"))["crops"]
        outputs: dict[str, str] = {}
        for b in vids:
            out = load_edits(job, b)
            name = b.key.replace("+", "plus")
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
        return StageOutput(outputs, {"videos": len(outputs)})

    return run_stage(job, STAGE, inputs, config_hash(enc), body)
