"""Damaged outputs of finished stages are never trusted (through the real CLI + Prefect + Dask): `status` names the
damaged file, `run` redoes the stage and everything downstream (a corrupted metrics.parquet too) and ends equal to
the first run; a video with no face in any frame, alone in its manifest, is bad input (exit 2)."""

from __future__ import annotations

import subprocess

import pytest

from flows.status import run_status
from innout_core.store import metrics_path, read_record, stage_dir
from tests.flows.conftest import FAST_CONFIG, gt_ids, stage_records, write_yaml

pytestmark = pytest.mark.slow


def test_truncated_output_and_corrupt_parquet_are_redone(innout, gt_videos, tmp_path):
    ids = gt_ids(gt_videos)
    man = write_yaml(tmp_path / "m.yaml", {"name": "dmg", "videos": [
        {"id": v, "path": str(gt_videos / v / "frames.mp4"), "cameras": str(gt_videos / v / "cameras.npy")}
        for v in ids]})
    cfg = write_yaml(tmp_path / "c.yaml", {**FAST_CONFIG, "methods": ["w"], "dask": {"workers": 1}})
    run = tmp_path / "runs" / "dmg"
    args = ("run", str(man), "--config", str(cfg), "--run-dir", str(run))
    code, out = innout.run(*args)
    assert code == 0, out
    first = stage_records(run)
    a, b = ids
    face = stage_dir(run, a, "face") / "face.safetensors"
    face.write_bytes(face.read_bytes()[: face.stat().st_size // 3])
    parquet = metrics_path(run, b)
    parquet.write_bytes(b"PAR1 not really" + parquet.read_bytes()[40:])

    code, out = innout.run("status", str(run))
    flat = " ".join(out.split())
    assert code == 1 and flat.count("damaged") >= 2 and "DamagedOutputError" not in flat, out  # both videos

    code, out = innout.run(*args)
    flat = " ".join(out.split())
    assert code == 0, out
    assert f"{face}: stage output is" in flat and f"{parquet}:" in flat, out  # one line each, naming the file
    after = stage_records(run)
    for (vid, stage), rec in after.items():
        assert rec.status == "done", (vid, stage)
        if vid == a and stage != "frames":  # face and everything downstream of it: redone
            assert rec.attempts == 2, (vid, stage)
        elif vid == b and stage == "metrics":
            assert rec.attempts == 2
        else:
            assert rec.attempts == 1, (vid, stage)
        same = {k: (e.size, e.sha256) for k, e in first[(vid, stage)].files.items()}
        assert {k: (e.size, e.sha256) for k, e in rec.files.items()} == same or stage == "metrics", (vid, stage)
    assert all(v["status"] == "done" for v in run_status(run)["videos"].values())
    code, out = innout.run("verify", str(run))
    assert code == 0, out
    code, out = innout.run("tables", str(run))
    assert code == 0, out  # both videos tabulated


def test_no_face_anywhere_alone_is_bad_input(innout, tmp_path):
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=96x96:d=0.12:r=25",
                    "-pix_fmt", "yuv420p", str(tmp_path / "noface.mp4")], check=True)
    man = write_yaml(tmp_path / "m.yaml", {"name": "nf", "videos": [{"id": "noface", "path": "noface.mp4"}]})
    cfg = write_yaml(tmp_path / "c.yaml", {**FAST_CONFIG, "methods": ["w"], "face": {"backend": "dlib"},
                                           "dask": {"workers": 1}})
    run = tmp_path / "runs" / "nf"
    code, out = innout.run("run", str(man), "--config", str(cfg), "--run-dir", str(run))
    assert code == 2, out
    rec = read_record(stage_dir(run, "noface", "face"))
    assert rec.status == "failed" and rec.error.kind == "BadInputError" and "face" in rec.error.message
