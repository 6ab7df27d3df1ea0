"""Benchmark of `innout demo`: wall time, CPU time and peak memory (the CLI process and all its children: Prefect
server, Dask workers) of the embedded default end to end, and what the demo shows: PSNR against the clean truth on
occluded frames of W+, PTI and each In-N-Out variant (reconstruction and OOD removal), read back from the run's
Parquet files. Prints a table and writes bench/results/demo.json.

    .venv/bin/python bench/demo.py [--videos 3] [--frames 3] [--run-dir /tmp/innout-demo-bench]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from innout_core.store import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def watch(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float | None = None
          ) -> tuple[int, float, int, int, list[float], str]:
    """Run ``cmd`` in its own process group, sampling every 0.5 s; returns (exit code, wall s, peak RSS bytes of
    the process tree, peak RSS of the process itself, 1-min load averages, stdout+stderr). Past ``timeout_s`` the
    whole group and every descendant (a Prefect server runs in its own session) are killed; the exit code is then
    -9."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    ps = psutil.Process(proc.pid)
    peak_tree = peak_main = 0
    load = []
    while proc.poll() is None:
        peak_tree = max(peak_tree, _tree_rss(ps))
        try:
            peak_main = max(peak_main, ps.memory_info().rss)
        except psutil.Error:
            pass
        load.append(os.getloadavg()[0])
        if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
            kids = ps.children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
            for k in kids:
                with contextlib.suppress(psutil.Error):
                    k.kill()
            proc.wait()
            break
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    reader.join(5)
    return proc.returncode, wall, peak_tree, peak_main, load, "".join(chunks)


def clean_truth_figures(run_dir: Path) -> dict[str, float | None]:
    """PSNR vs the clean truth on occluded frames (mean over frames per video, then over videos) of every method's
    reconstruction and every In-N-Out variant's removal, and the removal's margin over W+ (dB)."""
    from reports.tables import load_metrics

    df = load_metrics(run_dir)
    df = df[(df["mode"] == "video") & df["occluded"].fillna(False).astype(bool) & df["psnr_clean"].notna()]
    per_video = df.groupby(["method", "variant", "edit", "video"])["psnr_clean"].mean()
    means = per_video.groupby(level=[0, 1, 2]).mean()
    out: dict[str, float | None] = {}
    for (method, variant, edit), v in means.items():
        if edit in ("", "remove_ood"):
            name = method if not variant else f"{method} {variant}"
            out[f"{name} {'removal' if edit else 'reconstruction'}"] = round(float(v), 2)
    wplus = out.get("w+ reconstruction")
    for variant in ("user-masks", "auto-masks", "no-masks"):
        removal = out.get(f"innout {variant} removal")
        out[f"innout {variant} removal minus w+"] = None if wplus is None or removal is None else round(
            removal - wplus, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/innout-demo-bench"))
    args = ap.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    cmd = [sys.executable, "-c", "from flows.cli import main; main()", "--quiet", "demo", "--run-dir",
           str(args.run_dir), "--videos", str(args.videos), "--frames", str(args.frames)]
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, wall, peak_tree, peak_main, load, out = watch(cmd, env, REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    import torch
    import prefect
    import dask

    result = {
        "benchmark": "demo",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "mean_load_avg_1m": sum(load) / max(1, len(load))},
        "versions": {"torch": torch.__version__, "prefect": prefect.__version__, "dask": dask.__version__},
        "config": {"preset": "tiny-demo", "videos": args.videos, "frames": args.frames},
        "exit_code": rc,
        "wall_s": round(wall, 1),
        "peak_rss_all_processes_mib": round(peak_tree / 2**20, 1),
        "peak_rss_cli_mib": round(peak_main / 2**20, 1),
        "cpu_s_waited_processes": round(cpu_s, 1),
        "target_wall_s": 600,
        "vs_clean_occluded_psnr": clean_truth_figures(args.run_dir) if rc == 0 else None,
    }
    print(f"{'figure':32s} value")
    for k in ("exit_code", "wall_s", "peak_rss_all_processes_mib", "peak_rss_cli_mib", "target_wall_s"):
        print(f"{k:32s} {result[k]}")
    print(f"{'mean 1-min load average':32s} {result['machine']['mean_load_avg_1m']:.1f} (on {os.cpu_count()} cores)")
    for k, v in (result["vs_clean_occluded_psnr"] or {}).items():
        print(f"{k:32s} {v:.2f}" if isinstance(v, float) else f"{k:32s} {v}")
    dest = REPO / "bench" / "results" / "demo.json"
    atomic_write_json(dest, result)
    if rc != 0:
        print(out[-3000:])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
