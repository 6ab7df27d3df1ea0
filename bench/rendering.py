"""Benchmark: `render_planes` vs a line-by-line port of the official ImportanceRenderer, same process, same inputs.

ffhq512-128 renderer shapes (batch 1, planes [1,3,32,256,256], 128x128 rays, 48+48 samples), CPU float32, no
autograd. Both renderers get the same planes, decoder weights and generator seed; the official-style port
(`official_render` below: per-pass run_model with permute copies, concat + sort + gather of all colours, midpoint
marcher, torch softplus) is only a baseline. Reports wall and process CPU seconds (min of --repeats, interleaved)
and the max output difference; writes ``bench/results/rendering.json``.

    .venv/bin/python bench/rendering.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from innout_core.eg3d import camera as cam  # noqa: E402
from innout_core.eg3d import rendering as R  # noqa: E402
from innout_core.eg3d.decoder import OSGDecoder  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "rendering.json"


def official_render(planes: torch.Tensor, dec: OSGDecoder, o: torch.Tensor, d: torch.Tensor,
                    g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The official renderer's op sequence (renderer.py / ray_marcher.py), 48+48 samples, box_warp 1."""
    n, m, _ = o.shape
    dc = torch.linspace(2.25, 3.3, 48).reshape(1, 1, 48, 1).repeat(n, m, 1, 1)
    dc += torch.rand(dc.shape, generator=g) * (1.05 / 47)

    def run(depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = depths.shape[2]
        pts = (o.unsqueeze(-2) + depths * d.unsqueeze(-2)).reshape(n, -1, 3)
        p = pts.shape[1]
        grid = (2.0 * pts)[..., [0, 1, 0, 2, 2, 0]].view(n, p, 3, 2).permute(0, 2, 1, 3).reshape(n * 3, 1, p, 2)
        f = F.grid_sample(planes.view(n * 3, 32, 256, 256), grid, align_corners=False)
        f = f.permute(0, 3, 2, 1).reshape(n, 3, p, 32)
        x = dec.net[2](F.softplus(dec.net[0](f.mean(1).view(n * p, 32)))).view(n, p, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
        return rgb.reshape(n, m, s, 32), x[..., 0:1].reshape(n, m, s, 1)

    def march(c: torch.Tensor, sg: torch.Tensor, dp: torch.Tensor):
        deltas = dp[:, :, 1:] - dp[:, :, :-1]
        cm, sm, dm = ((t[:, :, :-1] + t[:, :, 1:]) / 2 for t in (c, sg, dp))
        a = 1 - torch.exp(-F.softplus(sm - 1) * deltas)
        w = a * torch.cumprod(torch.cat([torch.ones_like(a[:, :, :1]), 1 - a + 1e-10], -2), -2)[:, :, :-1]
        dep = torch.nan_to_num(torch.sum(w * dm, -2) / w.sum(2), float("inf"))
        return torch.sum(w * cm, -2) * 2 - 1, torch.clamp(dep, torch.min(dp), torch.max(dp)), w

    cc, sc = run(dc)
    _, _, w = march(cc, sc, dc)
    df = R.sample_importance(dc, w, 48, g)
    cf, sf = run(df)
    ad, ac, asg = torch.cat([dc, df], -2), torch.cat([cc, cf], -2), torch.cat([sc, sf], -2)
    _, idx = torch.sort(ad, dim=-2)
    ad, asg = torch.gather(ad, -2, idx), torch.gather(asg, -2, idx)
    ac = torch.gather(ac, -2, idx.expand(-1, -1, -1, 32))
    rgb, dep, w = march(ac, asg, ad)
    return rgb, dep, w.sum(2)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    planes = torch.randn(1, 3, 32, 256, 256) * 3
    dec = OSGDecoder(32).eval().requires_grad_(False)
    with torch.no_grad():  # some empty and some opaque space, like the reference model
        dec.net[2].weight[0] *= 4
        dec.net[2].bias[0] = 2
    o, d = R.sample_rays(cam.lookat_cam2world(0.2, -0.1), cam.intrinsics_matrix().unsqueeze(0), 128)
    cfg = R.RenderingConfig()
    runs = {
        "official_style": lambda: official_render(planes, dec, o, d, torch.Generator().manual_seed(1)),
        "render_planes": lambda: R.render_planes(planes, dec, o, d, cfg, torch.Generator().manual_seed(1)),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    outs = {}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, fn in runs.items():
                w0, c0 = time.perf_counter(), _cpu()
                outs[name] = fn()
                times[name].append((time.perf_counter() - w0, _cpu() - c0))
    ref, ours = outs["official_style"], outs["render_planes"]
    diff = {"rgb": (ours.rgb - ref[0]).abs().max().item(), "depth": (ours.depth - ref[1]).abs().max().item(),
            "acc": (ours.acc - ref[2]).abs().max().item()}
    best = {k: {"wall_s": min(t[0] for t in v), "cpu_s": min(t[1] for t in v)} for k, v in times.items()}
    print(f"{'renderer':16s} {'wall s':>8s} {'cpu s':>8s}   (min of {args.repeats}, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f})")
    for k, v in best.items():
        print(f"{k:16s} {v['wall_s']:8.2f} {v['cpu_s']:8.2f}")
    ratio = best["official_style"]["wall_s"] / best["render_planes"]["wall_s"]
    print(f"speed-up (wall) {ratio:.2f}x; max |diff| rgb {diff['rgb']:.1e} depth {diff['depth']:.1e} "
          f"acc {diff['acc']:.1e}")
    result = {"benchmark": "rendering", "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
              "torch": torch.__version__, "load_average": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z")},
              "config": {"threads": args.threads, "repeats": args.repeats, "rays": 128 * 128,
                         "samples": [48, 48], "planes": [1, 3, 32, 256, 256], "chunk": R.DEFAULT_CHUNK},
              "best": best, "all": times, "speedup_wall": ratio, "max_abs_diff": diff}
    atomic_write_json(RESULTS, result)


if __name__ == "__main__":
    main()
