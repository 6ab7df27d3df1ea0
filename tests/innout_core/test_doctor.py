"""innout doctor core: the "nothing found" and "everything found" machines, built with temp dirs and env vars."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import pytest
import torch

import innout_core.doctor as doctor
import innout_core.precision as precision
from innout_core.doctor import Check, format_report, run_checks
from innout_core.errors import MissingWeightsError
from tests.innout_core.test_weights import write_fake_alexnet

ORCHESTRATION = {"prefect", "dask", "prefect-dask", "distributed"}


def _env(monkeypatch, tmp_path: Path) -> Path:
    for var, sub in (("TORCH_HOME", "torch"), ("INNOUT_WEIGHTS", "weights"), ("INNOUT_INSIGHTFACE_ROOT", "if"),
                     ("HOME", "home"), ("XDG_CACHE_HOME", "cache"), ("PATH", "bin")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    for var in ("INNOUT_FFMPEG", "INNOUT_FFPROBE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_nothing_found(monkeypatch, tmp_path: Path) -> None:
    _env(monkeypatch, tmp_path)
    import imageio_ffmpeg

    def no_bundled_ffmpeg() -> str:
        raise RuntimeError("no ffmpeg exe could be found")

    def no_dlib_models(key: str) -> Path:
        raise MissingWeightsError("dlib model needs the face_recognition_models package")

    real_version = importlib.metadata.version

    def version(dist: str) -> str:
        if dist in ORCHESTRATION:
            raise importlib.metadata.PackageNotFoundError(dist)
        return real_version(dist)

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_bundled_ffmpeg)
    monkeypatch.setattr(doctor, "find_dlib_model", no_dlib_models)
    monkeypatch.setattr(doctor.metadata, "version", version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)

    checks = run_checks()
    assert all(isinstance(c, Check) for c in checks)
    assert [c.name for c in checks if c.ok] == []
    by = {c.name: c for c in checks}
    assert "ffmpeg not found on PATH" in by["ffmpeg"].detail and "mp4 encoding" in by["ffmpeg"].without
    assert "ffprobe not found on PATH" in by["ffprobe"].detail
    assert str(tmp_path / "if" / "models" / "buffalo_l") in by["face backend: insightface"].detail
    assert "face_recognition_models" in by["face backend: dlib"].detail
    assert str(tmp_path / "weights" / "ffhqrebalanced512-128.pkl") in by["EG3D ffhqrebalanced512-128.pkl"].detail
    lp = by["LPIPS alex backbone alexnet-owt-7be5be79.pth"]
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in lp.detail
    assert "null with a reason" in lp.without
    assert "CPU" in by["GPU (CUDA)"].without
    assert "fp32" in by["CPU bf16"].without
    assert "not installed" in by["package prefect"].detail
    report = format_report(checks)
    assert report.count("[MISS]") == len(checks) and report.count("without it:") == len(checks)
    assert report.splitlines()[-1].startswith(f"0 of {len(checks)} checks ok")


def test_everything_found(monkeypatch, tmp_path: Path) -> None:
    real_ffmpeg, real_ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    assert real_ffmpeg and real_ffprobe
    root = _env(monkeypatch, tmp_path)
    for exe in (real_ffmpeg, real_ffprobe):
        os.symlink(exe, root / "bin" / Path(exe).name)
    pack = root / "if" / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    for f in ("det_10g.onnx", "2d106det.onnx", "1k3d68.onnx", "genderage.onnx", "w600k_r50.onnx"):
        (pack / f).write_bytes(b"onnx")
    (root / "weights" / "ffhqrebalanced512-128.pkl").write_bytes(b"pkl")
    for kind, name in (("interfacegan", "smile.npy"), ("styleclip", "eyeglasses.pt")):
        (root / "weights" / kind).mkdir()
        (root / "weights" / kind / name).write_bytes(b"x")
    write_fake_alexnet(root / "torch")
    (root / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth").write_bytes(b"x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake GPU {i}")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)

    checks = run_checks()
    assert [c.name for c in checks if not c.ok] == []
    by = {c.name: c for c in checks}
    assert by["ffmpeg"].detail.startswith("ffmpeg version") and str(root / "bin") in by["ffmpeg"].detail
    assert str(pack) in by["face backend: insightface"].detail
    assert "smile.npy" in by["interfacegan directions"].detail
    assert "2 device(s): Fake GPU 0; Fake GPU 1" in by["GPU (CUDA)"].detail
    assert by["package prefect"].detail == f"prefect {importlib.metadata.version('prefect')}"
    report = format_report(checks)
    assert "[MISS]" not in report and "without it" not in report
    assert report.splitlines()[-1] == f"{len(checks)} of {len(checks)} checks ok"


def test_incomplete_insightface_pack_named(monkeypatch, tmp_path: Path) -> None:
    root = _env(monkeypatch, tmp_path)
    pack = root / "if" / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    (pack / "w600k_r50.onnx").write_bytes(b"x")
    check = next(c for c in run_checks() if c.name == "face backend: insightface")
    assert not check.ok and "incomplete" in check.detail and "has w600k_r50.onnx" in check.detail
    assert "det_10g.onnx" in check.detail


@pytest.mark.parametrize("ok", [True, False])
def test_format_report_line_per_check(ok: bool) -> None:
    text = format_report([Check("thing", ok, "detail here", "something degrades")])
    assert text.splitlines()[0] == f"[{' ok ' if ok else 'MISS'}] thing  detail here"
    assert ("without it: something degrades" in text) is (not ok)
