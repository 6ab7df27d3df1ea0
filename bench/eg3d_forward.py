"""Benchmark: seconds per ``TriPlaneGenerator.synthesis`` (batch 1, CPU float32) and peak RSS, per config.

Each config runs in its own child process (so peak RSS is that config's alone): build with random weights, one
warm-up call, then ``--repeats`` timed calls under ``torch.inference_mode``; the median and the stage breakdown
(backbone / renderer / SR) are reported. Prints a table and writes ``bench/results/eg3d_forward.json``.

    .venv/bin/python bench/eg3d_forward.py [--configs ffhq512-128 tiny] [--repeats 3] [--threads 2]

Official baseline on this machine class (2-vCPU AMD EPYC, CPU fp32, ffhq512-128, 48+48 samples, neural 128):
7.0 s per image (backbone 1.0 s, renderer 2.9 s, SR 2.9 s), peak RSS 1.59-1.68 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OFFICIAL = {"ffhq512-128": {"seconds": 7.0, "backbone": 1.0, "renderer": 2.9, "sr": 2.9, "peak_rss_gb": 1.68}}
RESULTS = Path(__file__).resolve().parent / "results" / "eg3d_forward.json"


def _child(name: str, repeats: int, threads: int) -> dict:
    """Runs in the child process: build, warm up, time; returns the figures."""
    import torch

    torch.set_num_threads(threads)
    from innout_core.eg3d.configs import build_generator
    from innout_core.eg3d.generator import features_to_image

    g = build_generator(name, seed=0)
    c = torch.tensor([[1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1.0]])
    z = torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0))
    r = g.neural_rendering_resolution
    totals, parts = [], {"mapping": [], "backbone": [], "renderer": [], "sr": []}
    with torch.inference_mode():
        for i in range(repeats + 1):
            gen = torch.Generator().manual_seed(i)
            t0 = time.perf_counter()
            ws = g.mapping(z, c, truncation_psi=0.7)
            t1 = time.perf_counter()
            planes = g.backbone_planes(ws, noise_mode="const", generator=gen)
            t2 = time.perf_counter()
            out = g.render(planes, c, generator=gen)
            feat = features_to_image(out.rgb, r)
            t3 = time.perf_counter()
            g.superresolve(feat[:, :3], feat, ws)
            t4 = time.perf_counter()
            if i == 0:
                continue  # warm-up
            totals.append(t4 - t0)
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(dt)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "config": name,
        "seconds_median": statistics.median(totals),
        "seconds_all": totals,
        "breakdown_median": {k: statistics.median(v) for k, v in parts.items()},
        "peak_rss_gb": peak_kb * 1024 / 1e9,
        "neural_rendering_resolution": r,
        "samples_per_ray": [g.rendering.depth_resolution, g.rendering.depth_resolution_importance],
        "image_resolution": g.img_resolution,
    }


def _machine(load_at_start: tuple[float, float, float] | None) -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load_end = os.getloadavg()
    except OSError:
        load_end = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_end,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["ffhq512-128", "tiny"])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.repeats, args.threads)))
        return 0
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = []
    for name in args.configs:
        cmd = [sys.executable, __file__, "--child", name, "--repeats", str(args.repeats), "--threads",
               str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'config':<14}{'s/img':>8}{'mapping':>9}{'backbone':>10}{'renderer':>10}{'SR':>8}{'peak GB':>9}"
          f"{'official s':>12}{'speed-up':>10}")
    for r in results:
        b = r["breakdown_median"]
        off = OFFICIAL.get(r["config"])
        ratio = f"{off['seconds'] / r['seconds_median']:.2f}x" if off else "-"
        print(f"{r['config']:<14}{r['seconds_median']:>8.3f}{b['mapping']:>9.3f}{b['backbone']:>10.3f}"
              f"{b['renderer']:>10.3f}{b['sr']:>8.3f}{r['peak_rss_gb']:>9.2f}"
              f"{(off['seconds'] if off else float('nan')):>12.1f}{ratio:>10}")
        if off:
            r["official_baseline"] = off
            r["speedup_vs_official"] = off["seconds"] / r["seconds_median"]
    payload = {"benchmark": "eg3d_forward", "machine": _machine(load_at_start), "threads": args.threads,
               "repeats": args.repeats, "results": results,
               "note": "official baseline measured by the reference-data author on this machine class, unloaded"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
