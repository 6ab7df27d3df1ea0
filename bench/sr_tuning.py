"""Stage-B seconds per epoch: cached SR inputs vs the release's per-step re-render, measured in the same run.

Usage: ``python bench/sr_tuning.py [--frames 4] [--epochs 2] [--generator tiny] [--neural-resolution R]``.
Prints a table and writes ``bench/results/sr_tuning.json`` (machine, versions, config, every figure, the ratio).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from innout_core.eg3d.camera import orbit_labels  # noqa: E402
from innout_core.eg3d.configs import build_generator  # noqa: E402
from innout_core.joint import StageAResult  # noqa: E402
from innout_core.ood import OODField  # noqa: E402
from innout_core.sr_tuning import SRTuningConfig, run_stage_b  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default="tiny")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--neural-resolution", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sr_tuning.json"))
    a = ap.parse_args()
    dev = torch.device(a.device)
    G = build_generator(a.generator).to(dev)
    T = a.frames
    c = orbit_labels(T, 0.3, 0.1).to(dev)
    z = torch.randn(T, G.init_kwargs["z_dim"], generator=torch.Generator().manual_seed(0)).to(dev)
    with torch.no_grad():
        ws = G.mapping(z, c)
        frames = G.synthesis(ws, c, noise_mode="const", generator=torch.Generator(dev).manual_seed(0)).image
    R = a.neural_resolution or G.neural_rendering_resolution
    ood = OODField(T, 32, 64, generator=torch.Generator().manual_seed(1)).to(dev)
    sa = StageAResult(ood.ood_state(), ood.phi.detach().clone(), ws, [], 0.0, neural_resolution=R)
    rows = {}
    for name, cached in (("uncached (release: re-render every step)", False), ("cached (per-frame SR inputs)", True)):
        cfg = SRTuningConfig(epochs=a.epochs, lpips=0.0, cached=cached, checkpoint_every=0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run_stage_b(G, sa, frames.clamp(-1, 1), c, cfg, torch.Generator(dev).manual_seed(3))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rows[name] = (time.perf_counter() - t0) / a.epochs
    unc, cac = rows.values()
    print(f"stage B on '{a.generator}', {T} frames, neural res {R}, {a.epochs} epochs, device {dev}")
    print(f"{'mode':45s} {'s/epoch':>10s}")
    for k, v in rows.items():
        print(f"{k:45s} {v:10.3f}")
    print(f"{'speed-up (uncached / cached)':45s} {unc / cac:10.2f}x")
    res = {
        "bench": "sr_tuning", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(dev),
                    "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "config": {"generator": a.generator, "frames": T, "epochs": a.epochs, "neural_resolution": R,
                   "lpips": 0.0},
        "seconds_per_epoch": {"uncached": unc, "cached": cac}, "ratio_uncached_over_cached": unc / cac,
        "note": "cached includes the one-off per-frame render, amortised over the epochs measured",
    }
    out = Path(a.out)
    atomic_write_json(out, res)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
