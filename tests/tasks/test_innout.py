"""Stage A task: the manifest's depth maps reach L_D in image mode; a configured L_D without maps is noted;
automatic masks use the W+ inversion's canonical latent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.eg3d.camera import orbit_labels
from innout_core.errors import StageError
from innout_core.store import atomic_write_json
from tasks.common import VideoJob, load_generator_cached, load_tensors, save_tensors, stage_generator
from tasks.innout import NO_DEPTH_NOTE, load_depth, load_stage_a, run_stage_a, stage_a_name


def _job(tmp, depth):
    cfg = PipelineConfig.from_preset("tiny-demo", joint={"steps": 1, "checkpoint_every": 0, "neural_resolution": 16,
                                                         "ood_resolution": 8, "weights": {"depth": 0.1}})
    job = VideoJob(tmp / "run", "run", ManifestVideo(id="v", path=tmp / "v.mp4", depth=depth), cfg)
    G = load_generator_cached(cfg, torch.device("cpu"))
    c = orbit_labels(3, 0.3, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0)), c)
        crops = G.synthesis(ws, c, noise_mode="const", generator=torch.Generator().manual_seed(0)).image.clamp(-1, 1)
    save_tensors(job.stage_dir("face") / "face.safetensors", {"crops": crops, "cameras": c})
    atomic_write_json(job.stage_dir("face") / "status.json", {"indices": [2, 3, 4], "status": ["ok"] * 3})
    inv = job.stage_dir("invert-w+-image")
    save_tensors(inv / "result.safetensors", {"ws": ws[:1].clone(), "w_canonical": ws[:1].clone()})
    save_tensors(inv / "renders.safetensors", {"frames": crops[:1].clone()})
    return job


def test_depth_maps_reach_stage_a_in_image_mode(tmp_path) -> None:
    d = np.random.default_rng(0).uniform(1, 2, (6, 40, 40)).astype(np.float32)
    np.savez(tmp_path / "depth.npz", disparity=d)
    job = _job(tmp_path, tmp_path / "depth.npz")
    dm, kind = load_depth(job, torch.device("cpu"), "image")
    assert kind == "disparity" and dm.shape == (1, 1, 40, 40)
    torch.testing.assert_close(dm[0, 0], torch.from_numpy(d[2]))  # source frame 2 = the first selected frame
    rec = run_stage_a(job, "no-masks", "image")
    assert rec.info["depth_loss"] == "on: user disparity maps" and "depth" in rec.info["final_losses"]
    meta = json.loads((job.stage_dir(stage_a_name("no-masks", "image")) / "stage_a.json").read_text())
    assert meta["depth_loss"] == "on: user disparity maps"


def test_no_depth_map_is_noted(tmp_path) -> None:
    job = _job(tmp_path, None)
    rec = run_stage_a(job, "no-masks", "image")
    assert rec.info["depth_loss"] == NO_DEPTH_NOTE and "depth" not in rec.info["final_losses"]


def test_bad_depth_file_names_the_file(tmp_path) -> None:
    np.savez(tmp_path / "depth.npz", depth=np.ones((1, 8, 8), np.float32))  # 1 frame, frame 4 selected
    job = _job(tmp_path, tmp_path / "depth.npz")
    with pytest.raises(StageError, match="depth.npz") as info:
        run_stage_a(job, "no-masks", "image")
    assert "selected" in str(info.value)


def test_auto_masks_stage_then_masked_start_then_stage_a(tmp_path) -> None:
    """auto-masks: the masks stage computes residual masks against the W+ stage's canonical latent (not the per-frame
    render), the masked W+ fit uses exactly those masks, and stage A starts from that fit with them; the records say
    where everything came from, and the results load back."""
    from innout_core.auto_masks import AutoMaskConfig, auto_masks
    from innout_core.inversion import invert_video
    from tasks.inversion import load_inversion, run_invert
    from tasks.masks import run_auto_masks

    cfg = PipelineConfig.from_preset("tiny-demo", joint={"steps": 1, "checkpoint_every": 0, "neural_resolution": 16,
                                                         "ood_resolution": 8}, inversion={"steps": 1})
    job = VideoJob(tmp_path / "run", "run", ManifestVideo(id="v", path=tmp_path / "v.mp4"), cfg)
    G = load_generator_cached(cfg, torch.device("cpu"))
    c = orbit_labels(3, 0.3, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0)), orbit_labels(4, 0.3, 0.1))
        crops = G.synthesis(ws[:3], c, noise_mode="const", generator=torch.Generator().manual_seed(0)).image
    crops = crops.clamp(-1, 1)
    crops[:, :, 40:80, 30:90] = torch.tensor([0.9, -0.6, 0.3]).view(1, 3, 1, 1)  # an occluder the fit did not see
    save_tensors(job.stage_dir("face") / "face.safetensors", {"crops": crops, "cameras": c})
    atomic_write_json(job.stage_dir("face") / "status.json", {"indices": [0, 1, 2], "status": ["ok"] * 3})
    inv = job.stage_dir("invert-w+")
    wc = ws[3:].clone()  # another face: its residual is not the per-frame one
    save_tensors(inv / "result.safetensors", {"ws": ws[:3].clone(), "w_canonical": wc})
    save_tensors(inv / "renders.safetensors", {"frames": crops.clone()})
    mrec = run_auto_masks(job, "video")
    source = "residual vs canonical, refined 2x against the masked fit"  # tiny-demo: two refinement rounds
    assert mrec.info["source"] == source and mrec.outputs["strip"] == "masks.png"
    masks = load_tensors(job.stage_dir("masks-auto") / "masks.safetensors", torch.device("cpu"))["masks"]
    jcfg = cfg.joint_config("auto-masks")
    gen = stage_generator(job, "masks-auto", torch.device("cpu"))

    def masked_fit(m: torch.Tensor) -> torch.Tensor:  # the refinement's fit: the masked start's recipe
        return invert_video(G, crops, c, cfg.inversion_config("w+"),
                            stage_generator(job, "masks-auto/refine", torch.device("cpu")), masks=m).ws

    want, _ = auto_masks(G, crops, c, ws[:3], jcfg.auto_mask, gen, w_canonical=wc, masked_fit=masked_fit)
    frame, _ = auto_masks(G, crops, c, ws[:3], AutoMaskConfig(reference="frame"),
                          stage_generator(job, "masks-auto", torch.device("cpu")))
    assert torch.equal(masks, want) and not torch.equal(masks, frame) and float(masks.min()) == 0
    irec = run_invert(job, "w+", "video", "auto-masks")
    assert irec.stage == "invert-w+-auto-masks" and irec.info["masks"] == "auto-masks"
    fit, _ = load_inversion(job, "w+", "video", torch.device("cpu"), "auto-masks")
    ref = invert_video(G, crops, c, cfg.inversion_config("w+"),
                       stage_generator(job, "invert-w+-auto-masks", torch.device("cpu")), masks=masks)
    assert torch.equal(fit.ws, ref.ws)  # the masked fit, with the stage's masks
    rec = run_stage_a(job, "auto-masks", "video")
    assert rec.info["mask_source"] == source and rec.info["start"] == "invert-w+-auto-masks"
    stage = stage_a_name("auto-masks", "video")
    saved = load_tensors(job.stage_dir(stage) / "stage_a.safetensors", torch.device("cpu"))
    assert torch.equal(saved["masks"], masks) and torch.equal(saved["ws"], fit.ws)  # lr_w 0: the start kept
    sa = load_stage_a(job, "auto-masks", "video", torch.device("cpu"))
    assert sa.mask_source == source and torch.equal(sa.masks, masks)


def test_masked_start_refuses_masks_without_a_face_naming_the_file(tmp_path) -> None:
    """User masks that mark no face pixel (e.g. inverted: 1 = occluder) stop the masked fit with a one-line error that
    names the masks file; the masks stage is skipped when done with the same inputs and redone when they change (the
    W+ settings count only while refinement rounds fit with them)."""
    from innout_core.store import StageRecord, read_record, write_record
    from tasks.inversion import run_invert
    from tasks.masks import run_auto_masks

    cfg = PipelineConfig.from_preset("tiny-demo", inversion={"steps": 1})
    masks_file = tmp_path / "masks.npz"
    masks_file.write_bytes(b"")
    job = VideoJob(tmp_path / "run", "run", ManifestVideo(id="v", path=tmp_path / "v.mp4", masks=masks_file), cfg)
    G = load_generator_cached(cfg, torch.device("cpu"))
    c = orbit_labels(2, 0.3, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), c)
        crops = G.synthesis(ws, c, noise_mode="const", generator=torch.Generator().manual_seed(0)).image.clamp(-1, 1)
    H = crops.shape[-1]
    save_tensors(job.stage_dir("face") / "face.safetensors", {"crops": crops, "cameras": c,
                                                                "masks": torch.zeros(2, 1, H, H)})
    atomic_write_json(job.stage_dir("face") / "status.json", {"indices": [0, 1], "status": ["ok"] * 2})
    with pytest.raises(StageError, match="masks.npz.*no face pixel"):
        run_invert(job, "w+", "video", "user-masks")
    save_tensors(job.stage_dir("invert-w+") / "result.safetensors", {"ws": ws.clone(), "w_canonical": ws[:1].clone()})
    save_tensors(job.stage_dir("invert-w+") / "renders.safetensors", {"frames": crops.clone()})
    write_record(job.stage_dir("invert-w+"), StageRecord(stage="invert-w+", video="v", status="done", output_hash="a"))
    first = run_auto_masks(job, "video")
    again = run_auto_masks(job, "video")
    assert again.finished == first.finished  # done with the same inputs: skipped, not redone
    rec = read_record(job.stage_dir("invert-w+"))
    write_record(job.stage_dir("invert-w+"), rec.model_copy(update={"output_hash": "b"}))  # the W+ fit changed
    redone = run_auto_masks(job, "video")
    assert redone.finished != first.finished

    # the refinement rounds fit with the W+ stage's settings: other settings redo the masks, unless no round runs
    def rerun(**over):
        cfg_over = PipelineConfig.from_preset("tiny-demo", **over)
        return run_auto_masks(VideoJob(tmp_path / "run", "run", job.video, cfg_over), "video")

    refit = rerun(inversion={"steps": 2})
    assert refit.finished != redone.finished
    no_rounds = rerun(inversion={"steps": 1}, joint={"auto_mask": {"refine_rounds": 0}})
    assert rerun(inversion={"steps": 2}, joint={"auto_mask": {"refine_rounds": 0}}).finished == no_rounds.finished
