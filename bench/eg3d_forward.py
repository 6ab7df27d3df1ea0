"""Benchmark: seconds per ``TriPlaneGenerator.synthesis`` (batch 1, CPU float32) and peak RSS, per config.

Each config runs in its own child process (so peak RSS is that config's alone): build with random weights, one
warm-up call, then ``--repeats`` timed calls under ``torch.inference_mode``; the median and the stage breakdown
(backbone / renderer / SR) are reported. Prints a table and writes ``bench/results/eg3d_forward.json``.

    .venv/bin/python bench/eg3d_forward.py [--configs ffhq512-128 tiny] [--repeats 3] [--threads 2] [--no-official]

For configs with an official baseline, a second child runs the official-equivalent port
(``bench/eg3d_official_port.py``: the official CPU ref paths, same weights and inputs) so the JSON holds "ours vs
official-equivalent, measured in the same run" (wall and CPU seconds, peak RSS). For a same-process, interleaved
comparison with output differences, run ``bench/eg3d_official_port.py``.

Official baseline on this machine class (2-vCPU AMD EPYC, CPU fp32, ffhq512-128, 48+48 samples, neural 128):
7.0 s per image (backbone 1.0 s, renderer 2.9 s, SR 2.9 s), peak RSS 1.59-1.68 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import reply, run_child  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402

OFFICIAL = {"ffhq512-128": {"seconds": 7.0, "backbone": 1.0, "renderer": 2.9, "sr": 2.9, "peak_rss_gb": 1.68}}
RESULTS = Path(__file__).resolve().parent / "results" / "eg3d_forward.json"


def _child_official(name: str, repeats: int, threads: int) -> dict:
    """Child process: the official-equivalent port (bench/eg3d_official_port.py) on the same weights and inputs."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eg3d_official_port import _official, _setup

    g, ws, c = _setup(name, threads)
    totals, parts = [], {"backbone": [], "renderer": [], "sr": []}
    cpu = []
    with torch.no_grad():
        for i in range(repeats + 1):
            _, laps = _official(g, ws, c, i)
            if i == 0:
                continue  # warm-up
            totals.append(sum(v["wall_s"] for v in laps.values()))
            cpu.append(sum(v["cpu_s"] for v in laps.values()))
            for key in parts:
                parts[key].append(laps[key]["wall_s"])
    return {
        "config": name,
        "variant": "official-equivalent",
        "seconds_median": statistics.median(totals),
        "seconds_all": totals,
        "cpu_seconds_median": statistics.median(cpu),
        "breakdown_median": {"mapping": 0.0, **{k: statistics.median(v) for k, v in parts.items()}},
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "neural_rendering_resolution": g.neural_rendering_resolution,
        "samples_per_ray": [g.rendering.depth_resolution, g.rendering.depth_resolution_importance],
        "image_resolution": g.img_resolution,
    }


def time_synthesis(g, repeats: int, *, batch: int = 1, amp: str = "off", compile: bool = False,
                   compile_backend: str = "inductor") -> dict:
    """Seconds per synthesis of ``batch`` images on ``g``'s device: one warm-up call (which includes any
    ``torch.compile`` compilation, reported as ``warmup_s``), then ``repeats`` timed calls under ``inference_mode``;
    median total and per-stage breakdown (mapping / backbone / renderer / SR). ``amp``: "off", "bf16" or "fp16",
    resolved by ``innout_core.precision.use_amp`` (what the pipeline would run on this device; the effective
    dtype is reported). ``compile``: ``torch.compile`` the renderer and the SR separately (the backbone's
    per-block calls would exceed dynamo's recompile limit)."""
    import torch

    from innout_core.eg3d.camera import CANONICAL_FRONTAL_LABEL
    from innout_core.eg3d.generator import features_to_image
    from innout_core.precision import autocast, use_amp

    dev = next(g.parameters()).device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    dtype = use_amp(amp, dev)
    c = torch.tensor([CANONICAL_FRONTAL_LABEL], dtype=torch.float32, device=dev).repeat(batch, 1)
    z = torch.randn(batch, g.z_dim, generator=torch.Generator().manual_seed(0)).to(dev)
    r = g.neural_rendering_resolution
    backbone, render, superresolve = g.backbone_planes, g.render, g.superresolve
    if compile:  # the renderer and the SR (the stages compile the SR); the StyleGAN2 backbone stays eager
        render, superresolve = (torch.compile(f, backend=compile_backend) for f in (render, superresolve))
    totals, parts = [], {"mapping": [], "backbone": [], "renderer": [], "sr": []}
    cpu = []
    warmup = 0.0
    with torch.inference_mode(), autocast(dtype, dev):
        for i in range(repeats + 1):
            gen = torch.Generator(dev).manual_seed(i)
            sync()
            c0 = time.process_time()
            t0 = time.perf_counter()
            ws = g.mapping(z, c, truncation_psi=0.7)
            sync()
            t1 = time.perf_counter()
            planes = backbone(ws, noise_mode="const", generator=gen)
            sync()
            t2 = time.perf_counter()
            out = render(planes, c, generator=gen)
            feat = features_to_image(out.rgb, r)
            sync()
            t3 = time.perf_counter()
            img = superresolve(feat[:, :3], feat, ws)
            sync()
            t4 = time.perf_counter()
            c4 = time.process_time()
            if i == 0:
                warmup = t4 - t0
                continue  # warm-up
            totals.append(t4 - t0)
            cpu.append(c4 - c0)
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(dt)
    return {
        "seconds_median": statistics.median(totals),
        "seconds_all": totals,
        "cpu_seconds_median": statistics.median(cpu),
        "breakdown_median": {k: statistics.median(v) for k, v in parts.items()},
        "warmup_s": warmup,
        "batch": batch, "amp": amp, "dtype": str(dtype or torch.float32).replace("torch.", ""),
        "compile": compile, "compile_backend": compile_backend if compile else None,
        "image_finite": bool(torch.isfinite(img).all()),
        "neural_rendering_resolution": r,
        "samples_per_ray": [g.rendering.depth_resolution, g.rendering.depth_resolution_importance],
        "image_resolution": g.img_resolution,
    }


def _child(name: str, repeats: int, threads: int) -> dict:
    """Runs in the child process: build, warm up, time; returns the figures."""
    import torch

    torch.set_num_threads(threads)
    from innout_core.eg3d.configs import build_generator

    g = build_generator(name, seed=0)
    t = time_synthesis(g, repeats)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "config": name,
        "variant": "ours",
        **{k: t[k] for k in ("seconds_median", "seconds_all", "cpu_seconds_median", "breakdown_median")},
        "peak_rss_gb": peak_kb * 1024 / 1e9,
        **{k: t[k] for k in ("neural_rendering_resolution", "samples_per_ray", "image_resolution")},
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
    ap.add_argument("--no-official", action="store_true",
                    help="skip the official-equivalent row (bench/eg3d_official_port.py port, ffhq512-128 only)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.child:
        name, _, variant = args.child.partition(":")
        fn = _child_official if variant == "official" else _child
        return reply(fn(name, args.repeats, args.threads))
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = []
    children = []
    for name in args.configs:
        children.append(name)
        if name in OFFICIAL and not args.no_official:
            children.append(f"{name}:official")
    for child in children:
        results.append(run_child(__file__, child, "--repeats", str(args.repeats), "--threads", str(args.threads)))
    print(f"{'config':<14}{'variant':<21}{'s/img':>8}{'cpu s':>8}{'mapping':>9}{'backbone':>10}{'renderer':>10}"
          f"{'SR':>8}{'peak GB':>9}{'official s':>12}{'speed-up':>10}")
    same_run = {r["config"]: r for r in results if r["variant"] == "official-equivalent"}
    for r in results:
        b = r["breakdown_median"]
        off = OFFICIAL.get(r["config"]) if r["variant"] == "ours" else None
        ratio = f"{off['seconds'] / r['seconds_median']:.2f}x" if off else "-"
        print(f"{r['config']:<14}{r['variant']:<21}{r['seconds_median']:>8.3f}{r['cpu_seconds_median']:>8.3f}"
              f"{b['mapping']:>9.3f}{b['backbone']:>10.3f}{b['renderer']:>10.3f}{b['sr']:>8.3f}"
              f"{r['peak_rss_gb']:>9.2f}{(off['seconds'] if off else float('nan')):>12.1f}{ratio:>10}")
        if off:
            r["official_baseline"] = off
            r["speedup_vs_official"] = off["seconds"] / r["seconds_median"]
            ref = same_run.get(r["config"])
            if ref is not None:  # measured in this run, same weights and inputs, each in its own process
                r["speedup_vs_official_equivalent_same_run"] = {
                    "wall": ref["seconds_median"] / r["seconds_median"],
                    "cpu": ref["cpu_seconds_median"] / r["cpu_seconds_median"],
                    "peak_rss_ratio": r["peak_rss_gb"] / ref["peak_rss_gb"],
                }
                s = r["speedup_vs_official_equivalent_same_run"]
                print(f"{'':<14}ours vs official-equivalent (same run): {s['wall']:.2f}x wall, {s['cpu']:.2f}x CPU, "
                      f"peak RSS {s['peak_rss_ratio']:.2f}x")
    payload = {"benchmark": "eg3d_forward", "machine": _machine(load_at_start), "threads": args.threads,
               "repeats": args.repeats, "results": results,
               "note": "official baseline measured by the reference-data author on this machine class, unloaded"}
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
