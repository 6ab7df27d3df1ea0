"""Killing a Dask worker process mid-run loses no finished video or stage and the run still completes; the tables
regenerated from the Parquet files alone equal the run's."""

from __future__ import annotations

import shutil
import signal
import time

import psutil
import pytest

from flows.status import run_status
from reports.tables import write_tables
from tests.flows.conftest import FAST_CONFIG, gt_ids, stage_records, write_yaml

pytestmark = pytest.mark.slow


def test_worker_kill_then_tables_from_parquet(innout, gt_videos, tmp_path):
    ids = gt_ids(gt_videos)
    man = write_yaml(tmp_path / "m.yaml", {"name": "two", "videos": [
        {"id": v, "path": str(gt_videos / v / "frames.mp4"), "cameras": str(gt_videos / v / "cameras.npy")}
        for v in ids]})
    cfg = write_yaml(tmp_path / "c.yaml", {**FAST_CONFIG, "joint": {"steps": 6, "checkpoint_every": 2}})
    run = tmp_path / "runs" / "two"
    proc = innout.start("run", str(man), "--config", str(cfg), "--run-dir", str(run))
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and victim is None:
        assert proc.poll() is None, proc.stdout.read()
        recs = stage_records(run)
        if any(r.status == "running" and k[1].startswith("stage-a") for k, r in recs.items()):
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "multiprocessing" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())]
            if workers:
                victim = max(workers, key=lambda p: p.cpu_times().user)
        time.sleep(0.3)
    assert victim is not None, "no stage A started"
    done_before = {k: r.output_hash for k, r in stage_records(run).items() if r.status == "done"}
    victim.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    st = run_status(run)
    assert all(v["status"] == "done" for v in st["videos"].values()), st
    after = stage_records(run)
    for k, h in done_before.items():  # nothing finished was lost or redone
        assert after[k].attempts == 1 and after[k].output_hash == h, k

    code, out = innout.run("tables", str(run))
    assert code == 0, out
    fresh = tmp_path / "parquet-only"
    for v in ids:
        (fresh / "videos" / v).mkdir(parents=True)
        shutil.copy(run / "videos" / v / "metrics.parquet", fresh / "videos" / v / "metrics.parquet")
    written = write_tables(fresh)
    texts = [n for n in written if n.endswith((".md", ".csv", ".tex"))]
    assert texts
    for name in texts:
        assert (fresh / "tables" / name).read_text() == (run / "tables" / name).read_text(), name
