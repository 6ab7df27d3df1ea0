"""Benchmark of `innout demo`: wall time and peak memory (the CLI process and all its children: Prefect server,
Dask workers) of the embedded default end to end. Prints a table and writes bench/results/demo.json.

    .venv/bin/python bench/demo.py [--videos 3] [--frames 3] [--run-dir /tmp/innout-demo-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
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
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
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
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_all_processes_mib": round(peak_tree / 2**20, 1),
        "peak_rss_cli_mib": round(peak_main / 2**20, 1),
        "target_wall_s": 600,
    }
    print(f"{'figure':32s} value")
    for k in ("exit_code", "wall_s", "peak_rss_all_processes_mib", "peak_rss_cli_mib", "target_wall_s"):
        print(f"{k:32s} {result[k]}")
    print(f"{'mean 1-min load average':32s} {result['machine']['mean_load_avg_1m']:.1f} (on {os.cpu_count()} cores)")
    dest = REPO / "bench" / "results" / "demo.json"
    atomic_write_json(dest, result)
    if proc.returncode != 0:
        print(out[-3000:])
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
