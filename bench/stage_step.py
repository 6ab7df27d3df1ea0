"""Seconds per stage-A step and per stage-B step / epoch: official-equivalent configuration vs our fast one.

Both configurations run the same losses (the released default script: user masks, RAW_L2 + RAW_L2_O + LPIPS-VGG +
SR_L2 + entropy(b^2) + area, w+ at lr/100) on the same inputs, side by side in one run, each in its own child
process (so peak memory is that configuration's alone):

* ``official``: the release's cost profile: release OOD sample ordering (its extra OOD importance pass), the
  zero-weight OOD-only SR computed anyway, the plain (unfused) OOD query and composite, fp32 eager; stage B
  uncached with the release's needless backward through the renderer.
* ``fast``: our defaults: intended shared samples (no OOD importance pass), no OOD-only SR (weight 0), fused OOD
  query + composite; stage B on cached SR inputs; bf16 autocast on CUDA and on CPUs with native bf16
  (AVX512-BF16 / AMX; ``--no-cpu-bf16`` keeps fp32), ``torch.compile`` on CUDA. ``fast, fp32`` is the same
  configuration without autocast.
* one row per switch: the official configuration with that one switch flipped to its fast value.

Per-step figures come from the stage's own ``progress`` callback (wall and process CPU seconds between calls; the
first step is the warm-up and is dropped). CPU seconds are reported next to wall seconds because the 2-core
machine is shared: under load, wall time measures the neighbours too. A stage-B epoch of ``T`` frames is
``ceil(T / batch) * step`` (uncached) plus, when cached, ``T * render / 100`` (one render per frame amortised over
the paper's 100 epochs). LPIPS-VGG uses random trunk weights when the real backbone is absent (same cost).

    .venv/bin/python bench/stage_step.py [--quick] [--generators ffhq512-128 tiny] [--steps 2] [--frames 2]

Writes ``bench/results/stage_step.json``.
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
from bench.machine import machine_info  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "stage_step.json"
PAPER_EPOCHS_B = 100

# stage-A variants: name -> JointConfig overrides on top of the `official` preset
OFFICIAL_A = {"release_sample_order": True, "compute_unused": True, "fused": False, "amp": "off", "compile": False}
FAST_A = {"release_sample_order": False, "compute_unused": False, "fused": True}
FAST_A_CUDA = {**FAST_A, "amp": "bf16", "compile": True}
SWITCHES_A = {
    "no OOD importance pass (intended sample order)": {"release_sample_order": False},
    "no OOD-only SR (SR_O weight 0)": {"compute_unused": False},
    "fused OOD query + composite": {"fused": True},
}
SWITCHES_A_CUDA = {"torch.compile": {"compile": True}}
BF16 = {"bf16 autocast": {"amp": "bf16"}}  # CUDA, and CPUs with native bf16 (AVX512-BF16 / AMX)
OFFICIAL_B = {"cached": False, "release_render_grad": True, "fused": False, "amp": "off", "compile": False}
FAST_B = {"cached": True, "release_render_grad": False, "fused": True}
FAST_B_CUDA = {**FAST_B, "amp": "bf16", "compile": True}
SWITCHES_B = {
    "no backward through the render": {"release_render_grad": False},
    "cached SR inputs": {"cached": True, "release_render_grad": False},
    "fused render (uncached)": {"fused": True},
    "cached + 2 frames per step": {"cached": True, "release_render_grad": False, "batch_frames": 2},
}
SWITCHES_B_CUDA = {"torch.compile": {"compile": True}}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _lpips_for_timing(net: str = "vgg", spatial: bool = True, device="cpu"):
    """The real LPIPS if its backbone is installed, else the same network with a random trunk (same cost)."""
    import warnings

    import lpips

    from innout_core.errors import MissingWeightsError
    from innout_core.losses import load_lpips

    try:
        return load_lpips(net, spatial, device)
    except MissingWeightsError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = lpips.LPIPS(net=net, pnet_rand=True, pretrained=True, spatial=spatial, verbose=False)
        m = m.to(device).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        return m


def _inputs(G, T: int, device):
    import torch

    from innout_core.eg3d.camera import orbit_labels

    H = G.init_kwargs["img_resolution"]
    g = torch.Generator().manual_seed(0)
    c = orbit_labels(T, 0.3, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(T, G.z_dim, generator=g), c)
    frames = torch.rand(T, 3, H, H, generator=g) * 2 - 1
    masks = torch.ones(T, 1, H, H)
    masks[:, :, : H // 3] = 0  # top third OOD
    return frames.to(device), c.to(device), ws.to(device), masks.to(device)


def _timed_progress(marks: list[tuple[float, float]]):
    def cb(step: int, total: int, rec: dict) -> None:
        if torch_sync is not None:
            torch_sync()
        marks.append((time.perf_counter(), _cpu_s()))

    return cb


torch_sync = None


def _child(spec: dict) -> dict:
    """One (generator, stage, variant) measurement in this process."""
    global torch_sync
    import torch

    torch.set_num_threads(spec["threads"])
    import innout_core.joint as joint
    import innout_core.sr_tuning as sr_tuning
    from innout_core.eg3d.configs import build_generator
    from innout_core.ood import OODField

    dev = torch.device(spec["device"])
    if dev.type == "cuda":
        torch_sync = torch.cuda.synchronize
        torch.cuda.reset_peak_memory_stats()
    G = build_generator(spec["generator"]).to(dev)
    G.requires_grad_(False)
    n_steps = spec["steps"] + 1  # + warm-up
    marks: list[tuple[float, float]] = []
    start = (time.perf_counter(), _cpu_s())
    out: dict = {}
    if spec["stage"] == "A":
        frames, c, ws, masks = _inputs(G, 2, dev)
        cfg = joint.JointConfig.preset("official").model_copy(
            update={"steps": n_steps, "checkpoint_every": 0, **spec["overrides"]})
        res = joint.run_stage_a(G, frames, c, ws, cfg, torch.Generator(dev).manual_seed(1), masks=masks,
                                progress=_timed_progress(marks), lpips_loader=_lpips_for_timing)
        out["losses_first_step"] = res.losses[0]
    else:
        T = spec["frames"]
        frames, c, ws, _ = _inputs(G, T, dev)
        R = G.neural_rendering_resolution
        ood = OODField(T, 32, 256 if spec["generator"] == "ffhq512-128" else 32,
                       generator=torch.Generator().manual_seed(1)).to(dev)
        sa = joint.StageAResult(ood.ood_state(), ood.phi.detach().clone(), ws, [], 0.0, neural_resolution=R)
        cfg = sr_tuning.SRTuningConfig.preset("official").model_copy(
            update={"epochs": n_steps, "checkpoint_every": 0, **spec["overrides"]})
        cfg_steps = n_steps
        calls = []

        def stop_after(step, total, rec):
            calls.append(rec)
            _timed_progress(marks)(step, total, rec)
            if step >= cfg_steps:
                raise _Stop

        try:
            sr_tuning.run_stage_b(G, sa, frames, c, cfg, torch.Generator(dev).manual_seed(3), progress=stop_after,
                                  lpips_loader=_lpips_for_timing)
        except _Stop:
            pass
        out["losses_first_step"] = calls[0]
        # one SR-input render, timed alone (the cached mode does T of them once per run)
        t0, c0 = time.perf_counter(), _cpu_s()
        sr_tuning.sr_inputs(G, ood.requires_grad_(False), sa, c, 0, torch.Generator(dev).manual_seed(5),
                            fused=cfg.fused)
        if torch_sync is not None:
            torch_sync()
        out["render_wall_s"], out["render_cpu_s"] = time.perf_counter() - t0, _cpu_s() - c0
    walls = [b[0] - a[0] for a, b in zip([start, *marks[:-1]], marks)]
    cpus = [b[1] - a[1] for a, b in zip([start, *marks[:-1]], marks)]
    out.update({
        "warmup_wall_s": walls[0], "step_wall_s": walls[1:], "step_cpu_s": cpus[1:],
        "step_wall_median_s": statistics.median(walls[1:]) if len(walls) > 1 else walls[0],
        "step_cpu_median_s": statistics.median(cpus[1:]) if len(cpus) > 1 else cpus[0],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "cuda_max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None,
    })
    return out


class _Stop(Exception):
    pass


def _run(spec: dict) -> dict:
    return run_child(__file__, json.dumps(spec), what=f"{spec['generator']} stage {spec['stage']} {spec['variant']}")


def variants(stage: str, cuda: bool, cpu_bf16: bool, switches: bool) -> dict[str, dict]:
    """Variant name -> config overrides for one stage: ``official``, ``fast`` (bf16 on CUDA and on CPUs with native
    bf16, ``torch.compile`` on CUDA), ``fast, fp32`` where bf16 is on, and with ``switches`` one row per switch."""
    off = OFFICIAL_A if stage == "A" else OFFICIAL_B
    fast = (FAST_A_CUDA if cuda else FAST_A) if stage == "A" else (FAST_B_CUDA if cuda else FAST_B)
    bf16 = cuda or cpu_bf16
    fast = {**fast, "amp": "bf16"} if bf16 else fast
    out = {"official": off, "fast": {**off, **fast}}
    if bf16:  # the same fast path in fp32: what the bf16 switch adds on top
        out["fast, fp32"] = {**off, **fast, "amp": "off"}
    if switches:
        sw = SWITCHES_A if stage == "A" else SWITCHES_B
        sw = {**sw, **(BF16 if bf16 else {})}
        if cuda:
            sw = {**sw, **(SWITCHES_A_CUDA if stage == "A" else SWITCHES_B_CUDA)}
        out.update({f"official + {k}": {**off, **v} for k, v in sw.items()})
    return out


def with_epoch(r: dict, spec: dict) -> dict:
    """Add the spec's identity and, for stage B, the epoch figures (``epoch_cpu_s``/``epoch_wall_s`` for
    ``spec['frames']`` frames, the cached render amortised over the paper's epochs) to a measurement ``r``."""
    ov = spec["overrides"]
    r.update({k: spec[k] for k in ("generator", "device", "stage", "variant", "overrides")})
    if spec["stage"] == "B":
        T = spec["frames"]
        amort = T * r["render_cpu_s"] / PAPER_EPOCHS_B if ov.get("cached") else 0.0
        amort_w = T * r["render_wall_s"] / PAPER_EPOCHS_B if ov.get("cached") else 0.0
        n = -(-T // ov.get("batch_frames", 1))  # steps per epoch
        r["epoch_frames"] = T
        r["epoch_cpu_s"] = n * r["step_cpu_median_s"] + amort
        r["epoch_wall_s"] = n * r["step_wall_median_s"] + amort_w
    return r


def measure(spec: dict, in_process: bool = False) -> dict:
    """One measurement (its own child process unless ``in_process``), with :func:`with_epoch`'s figures."""
    return with_epoch(_child(spec) if in_process else _run(spec), spec)


def summarize(rows: list[dict]) -> list[dict]:
    """One summary row per measurement: the stage's unit (A: step, B: epoch), CPU and wall seconds, speed-up over
    the ``official`` row of the same device, generator and stage (measured in the same run), peak memory."""
    summary = []
    keys = list(dict.fromkeys((r["device"], r["generator"], r["stage"]) for r in rows))
    for dev, gen, stage in keys:
        sel = {r["variant"]: r for r in rows if (r["device"], r["generator"], r["stage"]) == (dev, gen, stage)}
        if "official" not in sel:
            continue
        key = "step" if stage == "A" else "epoch"
        o = sel["official"]
        for name, r in sel.items():
            summary.append({
                "device": dev, "generator": gen, "stage": stage, "variant": name, "unit": key,
                "cpu_s": r[f"{key}_cpu_s" if stage == "B" else "step_cpu_median_s"],
                "wall_s": r[f"{key}_wall_s" if stage == "B" else "step_wall_median_s"],
                "speedup_cpu_s": (o["epoch_cpu_s"] / r["epoch_cpu_s"]) if stage == "B"
                else o["step_cpu_median_s"] / r["step_cpu_median_s"],
                "speedup_wall_s": (o["epoch_wall_s"] / r["epoch_wall_s"]) if stage == "B"
                else o["step_wall_median_s"] / r["step_wall_median_s"],
                "peak_rss_gb": r["peak_rss_gb"], "cuda_max_allocated_gb": r["cuda_max_allocated_gb"],
            })
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generators", nargs="+", default=["ffhq512-128", "tiny"])
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--frames", type=int, default=4, help="stage-B frames (the epoch is stated for this count)")
    ap.add_argument("--quick", action="store_true",
                    help="1 timed step, 2 stage-B frames; per-switch rows only for tiny on CPU")
    ap.add_argument("--no-switches", action="store_true", help="official and fast rows only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-cpu-bf16", action="store_true", help="keep the CPU fast configuration in fp32")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.child:
        return reply(_child(json.loads(a.child)))
    import torch

    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    from innout_core.precision import cpu_has_native_bf16

    cpu_bf16 = cpu_has_native_bf16() and not a.no_cpu_bf16
    steps, frames = (1, 2) if a.quick else (a.steps, a.frames)
    rows = []
    for dev in devices:
        for gen in a.generators:
            switches = not a.no_switches and not (a.quick and (gen != "tiny" or dev == "cuda"))
            for stage in ("A", "B"):
                for name, ov in variants(stage, dev == "cuda", cpu_bf16, switches).items():
                    spec = {"generator": gen, "device": dev, "stage": stage, "variant": name, "overrides": ov,
                            "steps": steps, "frames": max(frames, 2), "threads": a.threads}
                    r = measure(spec)
                    rows.append(r)
                    print(f"{dev:5s} {gen:12s} {stage} {name:55s} step {r['step_wall_median_s']:8.2f} s wall "
                          f"{r['step_cpu_median_s']:8.2f} s cpu  peak {r['peak_rss_gb']:.2f} GB", flush=True)
    summary = summarize(rows)
    print(f"\n{'device':6s}{'generator':13s}{'st':3s}{'variant':58s}{'unit':>6s}{'cpu s':>9s}{'wall s':>9s}"
          f"{'x cpu':>7s}{'x wall':>7s}{'peak GB':>8s}")
    for s in summary:
        print(f"{s['device']:6s}{s['generator']:13s}{s['stage']:3s}{s['variant']:58s}{s['unit']:>6s}"
              f"{s['cpu_s']:9.2f}{s['wall_s']:9.2f}{s['speedup_cpu_s']:7.2f}{s['speedup_wall_s']:7.2f}"
              f"{s['peak_rss_gb']:8.2f}")
    payload = {"bench": "stage_step", "machine": {**machine_info(), "cpu_native_bf16": cpu_bf16}, "quick": a.quick, "timed_steps": steps,
               "stage_b_frames": max(frames, 2), "stage_b_epochs_for_amortising_the_cache": PAPER_EPOCHS_B,
               "threads": a.threads, "summary": summary, "rows": rows,
               "notes": ["speedups are official / variant for the same device and generator, measured in this run",
                         "cpu_s = process user+sys seconds (robust on a shared machine); wall_s = elapsed",
                         "LPIPS-VGG trunk is random when the torchvision weights are absent (timing only)",
                         "ffhq512-128 uses random weights with the released shapes"]}
    atomic_write_json(a.out, payload)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
