"""bench/ground_truth.py: a tiny sweep runs, resumes without recomputing, merges; its metrics are consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gt():
    return load_script(REPO / "bench" / "ground_truth.py", "bench_ground_truth")


@pytest.fixture(scope="module")
def video(gt):
    return gt._video("box", 2, 0)


def test_share_metrics_of_the_truth_itself(gt, video):
    true_ood = 1 - video.masks
    m = gt.share_metrics(true_ood, true_ood)
    assert m["iou"] == 1.0 and m["ood_share_on"] == 1.0 and m["ood_share_off"] == 0.0
    empty = gt.share_metrics(torch.zeros_like(true_ood[:, :, ::4, ::4]), true_ood)
    assert empty["iou"] == 0.0 and empty["ood_share_on"] == 0.0


def test_masked_psnr_matches_psnr_on_the_full_region(gt, video):
    from innout_core.metrics import psnr

    a, b = video.frames.clamp(-1, 1), video.clean.clamp(-1, 1)
    full = gt.masked_psnr(a, b, torch.ones_like(video.masks))
    assert torch.allclose(full, psnr(a, b), atol=1e-4)
    # on the face region the input equals the clean frame up to the occluder's soft edge
    assert float(gt.masked_psnr(a, b, video.masks).mean()) > float(full.mean()) + 5


def test_latent_drift_distances(gt):
    w = torch.zeros(3, 14, 512)
    avg = torch.zeros(512)
    moved = w.clone()
    moved[:, :, 0] = 2.0  # ||.|| over [14,512] = 2 * sqrt(14)
    d = gt.latent_drift(moved, avg, w, moved)
    assert d["w_to_avg"] == pytest.approx(2 * 14**0.5) and d["w_to_init"] == pytest.approx(2 * 14**0.5)
    assert d["w_to_true"] == 0.0


def test_removal_of_a_zero_opacity_occluder_equals_the_render(gt, video):
    from innout_core.joint import StageAResult, render_composite_video
    from innout_core.ood import OODField

    G = gt._generator()
    T = video.frames.shape[0]
    ood = OODField(T, 32, 8, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # sigma (channel 0) and blend (last) outputs pinned far below zero
        last = ood.decoder.net[2]
        for ch in (0, -1):
            last.weight[ch].zero_()
            last.bias[ch] = -60.0
    sa = StageAResult(ood_state=ood.ood_state(), phi=ood.phi.detach(), ws=video.ws, losses=[], seconds=0.0)
    comp = render_composite_video(G, sa, video.cameras, torch.Generator().manual_seed(3))
    rem = render_composite_video(G, sa, video.cameras, torch.Generator().manual_seed(3), remove_ood=True)
    assert torch.allclose(comp.image, rem.image, atol=1e-5)
    m = gt.evaluate_composite(video, comp.image, comp.blend_map, rem.image)
    assert m["removal_psnr_occ"] == pytest.approx(
        gt.quality(comp.image, video.clean.clamp(-1, 1), video.occluded())["psnr_occ"], abs=1e-3)
    assert m["iou"] == 0.0 and m["ood_share_on"] < 1e-6 and m["ood_share_off"] < 1e-6
    # the face is the truth: the render sits near the clean frames, far above the occluded input
    assert m["removal_psnr_occ"] > gt.video_reference(G, video, 0)["input_vs_clean_psnr_occ"] + 5


def test_quick_sweep_resumes_and_merges(gt, tmp_path, monkeypatch):
    monkeypatch.setattr(gt.PATHS, "results", tmp_path / "results")
    monkeypatch.setattr(gt.PATHS, "docs", tmp_path / "docs")
    s = gt.BenchSettings(frames=2, wplus_epochs=2, quick=True)
    plan = [(1, gt.RunSpec(video="box", start="oracle", steps=3, masks="user")),
            (1, gt.RunSpec(video="box", start="canonical", steps=3, masks="auto-residual", lr_w=5e-5)),
            (2, gt.RunSpec(video="box", start="wplus", steps=2, masks="auto-share", auto={"first_pass_steps": 2, "reference": "canonical"}))]
    first = gt.execute(s, plan[:2], jobs=1, log=lambda *_: None)
    assert first["failed"] == [] and len(first["done"]) == 2
    paths = [Path(p) for p in first["done"]]
    stamps = [p.stat().st_mtime_ns for p in paths]
    wplus_json, wplus_pt = gt.wplus_paths(s, "box")
    assert wplus_json.is_file() and wplus_pt.is_file()

    again = gt.execute(s, plan[:2], jobs=1, log=lambda *_: None)
    assert again["done"] == [] and len(again["skipped"]) == 2
    assert [p.stat().st_mtime_ns for p in paths] == stamps

    # a changed setting is a different run; an edited settings hash is not "done"
    d = json.loads(paths[0].read_text())
    d["settings_hash"] = "0" * 16
    paths[0].write_text(json.dumps(d))
    assert not gt.is_done(s, plan[0][1]) and gt.is_done(s, plan[1][1])
    d["settings_hash"] = gt.run_hash(s, plan[0][1])
    paths[0].write_text(json.dumps(d))

    merged = gt.write_outputs(s, plan, None, with_plots=True)
    assert len(merged["runs"]) == 2
    assert [(m["video"], m["label"]) for m in merged["missing"]] == [("box", plan[2][1].label())]
    oracle, auto = merged["runs"]
    assert oracle["metrics"]["mask_iou_input"] == 1.0  # the true masks against themselves
    assert oracle["metrics"]["init_w_to_true"] == 0.0 and oracle["metrics"]["w_to_true"] == 0.0  # lr_w 0
    assert auto["metrics"]["w_to_init"] > 0  # lr_w > 0 moved w
    canonical = torch.load(wplus_pt)["w_canonical"]  # the canonical start: every frame begins at the shared latent
    init_dist = float(torch.linalg.vector_norm((canonical[0] - gt._generator().backbone.mapping.w_avg).flatten()))
    assert auto["metrics"]["init_w_to_avg"] == pytest.approx(init_dist, rel=1e-4)
    assert 0.0 <= auto["masks_info"]["iou_vs_true"] <= 1.0
    wp = json.loads(wplus_json.read_text())["metrics"]
    assert auto["derived"]["gain_occ"] == pytest.approx(auto["metrics"]["recon_psnr_occ"] - wp["recon_psnr_occ"])
    ref = oracle["reference"]
    assert oracle["derived"]["removal_gain"] == pytest.approx(
        oracle["metrics"]["removal_psnr_occ"] - ref["input_vs_clean_psnr_occ"])
    out = tmp_path / "results" / "ground_truth_quick.json"
    md = (tmp_path / "results" / "ground_truth_quick.md").read_text()
    assert json.loads(out.read_text())["missing"] == merged["missing"]
    assert "Not run (1 points)" in md and plan[0][1].label() in md
    assert (tmp_path / "results" / "ground_truth_quick_steps.png").is_file()

    # the auto-share point finishes on its own; the two earlier ones are skipped
    rest = gt.execute(s, plan, jobs=1, log=lambda *_: None)
    assert len(rest["done"]) == 1 and len(rest["skipped"]) == 2 and rest["failed"] == []
    share = json.loads(Path(rest["done"][0]).read_text())
    assert share["masks_info"]["method"] == "share" and share["masks_info"]["reference"] == "canonical"
    study = merged["auto_mask_study"]["box"]
    assert set(study) == {"wplus_frame", "wplus_canonical", "truth"}
    # the true latents' residual is the occluder: larger on it than off it
    assert study["truth"]["residual_on"] > 3 * study["truth"]["residual_off"]
    assert all(0.0 <= r["iou"] <= 1.0 for r in study.values())


def test_clean_video_fit_is_the_ceiling_column(gt, tmp_path, monkeypatch):
    """The W+ fit of the clean frames (cached once per video) is closer to the clean truth on occluded frames than
    the W+ fit of the occluded frames, and a masked-start run's merged row carries it."""
    monkeypatch.setattr(gt.PATHS, "results", tmp_path / "results")
    s = gt.BenchSettings(frames=2, wplus_epochs=40, quick=True)
    spec = gt.RunSpec(video="bar", start="wplus-masked", steps=2, masks="user")
    done = gt.execute(s, [(1, spec)], jobs=1, log=lambda *_: None)
    assert done["failed"] == [] and len(done["done"]) == 1
    clean_json = gt.clean_fit_path(s, "bar")
    clean = json.loads(clean_json.read_text())["metrics"]["vs_clean_psnr_occ"]
    occluded = json.loads(gt.wplus_paths(s, "bar")[0].read_text())["metrics"]["vs_clean_psnr_occ"]
    assert clean > occluded + 1.0, (clean, occluded)
    stamp = clean_json.stat().st_mtime_ns
    gt.fit_wplus_clean(s, "bar")  # cached
    assert clean_json.stat().st_mtime_ns == stamp
    run = gt.merge(s, [(1, spec)])["runs"][0]
    assert run["derived"]["clean_fit_vs_clean"] == pytest.approx(clean)


def test_combined_plots_show_the_judged_rows(gt, tmp_path, monkeypatch):
    """The cross-seed figure draws the rows the targets judged, every (seed, video) both have, and stacks the true-mask
    row's preview strips in that order; nothing is drawn when no row was judged."""
    import numpy as np
    from PIL import Image

    monkeypatch.setattr(gt.PATHS, "results", tmp_path)
    strips = {}
    for i, (seed, video) in enumerate(((0, "bar"), (1, "box"))):
        rel = Path(f"f8-s{seed}") / "runs" / f"{video}.png"
        (tmp_path / "ground_truth" / rel).parent.mkdir(parents=True, exist_ok=True)
        strips[(seed, video)] = np.full((4, 10, 3), 40 * (i + 1), np.uint8)
        Image.fromarray(strips[(seed, video)]).save(tmp_path / "ground_truth" / rel)

    def run(seed, video, removal, iou):
        return {"seed": seed, "video": video, "removal_vs_clean": removal, "iou": iou, "input_vs_clean": 20.0,
                "wplus_vs_clean": 21.0, "clean_fit_vs_clean": 38.0,
                "preview": str(Path(f"f8-s{seed}") / "runs" / f"{video}.png")}

    rows = [{"label": "user", "per_run": [run(1, "box", 30.0, 0.8), run(0, "bar", 31.0, 0.9)]},
            {"label": "oracle", "per_run": [run(0, "bar", 45.0, 0.9), run(1, "box", 44.0, 0.9), run(1, "sphere", 1, 1)]}]
    c = {"generator": "tiny", "seeds": [0, 1], "rows": rows,
         "targets": {"user: IoU": {"settings": "user"}, "auto: IoU": None, "oracle: IoU": {"settings": "oracle"}}}
    out = gt.combined_plots(c, tmp_path / "gt")
    assert out == [str(tmp_path / "gt_seeds.png"), str(tmp_path / "gt_seeds_examples.png")]
    stacked = np.asarray(Image.open(out[1]).convert("RGB"))
    assert np.array_equal(stacked, np.concatenate([strips[(0, "bar")], strips[(1, "box")]]))  # sphere: oracle only
    assert gt.combined_plots({**c, "targets": {}}, tmp_path / "none") == []


def test_hidden_share_of_static_moving_and_absent_occluders(gt):
    masks = torch.ones(4, 1, 8, 8)
    masks[:, :, 2:4, 2:4] = 0  # the same 4 pixels in every frame: nothing behind them is ever seen
    assert gt.hidden_share(masks) == 1.0
    moving = torch.ones(4, 1, 8, 8)
    for t in range(4):
        moving[t, :, 0:2, 2 * t : 2 * t + 2] = 0  # never twice on the same pixel
    assert gt.hidden_share(moving) == 0.0
    half = torch.ones(2, 1, 8, 8)
    half[0, :, 0:2, 0:4] = 0
    half[1, :, 0:2, 2:6] = 0  # 8 pixels per frame, 4 of them in both
    assert gt.hidden_share(half) == pytest.approx(0.5)
    both = torch.cat([torch.ones(1, 1, 8, 8), masks[:2]])  # a frame without the occluder looks behind all of it
    assert gt.hidden_share(both) == 0.0 and gt.hidden_share(torch.ones(3, 1, 8, 8)) is None


def test_suite_has_a_static_occluder(gt):
    from innout_core.synthetic import benchmark_videos, ground_truth_suite

    suite = ground_truth_suite(3, 0)
    assert list(suite) == list(gt.VIDEOS)
    assert [suite[k] for k in ("box", "sphere", "bar")] == benchmark_videos(3, 0)
    static = suite["static"].occluder
    assert static.motion == (0.0, 0.0) and static.enter_frame == 0
    v = gt._video("static", 2, 0)
    assert bool(v.occluded().all())
    # fixed in the world: the image-space occluder only shifts with the camera arc, so consecutive masks overlap
    from innout_core.joint import mask_iou

    assert mask_iou(1 - v.masks[:1], 1 - v.masks[1:]) > 0.5
