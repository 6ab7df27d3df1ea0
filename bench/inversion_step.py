"""Seconds per W+ inversion step (one frame: synthesis forward + backward, L2 + LPIPS-VGG at full resolution, Adam),
fp32 vs bf16 autocast, side by side in one run, each in its own child process (peak memory is its own).

The W+ inversion is the largest item of a video's projected cost (200 steps per frame at the paper's schedule), so
``bench/video_cost.py`` uses these figures when this file's JSON exists. The initial latent search is not timed
(one l2-scored sample; the first step, which includes it, is the warm-up and is dropped). LPIPS-VGG uses random
trunk weights when the real backbone is absent (same cost). bf16 rows only run where the device supports it (CUDA,
or a CPU with native bf16).

    .venv/bin/python bench/inversion_step.py [--generators ffhq512-128 tiny] [--steps 2]

Writes ``bench/results/inversion_step.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import reply, run_child  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "inversion_step.json"


def _child(spec: dict) -> dict:
    """One measurement in this process: ``spec`` = generator, device, amp ("off"/"bf16"), steps, threads and
    optionally method ("w+", default, or "pti": PTI generator-tuning steps around a W+ pivot)."""
    import torch

    torch.set_num_threads(spec["threads"])
    import innout_core.inversion as inversion
    from innout_core.eg3d.configs import build_generator
    from stage_step import _cpu_s, _inputs, _lpips_for_timing

    dev = torch.device(spec["device"])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    G = build_generator(spec["generator"]).to(dev).requires_grad_(False)
    frames, c, _, _ = _inputs(G, 1, dev)
    method = spec.get("method", "w+")
    cfg = inversion.InversionConfig.preset("paper", "w+").model_copy(update={
        "steps": spec["steps"] + 1, "init_samples": 1, "init_metric": "l2", "lr_schedule": "constant",
        "amp": spec["amp"]})
    pivot = None
    if method == "pti":  # PTI steps tune G around an (untimed, 1-step) W+ pivot; the latent phase is skipped
        pivot = inversion.invert_video(G, frames, c, cfg.model_copy(update={"steps": 1}),
                                       torch.Generator(dev).manual_seed(0), lpips_loader=_lpips_for_timing)
        cfg = cfg.model_copy(update={"method": "pti", "pti_steps": spec["steps"] + 1})
    marks: list[tuple[float, float, float]] = []

    def progress(step: int, total: int, rec: dict) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), _cpu_s(), rec["loss"]))

    start = (time.perf_counter(), _cpu_s())
    inversion.invert_video(G, frames, c, cfg, torch.Generator(dev).manual_seed(0), progress=progress, pivot=pivot,
                           lpips_loader=_lpips_for_timing)
    walls = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpus = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return {"warmup_wall_s": marks[0][0] - start[0], "step_wall_s": walls, "step_cpu_s": cpus,
            "step_wall_median_s": statistics.median(walls), "step_cpu_median_s": statistics.median(cpus),
            "losses": [m[2] for m in marks],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "cuda_max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None}


def _run(spec: dict) -> dict:
    return run_child(__file__, json.dumps(spec), what=str(spec))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generators", nargs="+", default=["ffhq512-128", "tiny"])
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.child:
        return reply(_child(json.loads(a.child)))
    import torch

    from bench.machine import machine_info
    from innout_core.precision import cpu_has_native_bf16

    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for dev in devices:
        for gen in a.generators:
            amps = ["off", "bf16"] if dev == "cuda" or cpu_has_native_bf16() else ["off"]
            base = None
            for amp in amps:
                spec = {"generator": gen, "device": dev, "amp": amp, "steps": a.steps, "threads": a.threads}
                r = {**spec, **_run(spec)}
                base = base or r
                r["speedup_cpu_s"] = base["step_cpu_median_s"] / r["step_cpu_median_s"]
                r["speedup_wall_s"] = base["step_wall_median_s"] / r["step_wall_median_s"]
                rows.append(r)
                print(f"{dev:5s} {gen:12s} W+ step amp={amp:5s} {r['step_wall_median_s']:8.2f} s wall "
                      f"{r['step_cpu_median_s']:8.2f} s cpu  x{r['speedup_cpu_s']:.2f} cpu  "
                      f"peak {r['peak_rss_gb']:.2f} GB", flush=True)
    atomic_write_json(a.out, {"bench": "inversion_step", "machine": {**machine_info(), "cpu_native_bf16":
                                                                       cpu_has_native_bf16()},
                              "timed_steps": a.steps, "threads": a.threads, "rows": rows,
                              "notes": ["speedups are fp32 / variant for the same device and generator, same run",
                                        "cpu_s = process user+sys seconds; wall_s = elapsed",
                                        "ffhq512-128 uses random weights with the released shapes"]})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
