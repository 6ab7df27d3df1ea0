"""bench/ground_truth.py --generator: tiny-face has its own videos, tag and outputs; every tiny result keeps its
settings hash and file name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
TINY_RESULTS = REPO / "bench" / "results" / "ground_truth" / "f8-s0"


@pytest.fixture(scope="module")
def gt():
    return load_script(REPO / "bench" / "ground_truth.py", "bench_ground_truth_generator")


def test_tiny_runs_keep_their_hashes_and_names(gt):
    runs = sorted((TINY_RESULTS / "runs").glob("*.json"))
    assert len(runs) >= 28  # the committed sweep
    for path in runs:
        d = json.loads(path.read_text())
        s = gt.BenchSettings(**d["settings"])  # written before the option: no generator key = tiny
        spec = gt.RunSpec(**d["spec"])
        assert s.generator == "tiny" and s.tag == "f8-s0"
        assert gt.run_hash(s, spec) == d["settings_hash"], path.name
        assert gt.run_path(s, spec) == path
    s = gt.BenchSettings()
    for video in gt.VIDEOS:
        assert gt.wplus_paths(s, video)[0].is_file(), video  # the cached W+ fits are found under their old names


def test_tiny_face_settings_plan_and_paths(gt):
    tiny, face = gt.BenchSettings(), gt.BenchSettings(generator="tiny-face")
    assert face.tag == "f8-s0-tiny-face" and gt.BenchSettings(generator="tiny-face", quick=True).tag == \
        "quick-f8-s0-tiny-face"
    assert gt.videos(tiny) == gt.VIDEOS == ("box", "sphere", "bar", "static")
    assert gt.videos(face) == ("hand", "bar", "glasses", "microphone", "static")
    plan = gt.sweep_plan(face)
    assert {sp.video for _, sp in plan} == set(gt.videos(face))
    assert len(plan) == len(gt.sweep_plan(tiny)) // 4 * 5  # the same points over five videos
    spec = gt.RunSpec(video="bar", start="oracle", steps=10)
    assert gt.run_hash(face, spec) != gt.run_hash(tiny, spec)
    assert gt.run_path(face, spec).parent.parent.name == "f8-s0-tiny-face"
    assert gt.wplus_paths(face, "bar")[0].name != gt.wplus_paths(tiny, "bar")[0].name
    assert gt._video_seed(face, "hand") == 0 and gt._video_seed(face, "static") == 40
    assert [sp.video for _, sp in gt.sweep_plan(gt.BenchSettings(generator="tiny-face", quick=True))] == ["hand"] * 5


def test_tiny_face_results_follow_the_weights_and_videos(gt, monkeypatch, tmp_path):
    import innout_core.synthetic as syn

    face = gt.BenchSettings(generator="tiny-face")
    spec = gt.RunSpec(video="hand", start="oracle", steps=10)
    before, wplus = gt.run_hash(face, spec), gt.wplus_paths(face, "hand")[0].name
    assert "generator_fingerprint" not in gt.settings_dump(gt.BenchSettings(), set())  # tiny: as before the option
    fp = gt.generator_fingerprint("tiny-face", 8, 0)
    assert len(fp) == 16 and int(fp, 16) >= 0  # a short hex digest
    # a function of the suite's settings: other frames or another seed are other videos, another fingerprint
    assert len({fp, gt.generator_fingerprint("tiny-face", 4, 0), gt.generator_fingerprint("tiny-face", 8, 1)}) == 3
    # another occluder in the suite (or re-exported weights) is another fingerprint: the runs are redone
    real = syn.ground_truth_suite

    def changed(n_frames, seed, generator="tiny"):
        suite = real(n_frames, seed, generator)
        if generator == "tiny-face":
            suite["hand"] = suite["hand"].model_copy(update={"occluder": syn.OccluderConfig(kind="hand", size=0.06)})
        return suite

    monkeypatch.setattr(syn, "ground_truth_suite", changed)
    gt.generator_fingerprint.cache_clear()
    try:
        assert gt.run_hash(face, spec) != before and gt.wplus_paths(face, "hand")[0].name != wplus
    finally:
        monkeypatch.undo()
        gt.generator_fingerprint.cache_clear()
    assert gt.run_hash(face, spec) == before
    # re-exported weights (another sha256 in the shipped config.json): another fingerprint, the same when it is back
    import innout_core.eg3d.configs as configs

    fake = tmp_path / "tiny-face"
    fake.mkdir()
    cfg = json.loads((configs.weights_dir("tiny-face") / "config.json").read_text())
    (fake / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(configs, "weights_dir", lambda name: fake)
    try:
        gt.generator_fingerprint.cache_clear()
        assert gt.generator_fingerprint("tiny-face", 8, 0) == fp  # a copy of the same weights
        cfg["weights"]["sha256"] = "0" * 64
        (fake / "config.json").write_text(json.dumps(cfg))
        gt.generator_fingerprint.cache_clear()
        assert gt.generator_fingerprint("tiny-face", 8, 0) != fp and gt.run_hash(face, spec) != before
    finally:
        monkeypatch.undo()
        gt.generator_fingerprint.cache_clear()
    assert gt.generator_fingerprint("tiny-face", 8, 0) == fp


def test_tiny_face_sweep_names_its_generator_and_videos(gt, tmp_path, monkeypatch):
    monkeypatch.setattr(gt.PATHS, "results", tmp_path / "results")
    monkeypatch.setattr(gt.PATHS, "docs", tmp_path / "docs")
    s = gt.BenchSettings(frames=2, wplus_epochs=1, quick=True, generator="tiny-face")
    plan = [(1, gt.RunSpec(video="hand", start="oracle", steps=2, masks="user")),
            (1, gt.RunSpec(video="glasses", start="wplus", steps=2, masks="user"))]
    rep = gt.execute(s, plan, jobs=1, log=lambda *_: None)
    assert rep["failed"] == [] and len(rep["done"]) == 2
    assert all("/quick-f2-s0-tiny-face/runs/" in p for p in rep["done"])
    run = json.loads(Path(rep["done"][0]).read_text())
    video = gt._video("hand", 2, 0, "tiny-face")
    assert run["reference"]["occluder_fraction"] == pytest.approx(float((1 - video.masks).mean()))
    merged = gt.write_outputs(s, plan, None, with_plots=True)
    md = (tmp_path / "results" / "ground_truth_tiny_face_quick.md").read_text()
    assert md.splitlines()[0].startswith("Ground truth on `tiny-face`, 2 frames per video")
    assert "(hand, bar, glasses, microphone, static)" in md.splitlines()[0]
    assert "\n| glasses | " in md and "\n| box | " not in md  # the W+ / truth table's rows are this suite's
    assert list(merged["wplus"]) == ["hand", "bar", "glasses", "microphone", "static"]
    out = json.loads((tmp_path / "results" / "ground_truth_tiny_face_quick.json").read_text())
    assert out["generator"] == "tiny-face" and out["settings"]["generator"] == "tiny-face"
    assert (tmp_path / "results" / "ground_truth_tiny_face_quick_rows.png").is_file()
    assert not (tmp_path / "results" / "ground_truth_quick.json").exists()  # the tiny outputs are not touched


def test_list_and_bad_generator(gt, capsys):
    gt.main(["--generator", "tiny-face", "--quick", "--list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(" hand-" in line for line in lines)
    with pytest.raises(SystemExit):
        gt.main(["--generator", "ffhq512-128", "--list"])
