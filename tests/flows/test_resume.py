"""Resume: SIGKILL the whole `innout run` (CLI + Dask workers) in the middle of stage A, run the same command
again: finished stages are not re-run, stage A continues from its checkpoint, and every result equals an
uninterrupted run's (CPU, bitwise)."""

from __future__ import annotations

import json
import os
import signal
import time

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from innout_core.store import read_record, stage_dir
from tests.flows.conftest import FAST_CONFIG, gt_ids, write_yaml

pytestmark = pytest.mark.slow

VID = "gt00"  # the run's id of the first gt_videos video
STAGE_A = "stage-a-no-masks"


def _config(tmp_path):
    return write_yaml(tmp_path / "resume.yaml", {**FAST_CONFIG, "methods": ["innout"], "dask": {"workers": 1},
                                                 "joint": {"steps": 10, "checkpoint_every": 2}})


def _manifest(tmp_path, gt_videos):
    g = gt_videos / gt_ids(gt_videos)[0]
    return write_yaml(tmp_path / "m.yaml", {"name": "m", "videos": [
        {"id": VID, "path": str(g / "frames.mp4"), "cameras": str(g / "cameras.npy")}]})


def _wait_for_stage_a_checkpoint(run, proc, timeout=300.0) -> int:
    d = stage_dir(run, VID, STAGE_A)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            step = json.loads((d / "progress.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            step = 0
        if step >= 4 and any((d / "ckpt").glob("ckpt-*.pt")):
            return step
        time.sleep(0.2)
    raise AssertionError("stage A never reached step 4")


def test_sigkill_mid_stage_a_then_rerun_equals_uninterrupted(innout, gt_videos, tmp_path):
    cfg, man = _config(tmp_path), _manifest(tmp_path, gt_videos)
    killed = tmp_path / "a" / "run"
    args = ("run", str(man), "--config", str(cfg), "--run-dir", str(killed))
    proc = innout.start(*args)
    step = _wait_for_stage_a_checkpoint(killed, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert read_record(stage_dir(killed, VID, STAGE_A)).status == "running" and step < 10
    for s in ("frames", "face", "invert-w+"):
        assert read_record(stage_dir(killed, VID, s)).status == "done"

    code, out = innout.run(*args, timeout=400)
    assert code == 0, out
    for s in ("frames", "face", "invert-w+"):
        assert read_record(stage_dir(killed, VID, s)).attempts == 1, s  # finished stages were not re-run
    rec = read_record(stage_dir(killed, VID, STAGE_A))
    assert rec.status == "done" and rec.attempts == 2 and rec.info["resumed_from_step"] >= 2

    clean = tmp_path / "b" / "run"
    code, out = innout.run("run", str(man), "--config", str(cfg), "--run-dir", str(clean), timeout=400)
    assert code == 0, out
    assert read_record(stage_dir(clean, VID, STAGE_A)).info["resumed_from_step"] is None
    for stage, name in ((STAGE_A, "stage_a.safetensors"), ("stage-b-no-masks", "sr.safetensors"),
                        ("edits-no-masks", "edits.safetensors"), ("invert-w+", "result.safetensors")):
        a = load_file(str(stage_dir(killed, VID, stage) / name))
        b = load_file(str(stage_dir(clean, VID, stage) / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (stage, k)
    ta = pq.read_table(killed / "videos" / VID / "metrics.parquet").drop(["seconds"])
    tb = pq.read_table(clean / "videos" / VID / "metrics.parquet").drop(["seconds"])
    assert ta.num_rows > 0 and ta.equals(tb)
