"""Held-out measurements of ``tiny-face``: W+ inversion PSNR on the fitted views and PSNR at unseen cameras, with
the random-weights ``tiny`` generator as the baseline in the same run.

Identities: ``sample_identities(n, seed)`` with ``seed`` disjoint from training (training uses seed 0; default
1000). Each identity is rendered procedurally (``render_head``, 16 + 16 samples per ray as the training targets)
at ``views`` input cameras (view 0 frontal, the others yaw ~ U[-25, 25] deg, pitch ~ U[-12, 12] deg) and at
``novel`` unseen cameras from another seed (same pose range), 128^2. For each generator, one W+ latent per identity
is fitted to its input views together (``innout_core.inversion.invert_video`` with ``residual_weight`` 0, so every
view shares the latent; L2 only, the ``tiny-demo`` inversion recipe of ``bench/ground_truth.py``: lr 3e-2 with
the official warm-up and cosine decay, 8-sample L2 initialisation, all views per step). PSNR (data range 2 over
[-1, 1]) of the render of that latent against the procedural render: at the input views (the fit) and at the
unseen cameras (novel views: does the latent hold the same 3D head?). Reported per generator as the mean over
identities and views, plus ``tiny-face`` minus ``tiny`` in dB.

    .venv/bin/python bench/tiny_face_eval.py            # 6 identities x (3 input + 3 novel) views, 100 steps
    .venv/bin/python bench/tiny_face_eval.py --quick    # seconds: the code path only

Writes ``bench/results/tiny_face_eval.json`` (``--quick``: ``tiny_face_eval_quick.json``) and a PNG of examples
next to it (rows: procedural truth, tiny-face, tiny; input views then novel views).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info  # noqa: E402
from innout_core.eg3d.configs import build_generator, weights_dir  # noqa: E402
from innout_core.inversion import InversionConfig, invert_video, render_inversion  # noqa: E402
from innout_core.metrics import psnr  # noqa: E402
from innout_core.store import atomic_path, atomic_write_json  # noqa: E402
from innout_core.synthetic.heads import frontal_camera, head_cameras, render_head, sample_identities  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENERATORS = ("tiny-face", "tiny")


def inversion_config(steps: int, init_samples: int) -> InversionConfig:
    """One shared W+ latent per identity: the tiny-demo W+ recipe (L2, lr 3e-2, all views per step), rho = 0."""
    return InversionConfig(method="w+", steps=steps, batch_size=0, lr=3e-2, lambda_lpips=0.0,
                           init_samples=init_samples, init_metric="l2", init_stride=1, residual_weight=0.0)


def identity_views(params, index: int, views: int, novel: int, seed: int) -> dict[str, torch.Tensor]:
    """Cameras and procedural renders of one identity: ``input`` / ``novel`` images [N, 3, 128, 128] in [-1, 1]
    and their cameras [N, 25]."""
    cams = head_cameras(views, torch.Generator().manual_seed(seed * 7919 + index))
    cams[0] = frontal_camera()[0]
    unseen = head_cameras(novel, torch.Generator().manual_seed(seed * 7919 + index + 500_000))
    both = torch.cat([cams, unseen])
    image = render_head(params, both, 128, n_coarse=16, n_fine=16).image.clamp(-1, 1)
    return {"input": image[:views], "input_cameras": cams, "novel": image[views:], "novel_cameras": unseen}


def evaluate_generator(name: str, data: list[dict], cfg: InversionConfig, seed: int) -> tuple[dict, list]:
    """Fit and score every identity with one generator. Returns (summary, renders per identity)."""
    G = build_generator(name).requires_grad_(False)
    rows, renders = [], []
    t0 = time.perf_counter()
    for i, d in enumerate(data):
        inv = invert_video(G, d["input"], d["input_cameras"], cfg, torch.Generator().manual_seed(seed + i))
        w = inv.w_canonical  # rho = 0: every view's latent
        fit = _render(G, inv, w, d["input_cameras"], seed)
        nov = _render(G, inv, w, d["novel_cameras"], seed)
        p_in, p_nov = psnr(fit, d["input"]), psnr(nov, d["novel"])
        rows.append({"identity": d["index"], "psnr_input_views": [float(x) for x in p_in],
                     "psnr_novel_views": [float(x) for x in p_nov], "loss_first": inv.losses[0],
                     "loss_last": inv.losses[-1], "seconds": round(inv.seconds, 2)})
        renders.append((fit, nov))
    secs = time.perf_counter() - t0
    all_in = torch.tensor([x for r in rows for x in r["psnr_input_views"]])
    all_nov = torch.tensor([x for r in rows for x in r["psnr_novel_views"]])
    summary = {"psnr_input_mean": float(all_in.mean()), "psnr_input_min": float(all_in.min()),
               "psnr_novel_mean": float(all_nov.mean()), "psnr_novel_min": float(all_nov.min()),
               "seconds": round(secs, 1), "rows": rows}
    return summary, renders


def _render(G, inv, w: torch.Tensor, cameras: torch.Tensor, seed: int) -> torch.Tensor:
    """The fitted latent w [1, n_ws, 512] at cameras [N, 25] (fixed ray samples)."""
    from dataclasses import replace

    res = replace(inv, ws=w.expand(cameras.shape[0], -1, -1))
    return render_inversion(G, res, cameras, torch.Generator().manual_seed(seed + 99))


def _save_png(path: Path, data: list[dict], renders: dict[str, list], n: int = 3) -> None:
    """Rows: truth, then one row per generator; columns: the first ``n`` identities' input then novel views."""
    from PIL import Image

    cols = [torch.cat([d["input"], d["novel"]]) for d in data[:n]]
    rows = [torch.cat(cols)]
    for name in GENERATORS:
        rows.append(torch.cat([torch.cat(r) for r in renders[name][:n]]))
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1000, help="identity seed (training: 0)")
    parser.add_argument("--views", type=int, default=3, help="input views per identity (view 0 frontal)")
    parser.add_argument("--novel", type=int, default=3, help="unseen cameras per identity")
    parser.add_argument("--steps", type=int, default=100, help="W+ optimiser steps (all input views per step)")
    parser.add_argument("--init-samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 identities, 2 + 1 views, 3 steps (the code path)")
    parser.add_argument("--out", type=Path, default=None)
    a = parser.parse_args(argv)
    if a.quick:
        a.identities, a.views, a.novel, a.steps, a.init_samples = 2, 2, 1, 3, 2
    out = a.out or ROOT / "bench" / "results" / ("tiny_face_eval_quick.json" if a.quick else "tiny_face_eval.json")
    torch.set_num_threads(a.threads)
    machine = machine_info()
    t0 = time.perf_counter()
    params = sample_identities(a.identities, a.seed)
    data = []
    for i, p in enumerate(params):
        data.append({"index": i, **identity_views(p, i, a.views, a.novel, a.seed)})
    render_s = time.perf_counter() - t0
    cfg = inversion_config(a.steps, a.init_samples)
    results, renders = {}, {}
    for name in GENERATORS:
        results[name], renders[name] = evaluate_generator(name, data, cfg, a.seed)
    face, tiny = results["tiny-face"], results["tiny"]
    diff = {k: face[k] - tiny[k] for k in ("psnr_input_mean", "psnr_novel_mean")}
    provenance = json.loads((weights_dir("tiny-face") / "provenance.json").read_text())
    payload = {
        "bench": "tiny_face_eval", "quick": a.quick, "machine": machine,
        "settings": {"identities": a.identities, "identity_seed": a.seed, "input_views": a.views,
                     "novel_views": a.novel, "resolution": 128, "procedural_samples": [16, 16],
                     "pose_range_deg": {"yaw": 25, "pitch": 12}},
        "inversion": cfg.model_dump(mode="json"),
        "tiny_face_weights": {"sha256": provenance["weights_sha256"], "steps_done": provenance["steps_done"]},
        "generators": results,
        "tiny_face_minus_tiny_db": diff,
        "target": "W+ PSNR on held-out identities >= 30 dB at 128^2 (issue 14)",
        "procedural_render_seconds": round(render_s, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(out, payload)
    _save_png(out.with_suffix(".png"), data, renders)
    print(f"{a.identities} held-out identities (seed {a.seed}) x {a.views} input + {a.novel} novel views, 128^2, "
          f"W+ {a.steps} steps; tiny-face after {provenance['steps_done']} training steps")
    print(f"{'generator':<11}{'PSNR input':>11}{'min':>7}{'PSNR novel':>11}{'min':>7}{'seconds':>9}")
    for name, r in results.items():
        print(f"{name:<11}{r['psnr_input_mean']:>11.2f}{r['psnr_input_min']:>7.2f}{r['psnr_novel_mean']:>11.2f}"
              f"{r['psnr_novel_min']:>7.2f}{r['seconds']:>9.1f}")
    print(f"{'difference':<11}{diff['psnr_input_mean']:>+11.2f}{'':>7}{diff['psnr_novel_mean']:>+11.2f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
