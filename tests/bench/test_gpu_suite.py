"""bench/gpu_suite.py: the suite's bookkeeping (budgets, atomic partial writes, error rows), its checks (the GPU
resource probe, the restated tolerances), and a `--device cpu --quick` run of every part with sane values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import gpu_suite  # noqa: E402


def _suite(tmp_path: Path, *args: str, timeout: float = 1500) -> tuple[dict, Path]:
    out = tmp_path / "suite.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_suite.py"), "--device", "cpu", "--quick",
                        "--out", str(out), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(out.read_text()), out


def test_part_saves_after_each_measurement_and_stops_past_its_budget(tmp_path) -> None:
    out = tmp_path / "s.json"
    suite = gpu_suite.Suite(out, {"parts": {}}, total_budget_s=100)

    def second() -> dict:  # the first row is already on disk while the second runs
        on_disk = json.loads(out.read_text())["parts"]["p"]["rows"]
        assert [r["label"] for r in on_disk] == ["first"]
        raise ValueError("broken measurement")

    with suite.part("p", 60) as part:
        part.measure("first", lambda: {"x": 1})
        part.measure("second", second)
        part.measure("third", lambda: (_ for _ in ()).throw(SystemExit("project() gave up")))
    d = json.loads(out.read_text())["parts"]["p"]
    assert d["status"] == "done_with_errors"
    assert d["rows"][0]["x"] == 1 and d["rows"][1]["error"] == "ValueError: broken measurement"
    assert d["rows"][2]["error"].startswith("SystemExit")

    with suite.part("q", 0.2) as part:
        part.measure("slow", lambda: (time.sleep(0.3), {"y": 2})[1])
        part.measure("never", lambda: pytest.fail("ran past the budget"))
    d = json.loads(out.read_text())["parts"]["q"]
    assert d["status"] == "over_budget" and [r["label"] for r in d["rows"]] == ["slow"]
    assert d["not_measured"] == ["never"] and d["wall_s"] >= 0.3

    spent = gpu_suite.Suite(out, {"parts": {}}, total_budget_s=0.0)
    with spent.part("r", 60) as part:  # the suite's budget bounds every part
        part.measure("none", lambda: pytest.fail("ran past the suite budget"))
    assert json.loads(out.read_text())["parts"]["r"]["status"] == "over_budget"


def _probe(video: str, worker: str, start: float, end: float, restriction=None, avail=0.0) -> dict:
    return {"video": video, "worker": worker, "start": start, "end": end,
            "resource_restrictions": {"GPU": 1} if restriction is None else restriction,
            "worker_total_resources": {"GPU": 1.0}, "worker_available_resources": {"GPU": avail}}


def test_check_probes_needs_the_gpu_held_and_no_overlap_on_a_worker() -> None:
    ok = [_probe("a", "w1", 0, 1), _probe("b", "w1", 1, 2), _probe("c", "w2", 0.5, 1.5)]
    assert gpu_suite.check_probes(ok, cuda=False)["each_video_held_the_gpu"]
    overlap = [_probe("a", "w1", 0, 1), _probe("b", "w1", 0.5, 2)]
    r = gpu_suite.check_probes(overlap, cuda=False)
    assert r["overlap_on_a_worker"] and not r["each_video_held_the_gpu"]
    assert not gpu_suite.check_probes([_probe("a", "w1", 0, 1, restriction={})], cuda=False)["each_video_held_the_gpu"]
    assert not gpu_suite.check_probes([_probe("a", "w1", 0, 1, avail=1.0)], cuda=False)["each_video_held_the_gpu"]
    assert not gpu_suite.check_probes([], cuda=False)["each_video_held_the_gpu"]
    two_gpus = [{**_probe("a", "w1", 0, 1), "cuda_device_count": 2}]  # a worker must see exactly its own GPU
    assert not gpu_suite.check_probes(two_gpus, cuda=True)["each_video_held_the_gpu"]


def test_restated_tolerances_are_the_cpu_tests() -> None:
    """The suite's bounds are the values the CPU tests assert with (their named constants, not their source)."""
    from tests.innout_core import test_fast_path as fast
    from tests.innout_core import test_inversion as inv

    assert gpu_suite.LOSS_REL == fast.BF16_REL
    assert (gpu_suite.SR_STATE_ATOL, gpu_suite.SR_STATE_RTOL) == (fast.SR_STATE_ATOL, fast.SR_STATE_RTOL)
    assert gpu_suite.COMPILE_REL == fast.COMPILE_REL
    assert (gpu_suite.INVERSION_LOSS_REL, gpu_suite.INVERSION_MOVE_COS) == (inv.BF16_LOSS_REL, inv.BF16_MOVE_COS)


@pytest.mark.parametrize("scale", [0.0, 0.5, 0.99, 1.01, 2.0])
def test_agreement_checks_judge_as_the_cpu_tests_do(scale: float) -> None:
    """Independent implementations of the CPU tests' checks: ``pytest.approx(rel=LOSS_REL)`` for the losses and
    ``torch.testing.assert_close(atol, rtol)`` for the SR weights, on differences ``scale`` times the bound."""
    import torch

    ref = [{"total": 2.0, "l2": -1.0}, {"total": 1.5, "l2": 0.25}]
    low = [{k: v * (1 + scale * gpu_suite.LOSS_REL) for k, v in r.items()} for r in ref]
    approx = all(h[k] == pytest.approx(p[k], rel=gpu_suite.LOSS_REL) for p, h in zip(ref, low) for k in p)
    assert gpu_suite.loss_agreement(ref, low, ("total", "l2"), gpu_suite.LOSS_REL)["loss_ok"] is approx
    assert approx is (scale <= 1)

    g = torch.Generator().manual_seed(0)
    ref_s = {"w": torch.randn(64, generator=g), "b": torch.randn(4, 4, generator=g) * 10}
    sign = {k: torch.where(torch.rand(v.shape, generator=g) < 0.5, -1.0, 1.0) for k, v in ref_s.items()}
    low_s = {k: v + sign[k] * scale * (gpu_suite.SR_STATE_ATOL + gpu_suite.SR_STATE_RTOL * v.abs())
             for k, v in ref_s.items()}
    try:
        for k, v in ref_s.items():
            torch.testing.assert_close(low_s[k], v, atol=gpu_suite.SR_STATE_ATOL, rtol=gpu_suite.SR_STATE_RTOL)
        close = True
    except AssertionError:
        close = False
    assert gpu_suite.sr_state_agreement(ref_s, low_s)["sr_state_ok"] is close
    assert close is (scale <= 1)


def test_forced_tiny_budget_records_what_was_not_measured(tmp_path) -> None:
    d, _ = _suite(tmp_path, "--parts", "synthesis", "projection", "--budget", "synthesis=0.5")
    s = d["parts"]["synthesis"]
    assert s["status"] == "over_budget" and s["not_measured"]
    assert len(s["rows"]) + len(s["not_measured"]) == 7  # 6 eager rows + the quick compiled one, all accounted
    assert d["parts"]["projection"]["status"] == "error" and "steps" in d["parts"]["projection"]["error"]
    assert d["status"] == "done"


@pytest.mark.slow
def test_quick_suite_every_part_sane(tmp_path) -> None:
    budgets = [x for p in ("synthesis", "steps", "agreement", "profile") for x in ("--budget", f"{p}=900")]
    d, out = _suite(tmp_path, "--parts", "synthesis", "steps", "agreement", "projection", "--profile", *budgets,
                    "--total-budget", "3600")
    assert d["status"] == "done" and d["quick"] and d["device"] == "cpu" and d["generator"] == "tiny"
    assert "tiny" in d["generator_note"] and d["machine"]["torch"] and d["machine"]["python"]
    p = d["parts"]
    assert all(p[k]["status"] == "done" for k in ("synthesis", "steps", "agreement", "projection", "profile")), \
        {k: (v["status"], [r.get("error") for r in v["rows"] if "error" in r]) for k, v in p.items()}

    syn = p["synthesis"]["rows"]
    assert len(syn) == 7 and all(r["seconds_median"] > 0 and r["images_per_s"] > 0 and r["image_finite"] for r in syn)
    assert [r["compile"] for r in syn].count(True) == 1
    assert {r["dtype"] for r in syn if r["amp"] == "fp16"} == {"float32"}  # fp16 autocast is CUDA-only

    side = {s["item"]: s for s in p["steps"]["side_by_side"]}
    assert set(side) == {"stage-A step", "stage-B epoch (2 frames)", "W+ inversion step", "PTI step"}
    for s in side.values():
        assert s["official_wall_s"] > 0 and s["fast_wall_s"] > 0 and s["official_peak_gb"] > 0
        assert s["speedup_wall"] == pytest.approx(s["official_wall_s"] / s["fast_wall_s"])

    agree = {r["label"]: r for r in p["agreement"]["rows"]}
    assert len(agree) == 7
    for r in agree.values():
        assert isinstance(r["loss_ok"], bool) and r["loss_rel_max"] and r["loss_ok"], r
    for label in ("stage A, fp16 vs fp32", "stage B, fp16 vs fp32"):  # fp32 fallback on CPU: bitwise the same run
        assert agree[label]["effective_dtype"] == "float32" and agree[label]["grad_rel_l2"] == 0.0
        assert max(agree[label]["loss_rel_max"].values()) == 0.0
    assert agree["stage A, torch.compile vs eager (fp32)"]["grad_rel_l2"] == 0.0  # a CPU no-op
    assert all(agree[k]["grad_ok"] for k in agree if agree[k]["stage"] in ("A", "B"))
    assert all(agree[k]["latent_ok"] for k in ("w+ inversion, bf16 vs fp32", "pti inversion, bf16 vs fp32"))
    assert "sr_state_ok" in agree["stage B, bf16 vs fp32"]

    proj = p["projection"]["rows"][0]
    assert proj["fast"]["total_h"] > 0 and proj["official"]["total_h"] > 0
    assert proj["speedup_total"] == pytest.approx(proj["official"]["total_h"] / proj["fast"]["total_h"])
    assert proj["fast_total_minutes"] == pytest.approx(proj["fast"]["total_h"] * 60)
    assert set(proj["meets"]) == set(gpu_suite.TARGETS)

    prof = p["profile"]
    table = REPO / prof["table"]  # relative to the repository when the JSON is inside it
    assert table.exists() and "Self CPU" in table.read_text()
    assert prof["rows"][0]["top_ops"][0]["self_ms"] > 0 and prof["largest_cost"]


@pytest.mark.slow
def test_quick_demo_part_each_video_held_the_gpu_resource(tmp_path) -> None:
    d, _ = _suite(tmp_path, "--parts", "demo", "--budget", "demo=900", "--total-budget", "1200", timeout=1300)
    demo = d["parts"]["demo"]
    assert demo["status"] == "done", demo
    r = demo["rows"][0]
    assert r["child_exit_code"] == 0 and not r["timed_out"], r.get("output_tail")
    assert r["videos_done"] == sorted(p["video"] for p in r["probes"]) and len(r["probes"]) == 2
    assert r["each_video_held_the_gpu"] and not r["overlap_on_a_worker"]
    assert all(p["resource_restrictions"] == {"GPU": 1} for p in r["probes"])
    assert r["config"]["dask"] == {"cluster": "cuda"} and r["config"]["preset"] == "tiny-demo"
    assert "simulated" in demo["cluster"]
