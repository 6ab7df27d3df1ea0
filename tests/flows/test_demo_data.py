"""flows.demo.build_demo_dataset: the demo's videos follow its generator (tiny: box/sphere/bar, tiny-face: hand,
glasses, microphone on held-out identities), and the files equal the ground-truth renders."""

from __future__ import annotations

import numpy as np
import torch
import yaml

from flows.demo import build_demo_dataset, demo_generator
from innout_core.eg3d.configs import build_generator
from innout_core.synthetic import HELD_OUT_SEED, benchmark_videos, make_ground_truth_video


def _manifest(path):
    return yaml.safe_load(path.read_text())


def test_tiny_face_demo_videos(tmp_path):
    manifest = build_demo_dataset(tmp_path, n_videos=4, n_frames=2, generator="tiny-face")
    doc = _manifest(manifest)
    assert [v["id"] for v in doc["videos"]] == ["gt00-hand", "gt01-glasses", "gt02-microphone", "gt03-hand"]
    data = tmp_path / "data"
    for v in doc["videos"]:
        for key in ("path", "cameras", "masks", "clean"):
            assert (data / v[key]).is_file(), (v["id"], key)
    # the files are the ground-truth render of the held-out identity (video 3: the next seed's hand)
    G = build_generator("tiny-face").requires_grad_(False)
    cfg = benchmark_videos(2, 0, "tiny-face")[1]
    assert cfg.seed == HELD_OUT_SEED + 1
    truth = make_ground_truth_video(G, cfg)
    np.testing.assert_array_equal(np.load(data / "gt01-glasses" / "ws.npy"), truth.ws.numpy())
    np.testing.assert_array_equal(np.load(data / "gt01-glasses" / "masks.npz")["masks"],
                                  truth.masks.numpy().astype(np.uint8))
    ws0, ws3 = np.load(data / "gt00-hand" / "ws.npy"), np.load(data / "gt03-hand" / "ws.npy")
    assert not np.array_equal(ws0, ws3)  # another identity for the second round
    # a rebuild keeps what is there (masks.npz is written last) and rewrites the same manifest
    stamp = (data / "gt00-hand" / "masks.npz").stat().st_mtime_ns
    assert _manifest(build_demo_dataset(tmp_path, n_videos=4, n_frames=2, generator="tiny-face")) == doc
    assert (data / "gt00-hand" / "masks.npz").stat().st_mtime_ns == stamp


def test_tiny_demo_videos_as_before(tmp_path):
    manifest = build_demo_dataset(tmp_path, n_videos=2, n_frames=2, seed=5, generator="tiny")
    assert [v["id"] for v in _manifest(manifest)["videos"]] == ["gt00-box", "gt01-sphere"]
    G = build_generator("tiny").requires_grad_(False)
    cfg = benchmark_videos(2, 5)[1].model_copy(update={"seed": 6})  # video i: seed + i, its own RNG
    truth = make_ground_truth_video(G, cfg, torch.Generator().manual_seed(6))
    np.testing.assert_array_equal(np.load(tmp_path / "data" / "gt01-sphere" / "ws.npy"), truth.ws.numpy())


def test_default_demo_renders_the_shipped_tiny_face_suite(tmp_path):
    """Without a generator named, the demo is the documented one (README: the shipped `tiny-face` generator on
    held-out heads): its first video is the tiny-face suite's hand, the same files as naming tiny-face."""
    assert demo_generator() == "tiny-face"
    default = _manifest(build_demo_dataset(tmp_path / "default", n_videos=1, n_frames=2))
    named = _manifest(build_demo_dataset(tmp_path / "named", n_videos=1, n_frames=2, generator="tiny-face"))
    assert [v["id"] for v in default["videos"]] == ["gt00-hand"] and default == named
    np.testing.assert_array_equal(np.load(tmp_path / "default" / "data" / "gt00-hand" / "ws.npy"),
                                  np.load(tmp_path / "named" / "data" / "gt00-hand" / "ws.npy"))
