"""Failure isolation: one good video and four bad inputs in one manifest, through the real CLI + Prefect + Dask."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from flows.status import run_status
from innout_core.store import read_record, stage_dir
from tests.flows.conftest import FAST_CONFIG, gt_ids, write_yaml

pytestmark = pytest.mark.slow


def _attempts(run, vid: str) -> dict[str, int]:
    out = {}
    for d in sorted((run / "videos" / vid).iterdir()):
        rec = read_record(d)
        if rec is not None:
            out[d.name] = rec.attempts
    return out


def test_bad_videos_do_not_stop_good_ones_and_retry_reruns_only_fixed(innout, gt_videos, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = gt_videos / gt_ids(gt_videos)[0]
    (data / "empty.mp4").write_bytes(b"")
    (data / "notes.mp4").write_text("this is not a video\n")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=96x96:d=0.12:r=25",
                    "-pix_fmt", "yuv420p", str(data / "noface.mp4")], check=True)
    manifest = write_yaml(data / "bad.yaml", {"name": "bad", "videos": [
        {"id": "good", "path": str(good / "frames.mp4"), "cameras": str(good / "cameras.npy")},
        {"id": "empty", "path": "empty.mp4"},
        {"id": "notvideo", "path": "notes.mp4"},
        {"id": "noface", "path": "noface.mp4"},
        {"id": "missing", "path": "gone.mp4", "cameras": str(good / "cameras.npy")},
    ]})
    config = write_yaml(tmp_path / "cfg.yaml", {**FAST_CONFIG, "methods": ["w"], "face": {"backend": "dlib"}})
    run = tmp_path / "runs" / "bad"

    code, out = innout.run("run", str(manifest), "--config", str(config), "--run-dir", str(run), timeout=400)
    assert code == 1, out
    st = run_status(run)["videos"]
    assert st["good"]["status"] == "done", st["good"]
    expect = {"empty": ("frames", "empty (0 bytes)"), "notvideo": ("frames", "ffprobe cannot read"),
              "noface": ("face", "face"), "missing": ("frames", "file not found")}
    for vid, (stage, words) in expect.items():
        err = st[vid]["error"]
        assert st[vid]["status"] == "failed" and err["stage"] == stage and words in err["message"], (vid, err)
        assert read_record(stage_dir(run, vid, stage)).error.message == err["message"]
    assert (run / "videos" / "good" / "metrics.parquet").is_file()
    assert (run / "videos" / "good" / "encode" / "w.mp4").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["flow_states"] == {"good": "COMPLETED", "noface": "FAILED"}  # the others never reached Dask
    assert sorted(summary["rejected"]) == ["empty", "missing", "notvideo"]
    # the checked-before-the-run inputs are named in one line each; the face failure's traceback is in the run
    # log, not on the terminal (no --debug)
    for vid, words in (("empty", "empty (0 bytes)"), ("notvideo", "ffprobe cannot read"), ("missing", "not found")):
        assert any(ln.startswith(f"error: video '{vid}'") and words in ln for ln in out.splitlines()), (vid, out)
    assert "Traceback" not in out and "StageError" not in out, out
    log = (run / "logs" / "innout.log").read_text()
    assert "Traceback" in log and "noface" in log, log[-3000:]

    code, out = innout.run("status", str(run))
    assert code == 1
    for words in ("empty (0 bytes)", "ffprobe cannot read", "file not found"):
        assert words in " ".join(out.split()), out

    before = {v: _attempts(run, v) for v in ("good", "empty", "notvideo", "noface")}
    shutil.copy(good / "frames.mp4", data / "gone.mp4")  # fix one input
    code, out = innout.run("retry", str(run), timeout=400)
    assert code == 1, out  # the three others are still broken
    st = run_status(run)["videos"]
    assert st["missing"]["status"] == "done" and st["good"]["status"] == "done"
    assert {v: _attempts(run, v) for v in before} == before  # nothing else was re-run
    assert _attempts(run, "missing")["frames"] == 2 and _attempts(run, "missing")["encode"] == 1
