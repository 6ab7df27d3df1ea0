"""`innout status` from the run directory alone: interrupted vs running (the lock), damaged outputs, and
`innout verify` (every hash); quick because nothing heavy is imported."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from flows.cli import main
from flows.lock import LOCK_NAME, lock_held, run_lock
from flows.precheck import prepare_run
from flows.status import failed_videos, run_status
from innout_core.config import ManifestVideo, load_config, load_manifest
from innout_core.store import StageRecord, read_record, stage_dir, write_record
from tasks.plan import planned_stages
from tasks.stage import StageOutput, VideoJob, run_stage
from tests.flows.inprocess import isolated_cli


def _run(tmp_path: Path) -> tuple[Path, VideoJob]:
    man = tmp_path / "m.yaml"
    man.write_text(yaml.safe_dump({"name": "m", "videos": [{"id": "v", "path": "v.mp4"}]}))
    cfg = load_config(None, "tiny-demo")
    run = prepare_run(load_manifest(man), tmp_path / "run", cfg)
    return run, VideoJob(run, "run", ManifestVideo(id="v", path=tmp_path / "v.mp4"), cfg)


def test_running_stage_without_a_lock_holder_is_interrupted(tmp_path):
    run, job = _run(tmp_path)
    write_record(job.stage_dir("frames"), StageRecord(stage="frames", video="v").started_now())
    assert not lock_held(run) and not (run / LOCK_NAME).exists()
    assert run_status(run)["videos"]["v"]["status"] == "interrupted" and failed_videos(run) == ["v"]
    with run_lock(run):  # this process holds it
        assert lock_held(run) and run_status(run)["videos"]["v"]["status"] == "running"
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(60)", str(run / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_status(run)["videos"]["v"]["status"] == "running"  # another command holds it
    finally:
        holder.kill()
        holder.wait()
    assert run_status(run)["videos"]["v"]["status"] == "interrupted"  # killed: the kernel dropped the lock


def _all_done(job: VideoJob) -> list[str]:
    stages = planned_stages(job.config, job.video)
    for s in stages:
        def body(d: Path, s: str = s) -> StageOutput:
            (d / "out.bin").write_bytes(s.encode() * 50)
            return StageOutput({"out": "out.bin"})
        run_stage(job, s, [s], "c", body)
    return stages


def test_status_shows_damaged_and_verify_marks_it(tmp_path, capsys):
    run, job = _run(tmp_path)
    stages = _all_done(job)
    assert run_status(run)["videos"]["v"]["status"] == "done"
    f = job.stage_dir("face") / "out.bin"
    f.write_bytes(f.read_bytes()[:7])
    v = run_status(run)["videos"]["v"]
    assert v["status"] == "damaged" and v["stages"]["face"] == "damaged" and v["error"]["file"] == str(f)
    t0 = time.perf_counter()
    with isolated_cli():
        assert main(["status", str(run)]) == 1
    assert time.perf_counter() - t0 < 2.0
    out = capsys.readouterr().out
    assert "damaged" in out and "out.bin" in out
    g = job.stage_dir("frames") / "out.bin"
    g.write_bytes(g.read_bytes().replace(b"f", b"F", 1))  # same size: only a hash finds it
    with isolated_cli():
        assert main(["verify", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"{g}: stage output altered" in err and "retry` redoes them" in err, err
    assert all(read_record(stage_dir(run, "v", s)).status == "pending" for s in stages)  # frames feeds all
    with isolated_cli():
        assert main(["verify", str(run)]) == 0  # nothing done is left unchecked
    assert "all match their records" in capsys.readouterr().err
