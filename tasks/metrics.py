"""Stage ``metrics``: per-frame LPIPS / SSIM / PSNR / identity for every finished branch, and identity after each
edit, written to ``runs/<run>/videos/<video>/metrics.parquet`` (schema ``innout_core.store.METRICS_SCHEMA``).

Ground-truth videos (manifest ``clean:``) also get ``psnr_clean``: the reconstruction, and the OOD removal, against
the clean frame without the occluder -- what a user of occluder removal cares about -- and ``occluded`` per frame
from the manifest's masks.

A metric whose weights are missing (LPIPS backbone, ArcFace model pack) is null with the reason, never invented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from innout_core.errors import MissingWeightsError
from innout_core.store import StageRecord, metrics_path, read_record, write_metrics
from tasks.common import StageOutput, VideoJob, config_hash, read_json, run_stage
from tasks.edits import edits_stage, load_edits
from tasks.plan import Branch

__all__ = ["OCCLUDED_FRACTION", "STAGE", "branch_seconds", "run_metrics"]

STAGE = "metrics"
#: A frame counts as occluded when the manifest's masks mark at least this fraction of its crop as occluder.
OCCLUDED_FRACTION = 0.01


def branch_seconds(job: VideoJob, branch: Branch) -> float:
    """Wall time of the method for this video: its inversion / stage A / stage B records (not edits)."""
    total = 0.0
    for s in branch.stages:
        if s.startswith("edits-"):
            continue
        rec = read_record(job.stage_dir(s))
        total += float(rec.seconds or 0.0) if rec else 0.0
    return total


def run_metrics(job: VideoJob, branches: list[Branch]) -> StageRecord:
    """Compute and write the metrics of ``branches`` (those that finished)."""
    from innout_core import metrics as M

    cfg = job.config
    mset = cfg.metrics
    recs = [read_record(job.stage_dir(s)) for s in ["face", *(edits_stage(b) for b in branches)]]
    inputs = [r.output_hash if r else "" for r in recs] + [b.key for b in branches]

    def body(d: Path) -> StageOutput:
        from tasks.face import load_face

        reasons: dict[str, str] = {}
        lpips_model = embedder = None
        try:
            from innout_core.weights import load_lpips_model

            lpips_model = load_lpips_model(mset.lpips_net)
        except MissingWeightsError as err:
            reasons["lpips"] = str(err)
        if mset.identity:
            try:
                embedder = M.load_embedder("arcface", mset.insightface_pack)
            except MissingWeightsError as err:
                reasons["id_sim"] = str(err)
        else:
            reasons["id_sim"] = "identity metric disabled in the config (metrics.identity: false)"
        face_rows = read_json(job.stage_dir("face") / "status.json")
        indices = face_rows["indices"]
        face_status = face_rows.get("status") or [None] * len(indices)  # ok | predicted | filled | no_face
        rows: list[dict[str, Any]] = []
        defs: dict[str, str] = dict(M.METRIC_DEFINITIONS)
        for b in branches:
            face = load_face(job, torch.device("cpu"), b.mode)
            target, clean = face["crops"], face.get("clean")
            occluded = (None if "masks" not in face else
                        [bool(x) for x in (1 - face["masks"]).flatten(1).mean(1) >= OCCLUDED_FRACTION])
            out = load_edits(job, b)
            fm = M.reconstruction_metrics(out["recon"], target, lpips_model, embedder, mset.lpips_net, reasons)
            defs = fm.definitions
            seconds = branch_seconds(job, b)
            base = dict(run=job.run_name, video=job.id, method=b.method, variant=b.variant, mode=b.mode,
                        seconds=seconds, id_sim_edit=None)
            vs_clean = None if clean is None else M.psnr(out["recon"], clean).tolist()
            for i, r in enumerate(fm.rows()):
                rows.append(dict(base, frame=int(indices[i]), edit="", face_status=face_status[i], **r,
                                 psnr_clean=None if vs_clean is None else vs_clean[i],
                                 occluded=None if occluded is None else occluded[i]))
            for name, edited in sorted(out.items()):
                if name == "recon" or edited.shape[0] != out["recon"].shape[0]:
                    continue  # novel views have no per-frame counterpart
                ids = M.identity_after_edit(out["recon"], edited, embedder) if embedder is not None else None
                removed_vs_clean = M.psnr(edited, clean).tolist() if name == "remove_ood" and clean is not None \
                    else None
                why = "edit: no ground truth for LPIPS/SSIM/PSNR/ID" + (
                    "" if removed_vs_clean is None else " (psnr_clean: the removal vs the clean truth)") + (
                    "" if ids is not None else f"; id_sim_edit: {reasons.get('id_sim')}")
                for i in range(edited.shape[0]):
                    rows.append(dict(base, frame=int(indices[i]), edit=name, face_status=face_status[i],
                                     lpips=None, ssim=None, psnr=None,
                                     id_sim=None, id_sim_edit=None if ids is None else float(ids[i]), reason=why,
                                     psnr_clean=None if removed_vs_clean is None else removed_vs_clean[i],
                                     occluded=None if occluded is None else occluded[i]))
        stage_as = sorted({s for b in branches for s in b.stages if s.startswith("stage-a-")})
        off = [r.info["depth_loss"] for s in stage_as if (r := read_record(job.stage_dir(s))) is not None
               and str(r.info.get("depth_loss", "")).startswith("L_D")]  # the paper's L_D had no depth map
        if off:
            defs = {**defs, "L_D (single image)": off[0]}
        path = write_metrics(metrics_path(job.run_dir, job.id), rows, defs)
        return StageOutput({"parquet": str(Path("..") / path.name)}, {"rows": len(rows)})

    return run_stage(job, STAGE, inputs, config_hash(mset), body)
