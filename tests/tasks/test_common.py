"""run_stage: skip when done with matching hashes, redo on any change, record failures (file, stage, message)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.errors import BadInputError, StageError
from innout_core.store import read_record
from tasks.common import (StageOutput, VideoJob, load_tensors, progress_writer, run_stage, save_tensors,
                          stage_generator, transient)


def _job(tmp_path: Path) -> VideoJob:
    return VideoJob(tmp_path / "run", "run", ManifestVideo(id="v1", path=tmp_path / "v1.mp4"),
                    PipelineConfig.from_preset("tiny-demo"))


def test_run_stage_skips_done_and_redoes_on_change(tmp_path):
    job = _job(tmp_path)
    calls = []

    def body(d: Path) -> StageOutput:
        calls.append(d)
        save_tensors(d / "x.safetensors", {"x": torch.arange(3.0) + len(calls)})
        return StageOutput({"x": "x.safetensors"}, {"n": 3})

    rec = run_stage(job, "invert-w+", ["in1"], "cfg1", body)
    assert rec.status == "done" and rec.attempts == 1 and rec.info == {"n": 3} and rec.seconds >= 0
    again = run_stage(job, "invert-w+", ["in1"], "cfg1", body)
    assert len(calls) == 1 and again.output_hash == rec.output_hash  # skipped
    run_stage(job, "invert-w+", ["in2"], "cfg1", body)  # input changed
    run_stage(job, "invert-w+", ["in2"], "cfg2", body)  # config changed
    assert len(calls) == 3
    final = read_record(job.stage_dir("invert-w+"))
    assert final.attempts == 3 and final.output_hash != rec.output_hash
    assert torch.equal(load_tensors(job.stage_dir("invert-w+") / "x.safetensors")["x"], torch.arange(3.0) + 3)


def test_run_stage_records_failures(tmp_path):
    job = _job(tmp_path)

    def bad_input(d: Path) -> StageOutput:
        raise BadInputError("file is empty (0 bytes)", path=tmp_path / "v1.mp4")

    with pytest.raises(StageError, match="video 'v1', stage frames: file is empty") as info:
        run_stage(job, "frames", ["h"], "c", bad_input)
    assert info.value.transient is False
    rec = read_record(job.stage_dir("frames"))
    assert rec.status == "failed" and rec.error.stage == "frames" and rec.error.kind == "BadInputError"
    assert rec.error.file == str(tmp_path / "v1.mp4") and rec.error.message == "file is empty (0 bytes)"

    def io_error(d: Path) -> StageOutput:
        raise OSError("disk\nhiccup")

    with pytest.raises(StageError) as info:
        run_stage(job, "frames", ["h2"], "c", io_error)
    assert info.value.transient is True
    rec = read_record(job.stage_dir("frames"))
    assert rec.error.message == "OSError: disk hiccup" and rec.attempts == 2  # one line, attempt counted


def test_transient_policy():
    assert transient(OSError("x")) and transient(RuntimeError("CUDA out of memory. Tried"))
    assert not transient(BadInputError("x")) and not transient(ValueError("shape"))


def test_stage_generator_depends_on_seed_video_stage(tmp_path):
    job = _job(tmp_path)
    a = torch.rand(4, generator=stage_generator(job, "stage-a-no-masks", torch.device("cpu")))
    b = torch.rand(4, generator=stage_generator(job, "stage-a-no-masks", torch.device("cpu")))
    c = torch.rand(4, generator=stage_generator(job, "stage-a-auto-masks", torch.device("cpu")))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_progress_writer_throttles(tmp_path):
    import json

    report = progress_writer(tmp_path, every_s=3600)
    report(1, 10, {"l2": 0.5})
    report(2, 10, {"l2": 0.4})  # throttled
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 1
    report(10, 10, {"l2": 0.1})  # the last step is always written
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 10


def test_bad_input_failure_not_rerun_until_input_changes(tmp_path):
    job = _job(tmp_path)
    calls = []

    def bad(d: Path) -> StageOutput:
        calls.append(1)
        raise BadInputError("has no video stream", path="x.mp4")

    for _ in range(2):
        with pytest.raises(StageError, match="has no video stream"):
            run_stage(job, "frames", ["h1"], "c", bad)
    assert len(calls) == 1 and read_record(job.stage_dir("frames")).attempts == 1
    with pytest.raises(StageError):
        run_stage(job, "frames", ["h2"], "c", bad)  # the input changed: tried again
    assert len(calls) == 2


def test_run_stage_redoes_a_done_stage_whose_output_was_damaged(tmp_path, caplog):
    job = _job(tmp_path)
    calls = []

    def body(d: Path) -> StageOutput:
        calls.append(d)
        save_tensors(d / "x.safetensors", {"x": torch.arange(3.0)})
        return StageOutput({"x": "x.safetensors"})

    rec = run_stage(job, "face", ["in"], "cfg", body)
    f = job.stage_dir("face") / "x.safetensors"
    assert rec.files["x.safetensors"].size == f.stat().st_size
    f.write_bytes(f.read_bytes()[:-5])  # truncated
    with caplog.at_level("WARNING", logger="innout.stage"):
        again = run_stage(job, "face", ["in"], "cfg", body)
    assert len(calls) == 2 and again.attempts == 2 and again.output_hash == rec.output_hash
    assert f"{f}: stage output is" in caplog.text and "redoing the stage" in caplog.text


def test_unreadable_upstream_output_names_the_file_and_marks_its_stage(tmp_path):
    job = _job(tmp_path)

    def up(d: Path) -> StageOutput:
        save_tensors(d / "face.safetensors", {"x": torch.arange(3.0)})
        return StageOutput({"face": "face.safetensors"})

    run_stage(job, "face", ["in"], "cfg", up)
    f = job.stage_dir("face") / "face.safetensors"
    f.write_bytes(b"\xff" * 4)  # not safetensors any more

    def down(d: Path) -> StageOutput:
        load_tensors(f)
        return StageOutput({})

    with pytest.raises(StageError) as info:
        run_stage(job, "invert-w", ["h"], "c", down)
    assert info.value.kind == "DamagedOutputError" and info.value.transient is False
    rec = read_record(job.stage_dir("invert-w"))
    assert rec.error.file == str(f) and rec.error.kind == "DamagedOutputError"
    assert "stage output unreadable" in rec.error.message and "stage face is redone" in rec.error.message
    assert read_record(job.stage_dir("face")).status == "pending"  # the writer of the damaged file
    run_stage(job, "face", ["in"], "cfg", up)  # redone, then the failed stage runs again (not refused)
    assert run_stage(job, "invert-w", ["h"], "c", lambda d: StageOutput({})).status == "done"


def test_bad_frame_of_a_stage_output_is_not_bad_input(tmp_path):
    job = _job(tmp_path)

    def frames(d: Path) -> StageOutput:
        (d / "png").mkdir(exist_ok=True)
        (d / "png" / "frame_000000.png").write_bytes(b"not a png")
        return StageOutput({"frames": "png"})

    run_stage(job, "frames", ["in"], "cfg", frames)
    png = job.stage_dir("frames") / "png" / "frame_000000.png"

    def face(d: Path) -> StageOutput:
        raise BadInputError("cannot be decoded as an image", path=png)

    with pytest.raises(StageError):
        run_stage(job, "face", ["h"], "c", face)
    rec = read_record(job.stage_dir("face"))
    assert rec.error.kind == "DamagedOutputError" and rec.error.file == str(png)
    assert read_record(job.stage_dir("frames")).status == "pending"


def test_unreadable_checkpoints_of_the_stage_itself_restart_it(tmp_path):
    """A stage failing on its own damaged checkpoints is not 'bad input' (refused on every re-run): the
    checkpoints are removed and the next attempt starts over."""
    from innout_core.errors import CheckpointError

    job = _job(tmp_path)
    ck = job.stage_dir("stage-a-no-masks") / "ckpt"

    def body(d: Path) -> StageOutput:
        if ck.is_dir():
            raise CheckpointError("no readable checkpoint", path=ck)
        (d / "out.bin").write_bytes(b"ok")
        return StageOutput({"out": "out.bin"})

    from innout_core.store import StageRecord, hash_strings, write_record

    ck.mkdir(parents=True)
    (ck / "ckpt-00000002.pt").write_bytes(b"junk")  # left by a killed attempt with the same inputs, then damaged
    write_record(ck.parent, StageRecord(stage="stage-a-no-masks", video="v1", input_hash=hash_strings(["h"]),
                                        config_hash="c").started_now())
    with pytest.raises(StageError) as info:
        run_stage(job, "stage-a-no-masks", ["h"], "c", body)
    assert info.value.kind == "DamagedOutputError" and "checkpoints were removed" in info.value.message
    assert not ck.exists()
    assert run_stage(job, "stage-a-no-masks", ["h"], "c", body).status == "done"
