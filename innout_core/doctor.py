"""``innout doctor``'s core: what is installed, which weights were found where, and what runs without each.

:func:`run_checks` never raises for a missing piece: each :class:`Check` says ``ok``, a one-line ``detail`` (version,
path found, or the places searched) and ``without`` (what innout does when it is absent). :func:`format_report`
renders them as plain text. Imports nothing from Prefect or Dask (their versions come from package metadata).
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import torch

from innout_core.errors import InnoutError
from innout_core.weights import (
    ARCFACE_MODEL,
    DLIB_MODELS,
    INSIGHTFACE_PACK,
    find_dlib_model,
    find_weights,
    insightface_pack_dirs,
)

__all__ = ["Check", "run_checks", "format_report"]

INSIGHTFACE_NEEDED = ("det_10g.onnx", "2d106det.onnx", ARCFACE_MODEL)


@dataclass(frozen=True)
class Check:
    """One doctor line: ``name``, whether it is usable, a one-line ``detail``, and what happens ``without`` it."""

    name: str
    ok: bool
    detail: str
    without: str


def _tool(name: str, locate: Callable[[], str], without: str) -> Check:
    try:
        exe = locate()
    except InnoutError as err:
        return Check(name, False, str(err), without)
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, False, f"{exe} does not run ({exc})", without)
    first = (out.stdout or out.stderr).strip().splitlines()
    if out.returncode != 0 or not first:
        return Check(name, False, f"{exe} -version failed (exit {out.returncode})", without)
    return Check(name, True, f"{first[0].split(' Copyright')[0]} ({exe})", without)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _insightface() -> Check:
    without = ("use the dlib face backend; identity similarity uses the dlib descriptor if chosen, "
               "otherwise id_sim is null with a reason")
    missing_pkgs = [m for m in ("insightface", "onnxruntime") if importlib.util.find_spec(m) is None]
    dirs = insightface_pack_dirs(INSIGHTFACE_PACK)
    pack = next((d for d in dirs if all((d / f).is_file() for f in INSIGHTFACE_NEEDED)), None)
    if missing_pkgs:
        return Check("face backend: insightface", False, f"python package(s) {', '.join(missing_pkgs)} missing",
                     without)
    if pack is None:
        partial = next((d for d in dirs if d.is_dir()), None)
        have = sorted(p.name for p in partial.glob("*.onnx")) if partial else []
        detail = (f"{INSIGHTFACE_PACK} pack incomplete in {partial} (has {', '.join(have) or 'no .onnx'}; needs "
                  f"{', '.join(INSIGHTFACE_NEEDED)})" if partial else
                  f"{INSIGHTFACE_PACK} pack not found (looked in: {', '.join(map(str, dirs))}); unpack it into "
                  f"$INNOUT_INSIGHTFACE_ROOT/models/{INSIGHTFACE_PACK}/")
        return Check("face backend: insightface", False, detail, without)
    providers = ""
    try:
        import onnxruntime

        providers = f", onnxruntime {onnxruntime.__version__} [{', '.join(onnxruntime.get_available_providers())}]"
    except Exception as exc:  # a broken onnxruntime install must not stop the doctor
        return Check("face backend: insightface", False, f"onnxruntime does not import ({exc})", without)
    return Check("face backend: insightface", True, f"{INSIGHTFACE_PACK} in {pack}{providers}", without)


def _dlib() -> Check:
    without = "no dlib face backend (use insightface or given landmarks) and no dlib identity descriptor"
    if importlib.util.find_spec("dlib") is None:
        return Check("face backend: dlib", False, "python package dlib missing: pip install dlib-bin", without)
    found, missing = [], []
    for key in DLIB_MODELS:
        try:
            found.append(find_dlib_model(key))
        except InnoutError as err:
            missing.append(str(err))
    if missing:
        return Check("face backend: dlib", False, missing[0], without)
    return Check("face backend: dlib", True, f"{len(found)} models in {found[0].parent}", without)


def _gpu() -> Check:
    without = "everything runs on the CPU: fine for the tiny demo, hours per video with the real EG3D generator"
    if not torch.cuda.is_available():
        return Check("GPU (CUDA)", False, f"no CUDA device visible to torch {torch.__version__}", without)
    n = torch.cuda.device_count()
    names = [torch.cuda.get_device_name(i) for i in range(n)]
    return Check("GPU (CUDA)", True, f"{n} device(s): {'; '.join(names)} (torch {torch.__version__}, CUDA "
                                     f"{torch.version.cuda})", without)


def _cpu_bf16() -> Check:
    from innout_core.precision import cpu_has_native_bf16

    without = "amp: bf16 runs in fp32 on this CPU (same results, no bf16 speed-up)"
    if cpu_has_native_bf16():
        return Check("CPU bf16", True, "native (oneDNN AVX512-BF16/AMX): amp: bf16 speeds up the CPU stages", without)
    return Check("CPU bf16", False, "no native bf16 instructions", without)


def _packages() -> list[Check]:
    checks = []
    for dist, without in (
        ("prefect", "no flows: `innout run/retry/demo` cannot run (innout_core still works as a library)"),
        ("dask", "no parallel fan-out over videos"),
        ("prefect-dask", "no DaskTaskRunner: videos run one after another"),
        ("distributed", "no Dask LocalCluster or cluster address"),
    ):
        v = _version(dist)
        checks.append(Check(f"package {dist}", v is not None, f"{dist} {v}" if v else f"{dist} not installed",
                            without))
    return checks


def run_checks() -> list[Check]:
    """Every check, in report order: tools, face backends, weights, GPU, orchestration packages."""
    from innout_core.video import ffmpeg_exe, ffprobe_exe

    checks = [
        _tool("ffmpeg", ffmpeg_exe, "no frame extraction or mp4 encoding: video inputs and result videos fail"),
        _tool("ffprobe", ffprobe_exe, "videos cannot be probed: every video input fails (frame folders still work)"),
        _insightface(),
        _dlib(),
    ]
    for w in find_weights():
        if w.name.startswith(("dlib ", f"insightface {INSIGHTFACE_PACK}/det")):
            continue  # covered by the face backend checks above
        if w.ok:
            detail = f"found {w.found}" + (f" ({w.extra['files']})" if w.extra.get("files") else "")
        else:
            detail = f"not found (looked in: {', '.join(map(str, w.searched))}); {w.how}"
        checks.append(Check(w.name, w.ok, detail, w.without))
    checks.append(_gpu())
    checks.append(_cpu_bf16())
    checks.extend(_packages())
    return checks


def format_report(checks: list[Check]) -> str:
    """Plain-text report: one ``[ ok ]``/``[MISS]`` line per check with its detail, and for each missing piece a
    ``without it:`` line; a summary line last."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"[{' ok ' if c.ok else 'MISS'}] {c.name.ljust(width)}  {c.detail}")
        if not c.ok:
            lines.append(f"       {''.ljust(width)}  without it: {c.without}")
    n_ok = sum(c.ok for c in checks)
    lines.append(f"{n_ok} of {len(checks)} checks ok" + ("" if n_ok == len(checks) else
                                                          "; innout runs with the limits listed above"))
    return "\n".join(lines)
