"""Projected hours for one 200-frame video at the paper's schedule, official-equivalent vs fast configuration.

Schedule (paper §5 / docs/method.md §8): W+ inversion (``--inversion-steps-per-frame`` steps per frame, paper 200 epochs
over the frames = 200 steps per frame), stage A 10 000 steps, stage B 100 epochs over all frames. Per-step
figures come from ``bench/results/stage_step.json`` (run ``bench/stage_step.py`` first, or pass ``--measure``):
stage A = the measured step, stage B = the measured epoch (for its frame count) scaled to 200 frames. A W+
inversion step is one synthesis forward + backward through backbone, renderer and SR, i.e. about a stage-A step
without the OOD field. It is taken from ``bench/results/inversion_step.json`` when that exists (official: the fp32
row; fast: the bf16 row where one was measured, as the ``fast`` preset turns bf16 on), else estimated as the fp32
fast stage-A step (the same for both variants); ``--inversion-step-s`` overrides both.

    .venv/bin/python bench/video_cost.py [--frames 200] [--generator ffhq512-128] [--device cpu] [--measure]

Writes ``bench/results/video_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from innout_core.store import atomic_write_json

HERE = Path(__file__).resolve().parent
STAGE_STEP = HERE / "results" / "stage_step.json"
INVERSION_STEP = HERE / "results" / "inversion_step.json"
RESULTS = HERE / "results" / "video_cost.json"
PAPER_HOURS = {"ours_total": 2.68, "w+": 0.49, "pti": 1.45, "gpu": "RTX A6000"}


def project(summary: list[dict], generator: str, device: str, frames: int, steps_a: int, epochs_b: int,
            inversion_steps: int, inversion_step_s: float | None, clock: str,
            inversion_rows: list[dict] | None = None, rows: list[dict] | None = None) -> dict:
    """Hours per stage and in total for the official and fast variants (``clock`` = 'cpu_s' or 'wall_s').
    ``summary``/``rows``: ``stage_step.json``'s (``rows`` default: the ones :func:`main` loaded)."""
    sel = {(s["stage"], s["variant"]): s for s in summary if s["generator"] == generator and s["device"] == device}
    if ("A", "official") not in sel or ("B", "fast") not in sel:
        raise SystemExit(f"stage_step.json has no {generator}/{device} rows; run bench/stage_step.py first")
    b_frames = next(r for r in (_rows if rows is None else rows)
                    if r["generator"] == generator and r["device"] == device
                    and r["stage"] == "B")["epoch_frames"]
    estimate = sel.get(("A", "fast, fp32"), sel[("A", "fast")])[clock]
    measured = {r["amp"]: r[f"step_{clock.split('_')[0]}_median_s"] for r in inversion_rows or []
                if r["generator"] == generator and r["device"] == device}
    fp32 = measured.get("off", estimate)
    inv_by_variant = {"official": fp32, "fast": measured.get("bf16", fp32)}
    out = {}
    for variant in ("official", "fast"):
        inv = inversion_step_s if inversion_step_s is not None else inv_by_variant[variant]
        a = sel[("A", variant)][clock] * steps_a
        b = sel[("B", variant)][clock] * frames / b_frames * epochs_b
        w = inv * inversion_steps * frames
        out[variant] = {"inversion_h": w / 3600, "inversion_step_s": inv, "stage_a_h": a / 3600, "stage_b_h": b / 3600,
                        "stage_a_step_s": sel[("A", variant)][clock],
                        "stage_b_epoch_s_per_frame": sel[("B", variant)][clock] / b_frames,
                        "total_h": (w + a + b) / 3600, "in_n_out_h (A+B)": (a + b) / 3600}
    out["speedup_total"] = out["official"]["total_h"] / out["fast"]["total_h"]
    out["speedup_in_n_out"] = out["official"]["in_n_out_h (A+B)"] / out["fast"]["in_n_out_h (A+B)"]
    return out


_rows: list[dict] = []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--generator", default="ffhq512-128")
    ap.add_argument("--device", default=None, help="default: every device in stage_step.json")
    ap.add_argument("--stage-a-steps", type=int, default=10_000)
    ap.add_argument("--stage-b-epochs", type=int, default=100)
    ap.add_argument("--inversion-steps-per-frame", type=int, default=200, help="paper: 200 epochs")
    ap.add_argument("--inversion-step-s", type=float, default=None, help="seconds per W+ step (else estimated)")
    ap.add_argument("--measure", action="store_true", help="run bench/stage_step.py --quick first")
    ap.add_argument("--stage-step", type=Path, default=STAGE_STEP)
    ap.add_argument("--inversion-step", type=Path, default=INVERSION_STEP)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.measure:
        subprocess.run([sys.executable, str(HERE / "stage_step.py"), "--quick", "--no-switches", "--generators",
                        a.generator, "--out", str(a.stage_step)], check=True)
    if not a.stage_step.exists():
        raise SystemExit(f"{a.stage_step}: not found; run bench/stage_step.py first or pass --measure")
    data = json.loads(a.stage_step.read_text())
    _rows[:] = data["rows"]
    inv_rows = json.loads(a.inversion_step.read_text())["rows"] if a.inversion_step.exists() else None
    devices = [a.device] if a.device else sorted({s["device"] for s in data["summary"]})
    results = {}
    print(f"one {a.frames}-frame video, {a.generator}: W+ {a.inversion_steps_per_frame} steps/frame, stage A "
          f"{a.stage_a_steps} steps, stage B {a.stage_b_epochs} epochs")
    print(f"{'device':7s}{'clock':8s}{'variant':10s}{'W+ h':>8s}{'A h':>9s}{'B h':>9s}{'A+B h':>9s}{'total h':>9s}")
    for dev in devices:
        for clock in ("cpu_s", "wall_s"):
            p = project(data["summary"], a.generator, dev, a.frames, a.stage_a_steps, a.stage_b_epochs,
                        a.inversion_steps_per_frame, a.inversion_step_s, clock, inv_rows)
            results[f"{dev}/{clock}"] = p
            for v in ("official", "fast"):
                r = p[v]
                print(f"{dev:7s}{clock:8s}{v:10s}{r['inversion_h']:8.1f}{r['stage_a_h']:9.1f}{r['stage_b_h']:9.1f}"
                      f"{r['in_n_out_h (A+B)']:9.1f}{r['total_h']:9.1f}")
            print(f"{'':15s}speed-up: A+B {p['speedup_in_n_out']:.2f}x, total {p['speedup_total']:.2f}x")
    payload = {"bench": "video_cost", "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
               "source": str(a.stage_step), "source_machine": data.get("machine"), "frames": a.frames,
               "generator": a.generator, "schedule": {"stage_a_steps": a.stage_a_steps,
                                                      "stage_b_epochs": a.stage_b_epochs,
                                                      "inversion_steps_per_frame": a.inversion_steps_per_frame},
               "inversion_step_s": a.inversion_step_s or (str(a.inversion_step) if inv_rows else
                                                           "estimated = fp32 fast stage-A step"), "projection": results,
               "paper_hours": PAPER_HOURS}
    atomic_write_json(a.out, payload)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
