"""bench/train_tiny_face.py on a very short run: the loss falls, a split run equals an uninterrupted one, the
export loads with ``load_generator`` and renders what the trained model renders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from innout_core.eg3d.checkpoint import load_generator
from innout_core.errors import BadInputError
from innout_core.synthetic.heads import frontal_camera
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


tf = load_script(ROOT / "bench" / "train_tiny_face.py", "train_tiny_face")
CFG = tf.TrainConfig(n_identities=3, views_per_identity=2, image_resolution=32, neural_resolution=16,
                     render_coarse=8, render_fine=8, steps=6, batch_size=2, threads=1, log_every=1)


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> tuple[object, Path]:
    cache = tmp_path_factory.mktemp("views")
    return tf.render_views(CFG, cache, progress=False), cache


@pytest.fixture(scope="module")
def full_run(views, tmp_path_factory):
    data, _ = views
    work = tmp_path_factory.mktemp("full")
    return tf.train(CFG, work, progress=False, views=data), work


def test_views_are_cached_per_identity(views) -> None:
    data, cache = views
    assert data.images.shape == (3, 2, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.cameras.shape == (3, 2, 25)
    assert torch.allclose(data.cameras[:, 0], frontal_camera().expand(3, -1))  # view 0 is frontal
    files = sorted(cache.glob("views-*/id_*.npz"))
    assert len(files) == 3
    # a second call reads the cache (the same bytes) instead of rendering
    stamp = [f.stat().st_mtime_ns for f in files]
    again = tf.render_views(CFG, cache, progress=False)
    assert torch.equal(again.images, data.images) and [f.stat().st_mtime_ns for f in files] == stamp
    # the background is black and the head is drawn (not an empty or saturated image)
    frac_bg = (data.images.float().mean(2) < 2).float().mean()
    assert 0.2 < float(frac_bg) < 0.9


def test_loss_falls(views, full_run) -> None:
    data, _ = views
    state, _ = full_run
    assert state.step == CFG.steps and len(state.history) == CFG.steps
    start = tf.new_state(CFG)
    before = tf.evaluate(start.G, start.latents, data, CFG)
    after = tf.evaluate(state.G, state.latents, data, CFG)
    assert after["raw"] < 0.8 * before["raw"] and after["sr"] < 0.8 * before["sr"], (before, after)


def test_resume_equals_uninterrupted_run(views, full_run, tmp_path: Path) -> None:
    data, _ = views
    state, _ = full_run
    half = CFG.model_copy(update={"steps": 3})
    tf.train(half, tmp_path, progress=False, views=data)  # stops and checkpoints at step 3
    resumed = tf.train(CFG, tmp_path, progress=False, views=data)  # a new call resumes from the file
    assert resumed.step == CFG.steps
    assert torch.equal(resumed.latents, state.latents)
    ref = state.G.state_dict()
    for name, tensor in resumed.G.state_dict().items():
        assert torch.equal(tensor, ref[name]), name
    assert [h["total"] for h in resumed.history] == [h["total"] for h in state.history]


def test_history_entries_are_means_of_the_steps(views, full_run, tmp_path: Path) -> None:
    data, _ = views
    state, _ = full_run  # log_every=1: one entry per step
    coarse = tf.train(CFG.model_copy(update={"log_every": 4}), tmp_path, progress=False, views=data)
    per_step = [h["total"] for h in state.history]
    assert [h["step"] for h in coarse.history] == [4, 6]  # every 4 steps and at the end
    assert coarse.history[0]["total"] == pytest.approx(sum(per_step[:4]) / 4, rel=1e-9)
    assert coarse.history[1]["total"] == pytest.approx(sum(per_step[4:]) / 2, rel=1e-9)


def test_stop_request_checkpoints_and_returns(views, tmp_path: Path) -> None:
    data, _ = views
    tf.STOP.set()  # what SIGTERM/SIGINT do under main()
    try:
        state = tf.train(CFG, tmp_path, progress=False, views=data)
    finally:
        tf.STOP.clear()
    assert state.step == 0 and (tmp_path / tf.CHECKPOINT).is_file()
    assert tf.load_checkpoint(CFG, tmp_path).step == 0


def test_checkpoint_with_other_settings_is_refused(views, full_run) -> None:
    _, work = full_run
    other = CFG.model_copy(update={"lr": 1e-4})
    with pytest.raises(BadInputError, match="other settings.*lr"):
        tf.load_checkpoint(other, work)


def test_export_loads_and_renders(views, full_run, tmp_path: Path) -> None:
    data, _ = views
    _, work = full_run
    state = tf.load_checkpoint(CFG, work)
    out = tf.export(state, CFG, data, tmp_path / "tiny-face", work)
    weights = out / "model.safetensors"
    assert weights.stat().st_size < 10e6
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["steps_done"] == CFG.steps and prov["settings"]["seed"] == CFG.seed
    assert prov["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert len(prov["loss_history"]) == CFG.steps and "commit" in prov["git"]
    G = load_generator(out)
    assert torch.equal(G.backbone.mapping.w_avg, tf.mean_w(state.G, state.latents))
    c = data.cameras[1, 1:2]
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ws = G.mapping(state.latents[1:2], frontal_camera())
        img = G.synthesis(ws, c, generator=rng, resolution=CFG.neural_resolution).image
        ref = state.G.synthesis(tf._ws(state.G, state.latents[1:2]), c, generator=torch.Generator().manual_seed(0),
                                resolution=CFG.neural_resolution).image
    assert img.shape == (1, 3, 128, 128) and bool(torch.isfinite(img).all())
    assert torch.allclose(img, ref, atol=1e-5)
    assert list(work.glob("preview_step*.png"))


WEIGHTS = ROOT / "innout_core" / "eg3d" / "weights" / "tiny-face"


def test_shipped_weights_load_with_their_hashes_and_draw_a_head() -> None:
    weights = WEIGHTS / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    config = json.loads((WEIGHTS / "config.json").read_text())
    prov = json.loads((WEIGHTS / "provenance.json").read_text())
    assert sha == config["weights"]["sha256"] == prov["weights_sha256"]
    assert weights.stat().st_size < 10e6
    assert prov["steps_done"] > 0 and prov["loss_history"][-1]["total"] < 0.5 * prov["loss_history"][0]["total"]
    G = load_generator(WEIGHTS)
    ws = G.backbone.mapping.w_avg.expand(1, G.num_ws, -1)
    with torch.no_grad():
        img = G.synthesis(ws, frontal_camera(), generator=torch.Generator().manual_seed(0)).image
    # the mean latent draws a head on the black background: an opaque, skin-bright centre and black corners
    centre = float(img[..., 48:80, 48:80].mean())
    corners = float(torch.stack([img[..., :12, :12], img[..., :12, -12:]]).mean())
    assert corners < -0.85 and centre > corners + 1.0, (centre, corners)


def test_provenance_dirty_flag_follows_the_training_code_only(tmp_path: Path) -> None:
    """dirty = a tracked file of the training code differs from HEAD; the exported weights folder (rewritten by the
    export itself) and untracked files do not count."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    files = ["bench/train_tiny_face.py", "innout_core/synthetic/heads.py", "innout_core/eg3d/configs.py",
             "innout_core/eg3d/weights/tiny-face/model.safetensors", "innout_core/other.py"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("v1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = tf._git_commit(tmp_path)
    assert clean["dirty"] is False and len(clean["commit"]) == 40
    (tmp_path / files[3]).write_text("new weights\n")  # what the export writes
    (tmp_path / files[4]).write_text("v2\n")  # code training does not use
    (tmp_path / "innout_core/eg3d/untracked.py").write_text("x\n")
    assert tf._git_commit(tmp_path)["dirty"] is False
    for f in files[:3]:
        (tmp_path / f).write_text("v2\n")
        assert tf._git_commit(tmp_path)["dirty"] is True, f
        (tmp_path / f).write_text("v1\n")
    assert tf._git_commit(tmp_path)["dirty"] is False
