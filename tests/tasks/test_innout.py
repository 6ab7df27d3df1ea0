"""Stage A task: the manifest's depth maps reach L_D in image mode; a configured L_D without maps is noted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.eg3d.camera import orbit_labels
from innout_core.errors import StageError
from innout_core.store import atomic_write_json
from tasks.common import VideoJob, load_generator_cached, save_tensors
from tasks.innout import NO_DEPTH_NOTE, load_depth, run_stage_a, stage_a_name


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
