"""Stage ``edits-<key>``: user masks reach the release's removal rule, edits share the reconstruction's samples."""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.eg3d.camera import orbit_labels
from tasks.common import VideoJob, load_generator_cached, save_tensors, stage_generator
from tasks.edits import Branch, load_edits, run_edits_stage


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny-demo job whose face, W+ and stage-A/B outputs are written directly (2 frames, a random OOD field
    with some opacity, a user mask covering the centre)."""
    from innout_core.inversion import InversionResult, render_inversion
    from innout_core.ood import OODField

    tmp = tmp_path_factory.mktemp("edits")
    np.save(tmp / "zero.npy", np.ones((1, 512), np.float32) / np.sqrt(512))
    cfg = PipelineConfig.from_preset("tiny-demo", edit={
        "synthetic": None, "novel_view": {"enabled": False},
        "interfacegan": [{"name": "zero", "path": str(tmp / "zero.npy"), "strength": 0.0}]})
    job = VideoJob(tmp / "run", "run", ManifestVideo(id="v", path=tmp / "v.mp4", masks=tmp / "m.npz"), cfg)
    G = load_generator_cached(cfg, torch.device("cpu"))
    c = orbit_labels(2, 0.3, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), c)
        crops = G.synthesis(ws, c, noise_mode="const", generator=torch.Generator().manual_seed(0)).image.clamp(-1, 1)
    H = crops.shape[-1]
    masks = torch.ones(2, 1, H, H)
    masks[..., H // 4 : 3 * H // 4, H // 4 : 3 * H // 4] = 0
    save_tensors(job.stage_dir("face") / "face.safetensors", {"crops": crops, "cameras": c, "masks": masks})
    ood = OODField(2, 32, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ood.decoder.net[2].bias[0] = 4.0  # some opacity, so removal changes the render
    for slug in ("user-masks", "no-masks"):
        d = job.stage_dir(f"stage-a-{slug}")
        save_tensors(d / "stage_a.safetensors", {**{f"ood.{k}": v for k, v in ood.ood_state().items()},
                                                 "phi": ood.phi.detach(), "ws": ws, "masks": masks})
        (d / "stage_a.json").write_text(json.dumps({"losses": [], "seconds": 0.0, "form": "official",
                                                    "release_sample_order": False, "neural_resolution": 16}))
        save_tensors(job.stage_dir(f"stage-b-{slug}") / "sr.safetensors", G.superresolution.state_dict())
    res = InversionResult(ws=ws, w_canonical=ws[:1], generator_state=None, losses=[], seconds=0.0)
    inv = job.stage_dir("invert-w+")
    save_tensors(inv / "result.safetensors", {"ws": ws, "w_canonical": ws[:1].clone()})
    save_tensors(inv / "renders.safetensors",
                 {"frames": render_inversion(G, res, c, stage_generator(job, "invert-w+/render", torch.device("cpu")))})
    return job, G, c, ws, masks


def _branch(variant: str) -> Branch:
    if not variant:
        return Branch("w+", "", "video", "w+", ("invert-w+", "edits-w+"))
    return Branch("innout", variant, "video", variant, ("invert-w+", f"stage-a-{variant}", f"stage-b-{variant}",
                                                         f"edits-{variant}"))


def test_user_masks_branch_removes_by_the_release_rule(job) -> None:
    from innout_core.joint import render_composite_video
    from tasks.innout import load_stage_a

    job, G, c, ws, masks = job
    rec = run_edits_stage(job, _branch("user-masks"))
    assert rec.info["removal"] == "release rule, user masks"
    out = load_edits(job, _branch("user-masks"))
    sa = load_stage_a(job, "user-masks", "video", torch.device("cpu"))
    gen = lambda: stage_generator(job, "edits-user-masks/recon", torch.device("cpu"))  # noqa: E731
    release = render_composite_video(G, sa, c, gen(), remove_ood=True, removal_masks=masks).image.clamp(-1, 1)
    paper = render_composite_video(G, sa, c, gen(), remove_ood=True).image.clamp(-1, 1)
    torch.testing.assert_close(out["remove_ood"], release, atol=0, rtol=0)
    assert (release - paper).abs().max() > 1e-2
    # the rule's constants are the edit config's named fields (release: 5 x 5 dilation, b x 1.2)
    loose = render_composite_video(G, sa, c, gen(), remove_ood=True, removal_masks=masks, removal_dilation=1,
                                   removal_blend_scale=1.0).image.clamp(-1, 1)
    assert (loose - release).abs().max() > 1e-3
    edit = job.config.edit.model_copy(update={"removal_dilation": 1, "removal_blend_scale": 1.0})
    custom = dataclasses.replace(job, config=job.config.model_copy(update={"edit": edit}))
    run_edits_stage(custom, _branch("user-masks"))  # a changed rule redoes the stage
    torch.testing.assert_close(load_edits(custom, _branch("user-masks"))["remove_ood"], loose, atol=0, rtol=0)
    run_edits_stage(job, _branch("user-masks"))
    # like with like: an edit of strength 0 is the reconstruction, bitwise
    torch.testing.assert_close(out["zero"], out["recon"], atol=0, rtol=0)
    # without user masks the paper's rule: b = 0 on every ray
    rec = run_edits_stage(job, _branch("no-masks"))
    assert rec.info["removal"] == "b = 0 on every ray"
    out = load_edits(job, _branch("no-masks"))
    sa = load_stage_a(job, "no-masks", "video", torch.device("cpu"))
    gen = stage_generator(job, "edits-no-masks/recon", torch.device("cpu"))
    paper = render_composite_video(G, sa, c, gen, remove_ood=True).image.clamp(-1, 1)
    torch.testing.assert_close(out["remove_ood"], paper, atol=0, rtol=0)


def test_baseline_edits_share_the_reconstruction_samples(job) -> None:
    job, *_ = job
    run_edits_stage(job, _branch(""))
    out = load_edits(job, _branch(""))
    torch.testing.assert_close(out["zero"], out["recon"], atol=0, rtol=0)


def test_metrics_note_when_l_d_had_no_depth_map(job) -> None:
    """A stage A that ran the paper's L_D without depth maps puts its note into the Parquet metadata (shown with
    the tables' metric definitions); a stage A without L_D adds nothing."""
    from innout_core.store import StageRecord, atomic_write_json, metrics_path, read_metrics, write_record
    from tasks.innout import NO_DEPTH_NOTE
    from tasks.metrics import run_metrics

    job, *_ = job
    atomic_write_json(job.stage_dir("face") / "status.json", {"indices": [0, 1], "status": ["ok", "ok"]})
    run_edits_stage(job, _branch("user-masks"))
    run_edits_stage(job, _branch(""))
    write_record(job.stage_dir("stage-a-user-masks"), StageRecord(stage="stage-a-user-masks", video=job.id,
                                                                  status="done"))
    run_metrics(job, [_branch("user-masks")])
    _, meta = read_metrics(metrics_path(job.run_dir, job.id))
    assert not any("L_D" in k for k in meta)
    write_record(job.stage_dir("stage-a-user-masks"), StageRecord(stage="stage-a-user-masks", video=job.id,
                                                                  status="done", info={"depth_loss": NO_DEPTH_NOTE}))
    run_metrics(job, [_branch("user-masks"), _branch("")])
    _, meta = read_metrics(metrics_path(job.run_dir, job.id))
    assert NO_DEPTH_NOTE in str(meta)
