"""Input is checked before anything starts: bad videos, configs, --workers and run directories end the command with
one line each and exit 2, before a Prefect server or a Dask cluster exists (the `innout` command, in-process)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import flows.server
from flows.cli import exit_code, main, os_error_line
from flows.status import run_status
from innout_core.store import read_record, stage_dir
from tests.flows.inprocess import isolated_cli


@pytest.fixture(autouse=True)
def _no_server(monkeypatch):
    """The command's global changes are undone; starting a server fails the test."""

    def refuse(*_a, **_k):
        raise AssertionError("a Prefect server was started")

    monkeypatch.setattr(flows.server, "start_server", refuse)
    with isolated_cli():
        yield


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A 5-frame video, an audio file, a folder of 3 frames, and broken inputs."""
    d = tmp_path_factory.mktemp("media")
    _ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.2:r=25", "-pix_fmt", "yuv420p", str(d / "ok.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=0.3", str(d / "voice.m4a"))
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is not a video\n")
    (d / "frames").mkdir()
    for i in (1, 2, 10):  # numeric order: 1, 2, 10; grey level = the number
        cv2.imwrite(str(d / "frames" / f"{i}.png"), np.full((40, 48, 3), i, np.uint8))
    (d / "noframes").mkdir()
    (d / "noframes" / "readme.txt").write_text("no images here")
    return d


def _manifest(path: Path, videos: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "videos": videos}, sort_keys=False))
    return path


BAD = {  # id -> (manifest entry beside the media, words of the one-line error)
    "missing": ({"path": "gone.mp4"}, "gone.mp4: file not found"),
    "empty": ({"path": "empty.mp4"}, "empty.mp4: file is empty (0 bytes)"),
    "notvideo": ({"path": "notes.mp4"}, "notes.mp4: ffprobe cannot read it as a video"),
    "audio": ({"path": "voice.m4a"}, "voice.m4a: has no video stream (audio only"),
    "pastend": ({"path": "ok.mp4", "frame_range": [2, 9]},
                "ok.mp4: frame_range [2, 9) is past the end: the source has 5 frames (indices 0..4)"),
    "startpast": ({"path": "ok.mp4", "frame_range": [5, 6]}, "ok.mp4: frame_range [5, 6) is past the end"),
    "noframes": ({"path": "noframes"}, "noframes: is a directory with no frame images"),
    "framespast": ({"path": "frames", "frame_range": [0, 4]}, "frames: frame_range [0, 4) is past the end: the "
                                                              "source has 3 frames"),
    "nocams": ({"path": "ok.mp4", "cameras": "cams.npy"}, "cams.npy: cameras file not found"),
}


def test_every_bad_video_is_reported_at_once_before_anything_starts(media, tmp_path, capsys):
    manifest = _manifest(media / "bad.yaml", [{"id": k, **e} for k, (e, _) in BAD.items()])
    run = tmp_path / "run"
    assert main(["--quiet", "run", str(manifest), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == len(BAD), err  # one line each, all of them
    for (vid, (_, words)), line in zip(BAD.items(), lines):
        assert line.startswith(f"error: video '{vid}': ") and words in line, (vid, line)
    assert "nothing to run" in err and "Traceback" not in err
    # recorded in the run directory: `innout status` says why, `innout retry` re-checks them
    st = run_status(run)["videos"]
    for vid, (_, words) in BAD.items():
        e = st[vid]["error"]
        assert st[vid]["status"] == "failed" and e["stage"] == "frames" and e["kind"] == "BadInputError"
        assert words.split(": ", 1)[1] in e["message"], (vid, e)
    assert main(["status", str(run)]) == 1
    # an unchanged bad input is not re-attempted; a fixed one is checked afresh
    before = read_record(stage_dir(run, "missing", "frames")).attempts
    assert main(["--quiet", "retry", str(run)]) == 2
    assert read_record(stage_dir(run, "missing", "frames")).attempts == before
    capsys.readouterr()


def test_good_videos_run_while_bad_ones_are_reported(media, tmp_path, monkeypatch, capsys):
    """The flow gets only the good videos (a video file and a frames directory) and what was rejected."""
    import flows.dataset

    calls = []

    @contextlib.contextmanager
    def api(_home):
        yield "http://127.0.0.1:9/api"

    monkeypatch.setattr(flows.server, "prefect_api", api)
    monkeypatch.setattr(flows.dataset, "dataset_flow", lambda *a, **k: calls.append(k))
    manifest = _manifest(media / "mixed.yaml", [
        {"id": "good", "path": "ok.mp4", "frame_range": [0, 5]}, {"id": "missing", "path": "gone.mp4"},
        {"id": "folder", "path": "frames", "frame_range": [1, 3]}])
    code = main(["--quiet", "run", str(manifest), "--run-dir", str(tmp_path / "run")])
    assert code == 1  # the good ones did not run here (the flow is replaced): not done, not bad input
    assert len(calls) == 1 and calls[0]["only"] == ["good", "folder"]
    assert list(calls[0]["rejected"]) == ["missing"] and "file not found" in calls[0]["rejected"]["missing"]
    err = capsys.readouterr().err
    assert "error: video 'missing'" in err and "nothing to run" not in err


def test_frames_directory_is_extracted_in_numeric_order(media, tmp_path):
    """A frames directory is valid input: frame i is the i-th image by the number in its name."""
    from innout_core.config import ManifestVideo, PipelineConfig
    from tasks.common import VideoJob
    from tasks.frames import check_input, load_frames, run_frames

    job = VideoJob(tmp_path / "run", "run", ManifestVideo(id="f", path=media / "frames", frame_range=(1, 3)),
                   PipelineConfig.from_preset("tiny-demo"))
    info = check_input(job)
    assert (info.frame_count, info.width, info.height) == (3, 48, 40)
    run_frames(job)
    indices, paths, fps = load_frames(job)
    assert indices == [1, 2] and fps == "25/1"
    grey = [int(cv2.imread(str(p))[0, 0, 0]) for p in paths]
    assert grey == [2, 10]  # 2.png then 10.png (not 10.png before 2.png)


def test_frame_range_past_the_end_is_bad_input_in_the_stage_too(media, tmp_path):
    """The frames stage records a range past the end as bad input: `retry` does not re-run it unchanged."""
    from innout_core.config import ManifestVideo, PipelineConfig
    from innout_core.errors import StageError
    from tasks.common import VideoJob
    from tasks.frames import run_frames

    job = VideoJob(tmp_path / "run", "run", ManifestVideo(id="v", path=media / "ok.mp4", frame_range=(3, 40)),
                   PipelineConfig.from_preset("tiny-demo"))
    with pytest.raises(StageError, match="past the end") as info:
        run_frames(job)
    assert info.value.transient is False
    rec = read_record(job.stage_dir("frames"))
    assert rec.error.kind == "BadInputError" and rec.attempts == 1
    with pytest.raises(StageError, match="unchanged since the last attempt"):
        run_frames(job)
    assert read_record(job.stage_dir("frames")).attempts == 1


def test_bad_config_section_fails_before_the_run_directory_exists(media, tmp_path, capsys):
    manifest = _manifest(media / "one.yaml", [{"id": "good", "path": "ok.mp4"}])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("joint: {stepz: 3}\nface: {backend: nope}\n")
    run = tmp_path / "run"
    assert main(["run", str(manifest), "--config", str(cfg), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cfg}: ") and "\n" not in err, err
    assert "face.backend: Input should be" in err and "joint.stepz: Extra inputs are not permitted" in err
    assert not run.exists()


def test_workers_zero_is_refused(media, tmp_path, capsys):
    manifest = _manifest(media / "one.yaml", [{"id": "good", "path": "ok.mp4"}])
    assert main(["run", str(manifest), "--workers", "0", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: workers: Input should be greater than or equal to 1 (got 0): at least one worker " \
                  "process runs the videos", err
    assert main(["demo", "--workers", "0", "--run-dir", str(tmp_path / "demo")]) == 2
    assert "workers: Input should be greater" in capsys.readouterr().err and not (tmp_path / "demo").exists()


def test_run_directory_that_cannot_be_created_is_one_line(media, tmp_path, capsys):
    manifest = _manifest(media / "one.yaml", [{"id": "good", "path": "ok.mp4"}])
    (tmp_path / "afile").write_text("x")
    run = tmp_path / "afile" / "run"
    assert main(["run", str(manifest), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Not a directory" in err and str(tmp_path / "afile") in err, err
    assert "\n" not in err and "Traceback" not in err


def _deny_writes_under(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make creating anything under ``root`` fail with EACCES, as a 0500 directory does for a non-root user (root
    ignores the mode bits, and CI runs as root)."""
    def denied(path) -> PermissionError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def under(path) -> bool:
        return Path(os.fspath(path)).resolve().is_relative_to(root.resolve())

    real_open, real_os_open, real_mkdir = builtins.open, os.open, Path.mkdir

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and under(file):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(self, *args, **kwargs):
        if under(self) and not self.exists():
            raise denied(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(Path, "mkdir", guarded_mkdir)


def test_unwritable_run_directory_is_one_line(media, tmp_path, capsys, monkeypatch):
    manifest = _manifest(media / "one.yaml", [{"id": "good", "path": "ok.mp4"}])
    run = tmp_path / "ro"
    run.mkdir()
    run.chmod(0o500)
    if os.geteuid() == 0:
        _deny_writes_under(run, monkeypatch)
    try:
        assert main(["run", str(manifest), "--run-dir", str(run)]) == 2
    finally:
        run.chmod(0o700)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Permission denied" in err and str(run) in err and "\n" not in err


def test_os_errors_in_the_run_are_one_line_naming_the_path(media, tmp_path, capsys):
    """An OSError escaping a command (here: `videos` is a file, so no stage directory can be made) is one line."""
    manifest = _manifest(media / "one.yaml", [{"id": "missing", "path": "gone.mp4"}])
    run = tmp_path / "run"
    run.mkdir()
    (run / "videos").write_text("not a folder")
    code = main(["run", str(manifest), "--run-dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert str(run / "videos") in err and ("Not a directory" in err or "File exists" in err), err
    assert os_error_line(OSError(28, "No space left on device", "/x/a", None, "/x/b")) == \
        "/x/a -> /x/b: No space left on device"


def test_exit_code_rule():
    def v(status: str, stage: str | None = None, kind: str | None = None, done: int = 0) -> dict:
        stages = {f"s{i}": "done" for i in range(done)} | {"frames": status}
        return {"status": status, "stages": stages, "error": {"stage": stage, "kind": kind} if stage else None}

    assert exit_code({"a": v("done"), "b": v("done")}) == 0
    assert exit_code({"a": v("failed", "frames", "BadInputError"), "b": v("failed", "frames", "BadInputError")}) == 2
    assert exit_code({"a": v("done"), "b": v("failed", "frames", "BadInputError")}) == 1
    assert exit_code({"a": v("failed", "frames", "BadInputError"), "b": v("failed", "face", "StageError")}) == 1
    assert exit_code({"a": v("failed", "frames", "OSError")}) == 1  # not bad input
    assert exit_code({"a": v("pending")}) == 1  # interrupted
    # no face in any frame (face stage, bad input) for every video: nothing usable, exit 2
    assert exit_code({"a": v("failed", "face", "BadInputError", done=1)}) == 2
    assert exit_code({"a": v("failed", "face", "BadInputError", done=1), "b": v("damaged", "face",
                                                                              "DamagedOutputError")}) == 1
    assert exit_code({"a": v("failed", "invert-w", "DamagedOutputError", done=2)}) == 1


def test_truncated_video_is_rejected_before_the_run(media, tmp_path, capsys):
    """An mp4 cut short (its index at the front, so ffprobe still lists every frame) fails the check before the
    run: the last selected frames do not decode. Reported in one line naming the file, exit 2, quickly."""
    import time

    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=96x96:d=2:r=25", "-pix_fmt", "yuv420p", "-g", "10", "-movflags",
            "+faststart", str(tmp_path / "long.mp4"))
    data = (tmp_path / "long.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    man = _manifest(tmp_path / "m.yaml", [{"id": "cut", "path": "cut.mp4"}])
    t0 = time.perf_counter()
    code = main(["run", str(man), "--run-dir", str(tmp_path / "run")])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'cut.mp4'}: frames" in err and "truncated or corrupt" in err, err
    assert elapsed < 20, elapsed
    ok = _manifest(tmp_path / "ok.yaml", [{"id": "cut", "path": "long.mp4", "frame_range": [0, 5]}])
    from innout_core.config import load_config, load_manifest
    from flows.precheck import find_bad_inputs

    assert find_bad_inputs(load_manifest(ok), tmp_path / "run", load_config(None, "tiny-demo")) == {}
    cut_start = _manifest(tmp_path / "cs.yaml", [{"id": "cut", "path": "cut.mp4", "frame_range": [0, 5]}])
    assert find_bad_inputs(load_manifest(cut_start), tmp_path / "run", load_config(None, "tiny-demo")) == {}
