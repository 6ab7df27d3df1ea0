"""Benchmark: our EG3D ``synthesis`` vs an official-equivalent port, same weights, same inputs, same run.

The official-equivalent path is a faithful plain-PyTorch port of the OFFICIAL CPU paths (docs/eg3d.md §13: the 'ref'
``upfirdn2d``, ``conv2d_resample`` with its conv_transpose fast path, ``modulated_conv2d`` with the fused grouped
conv used in eval mode, ``bias_act``; ``SynthesisLayer`` / ``ToRGBLayer`` / ``SynthesisBlock`` /
``SuperresolutionHybrid8XDC`` forward passes) for the backbone and the SR, and the official-style renderer of
``bench/rendering.py`` in between. It reads the parameters of our ``TriPlaneGenerator`` (same state dict), so both
paths run on identical weights, latents, cameras and generator seeds.

Two measurements:
1. same process, interleaved (``--repeats`` rounds of official then ours after one warm-up each): wall seconds
   (``time.perf_counter``) and CPU seconds (``time.process_time``) per stage, medians, ratios, and the max |diff|
   of every output (image, image_raw, depth, planes). Interleaving makes the ratio robust to other load.
2. peak RSS: each variant alone in its own child process (build, one warm-up call, one timed call).

    .venv/bin/python bench/eg3d_official_port.py [--config ffhq512-128] [--repeats 3] [--threads 2]

Writes ``bench/results/eg3d_official_port.json`` (atomically).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.child import reply, run_child  # noqa: E402
from innout_core.eg3d.camera import CANONICAL_FRONTAL_LABEL, split_label  # noqa: E402
from innout_core.eg3d.configs import build_generator  # noqa: E402
from innout_core.eg3d.generator import TriPlaneGenerator, features_to_image  # noqa: E402
from innout_core.eg3d.rendering import sample_rays  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402
from rendering import official_render  # noqa: E402  (bench/rendering.py: official ImportanceRenderer port)

RESULTS = Path(__file__).resolve().parent / "results" / "eg3d_official_port.json"
FRONT_CAMERA = list(CANONICAL_FRONTAL_LABEL)


# ----------------------------------------------------------------------------------------------------------------
# Official ops, 'ref' paths (torch_utils/ops/*.py), transcribed
# ----------------------------------------------------------------------------------------------------------------
def ref_upfirdn2d(x: Tensor, f: Tensor, up: int = 1, down: int = 1, padding: list[int] | int = 0,
                  flip_filter: bool = False, gain: float = 1) -> Tensor:
    """``upfirdn2d._upfirdn2d_ref``: zero-insert, pad, grouped conv with the (flipped) filter, subsample."""
    batch_size, num_channels, in_height, in_width = x.shape
    if isinstance(padding, int):
        padding = [padding] * 4
    padx0, padx1, pady0, pady1 = padding
    x = x.reshape([batch_size, num_channels, in_height, 1, in_width, 1])
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape([batch_size, num_channels, in_height * up, in_width * up])
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0): x.shape[2] - max(-pady1, 0), max(-padx0, 0): x.shape[3] - max(-padx1, 0)]
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[np.newaxis, np.newaxis].repeat([num_channels, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(input=x, weight=f, groups=num_channels)
    else:
        x = F.conv2d(input=x, weight=f.unsqueeze(2), groups=num_channels)
        x = F.conv2d(input=x, weight=f.unsqueeze(3), groups=num_channels)
    return x[:, :, ::down, ::down]


def ref_upsample2d(x: Tensor, f: Tensor, up: int = 2, gain: float = 1) -> Tensor:
    """``upfirdn2d.upsample2d`` (padding 0)."""
    fw = f.shape[-1]
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fw + up - 1) // 2, (fw - up) // 2]
    return ref_upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def _conv2d_wrapper(x: Tensor, w: Tensor, stride: int = 1, padding: int | list[int] = 0, groups: int = 1,
                    transpose: bool = False, flip_weight: bool = True) -> Tensor:
    kh, kw = w.shape[-2:]
    if not flip_weight and (kw > 1 or kh > 1):
        w = w.flip([2, 3])
    op = F.conv_transpose2d if transpose else F.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def ref_conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, padding: int = 0,
                        groups: int = 1, flip_weight: bool = True) -> Tensor:
    """``conv2d_resample.conv2d_resample`` for the cases EG3D uses (up 1 or 2, down 1, square odd kernels)."""
    out_channels, in_channels_per_group, kh, kw = w.shape
    fw = f.shape[-1] if f is not None else 1
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fw + up - 1) // 2
        py1 += (fw - up) // 2
    if up > 1:  # fast path: transposed conv followed by the filter
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv2d_wrapper(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                            flip_weight=not flip_weight)
        return ref_upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2)
    return _conv2d_wrapper(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)


def ref_modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None, up: int = 1,
                         padding: int = 0, resample_filter: Tensor | None = None, demodulate: bool = True,
                         flip_weight: bool = True) -> Tensor:
    """``networks_stylegan2.modulated_conv2d`` with fused_modconv=True (eval mode, 'inference_only'), fp32."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    dcoefs = None
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = ref_conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=batch_size,
                            flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


def ref_bias_act(x: Tensor, b: Tensor | None, act: str = "linear", gain: float | None = None,
                 clamp: float | None = None) -> Tensor:
    """``bias_act._bias_act_ref`` (dim 1; linear or lrelu with alpha 0.2)."""
    def_gain = math.sqrt(2) if act == "lrelu" else 1.0
    gain = float(gain if gain is not None else def_gain)
    clamp = float(clamp if clamp is not None else -1)
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def ref_fc(layer: torch.nn.Module, x: Tensor) -> Tensor:
    """``FullyConnectedLayer.forward`` (linear activation, the affine layers)."""
    w = layer.weight.to(x.dtype) * layer.weight_gain
    b = layer.bias.to(x.dtype) * layer.bias_gain if layer.bias_gain != 1 else layer.bias.to(x.dtype)
    return torch.addmm(b.unsqueeze(0), x, w.t())


# ----------------------------------------------------------------------------------------------------------------
# Official modules' forward passes, reading our modules' parameters (same state dict)
# ----------------------------------------------------------------------------------------------------------------
def ref_synthesis_layer(layer: torch.nn.Module, x: Tensor, w: Tensor, noise_mode: str) -> Tensor:
    styles = ref_fc(layer.affine, w)
    noise = None
    if layer.use_noise and noise_mode == "const":
        noise = layer.noise_const * layer.noise_strength
    x = ref_modulated_conv2d(x, layer.weight, styles, noise=noise, up=layer.up, padding=layer.padding,
                             resample_filter=layer.resample_filter, flip_weight=(layer.up == 1))
    act_gain = layer.act_gain
    act_clamp = layer.conv_clamp if layer.conv_clamp is not None else None
    return ref_bias_act(x, layer.bias.to(x.dtype), act=layer.activation, gain=act_gain, clamp=act_clamp)


def ref_torgb(layer: torch.nn.Module, x: Tensor, w: Tensor) -> Tensor:
    styles = ref_fc(layer.affine, w) * layer.weight_gain
    x = ref_modulated_conv2d(x, layer.weight, styles, demodulate=False)
    return ref_bias_act(x, layer.bias.to(x.dtype), clamp=layer.conv_clamp)


def ref_block(block: torch.nn.Module, x: Tensor | None, img: Tensor | None, ws: Tensor,
              noise_mode: str) -> tuple[Tensor, Tensor]:
    """``SynthesisBlock.forward`` ('skip', fp32 on the CPU, fused modconv)."""
    w_iter = iter(ws.unbind(dim=1))
    if block.in_channels == 0:
        x = block.const.to(dtype=torch.float32).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        x = ref_synthesis_layer(block.conv1, x, next(w_iter), noise_mode)
    else:
        x = x.to(dtype=torch.float32)
        x = ref_synthesis_layer(block.conv0, x, next(w_iter), noise_mode)
        x = ref_synthesis_layer(block.conv1, x, next(w_iter), noise_mode)
    if img is not None:
        img = ref_upsample2d(img, block.resample_filter)
    y = ref_torgb(block.torgb, x, next(w_iter)).to(dtype=torch.float32, memory_format=torch.contiguous_format)
    img = img.add_(y) if img is not None else y
    return x, img


def ref_backbone(g: TriPlaneGenerator, ws: Tensor, noise_mode: str = "const") -> Tensor:
    """``SynthesisNetwork.forward``: ws [N,14,512] -> planes [N,96,256,256]."""
    net = g.backbone.synthesis
    ws = ws.to(torch.float32)
    block_ws, w_idx = [], 0
    for block in net.blocks():
        block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
        w_idx += block.num_conv
    x = img = None
    for block, cur in zip(net.blocks(), block_ws):
        x, img = ref_block(block, x, img, cur, noise_mode)
    return img


def ref_superres(g: TriPlaneGenerator, rgb: Tensor, x: Tensor, ws: Tensor) -> Tensor:
    """``SuperresolutionHybrid8XDC.forward`` (noise_mode 'none')."""
    sr = g.superresolution
    ws = ws[:, -1:, :].repeat(1, 3, 1)
    r = sr.input_resolution
    if x.shape[-1] != r:
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=sr.sr_antialias)
        rgb = F.interpolate(rgb, size=(r, r), mode="bilinear", align_corners=False, antialias=sr.sr_antialias)
    x, rgb = ref_block(sr.block0, x, rgb, ws, "none")
    x, rgb = ref_block(sr.block1, x, rgb, ws, "none")
    return rgb


# ----------------------------------------------------------------------------------------------------------------
# The two variants, staged
# ----------------------------------------------------------------------------------------------------------------
Stage = Callable[[], None]


def _official(g: TriPlaneGenerator, ws: Tensor, c: Tensor, seed: int) -> tuple[dict[str, Tensor], dict]:
    gen = torch.Generator().manual_seed(seed)
    r = g.neural_rendering_resolution
    t = _Timer()
    planes = ref_backbone(g, ws)
    t.lap("backbone")
    cam2world, intrinsics = split_label(c)
    o, d = sample_rays(cam2world, intrinsics, r)
    rgb, depth, _ = official_render(planes.view(planes.shape[0], 3, 32, *planes.shape[-2:]), g.decoder, o, d, gen)
    feat = features_to_image(rgb, r)
    t.lap("renderer")
    image = ref_superres(g, feat[:, :3], feat, ws)
    t.lap("sr")
    return {"image": image, "image_raw": feat[:, :3], "depth": features_to_image(depth, r), "planes": planes}, t.laps


def _ours(g: TriPlaneGenerator, ws: Tensor, c: Tensor, seed: int) -> tuple[dict[str, Tensor], dict]:
    gen = torch.Generator().manual_seed(seed)
    r = g.neural_rendering_resolution
    t = _Timer()
    planes = g.backbone_planes(ws, noise_mode="const", generator=gen)
    t.lap("backbone")
    out = g.render(planes, c, generator=gen)
    feat = features_to_image(out.rgb, r)
    t.lap("renderer")
    image = g.superresolve(feat[:, :3], feat, ws)
    t.lap("sr")
    return {"image": image, "image_raw": feat[:, :3], "depth": features_to_image(out.depth, r), "planes": planes}, t.laps


VARIANTS = {"official": _official, "ours": _ours}


class _Timer:
    """Per-stage wall (perf_counter) and CPU (process_time, all threads) seconds."""

    def __init__(self) -> None:
        self.laps: dict[str, dict[str, float]] = {}
        self._w, self._c = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.laps[name] = {"wall_s": w - self._w, "cpu_s": c - self._c}
        self._w, self._c = w, c


def _setup(config: str, threads: int) -> tuple[TriPlaneGenerator, Tensor, Tensor]:
    torch.set_num_threads(threads)
    g = build_generator(config, seed=0).eval().requires_grad_(False)
    c = torch.tensor([FRONT_CAMERA])
    z = torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = g.mapping(z, c, truncation_psi=0.7)
    return g, ws, c


def _totals(laps: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: sum(v[k] for v in laps.values()) for k in ("wall_s", "cpu_s")}


def _child(variant: str, config: str, threads: int) -> dict:
    """Alone in a process: build, warm up, one timed call; peak RSS of the whole process."""
    g, ws, c = _setup(config, threads)
    with torch.no_grad():
        VARIANTS[variant](g, ws, c, 0)
        _, laps = VARIANTS[variant](g, ws, c, 1)
    return {"variant": variant, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "laps": laps, "total": _totals(laps)}


def _median_laps(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {s: {k: statistics.median(r[s][k] for r in runs) for k in ("wall_s", "cpu_s")} for s in runs[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="ffhq512-128")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds after one warm-up (medians)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-rss", action="store_true", help="skip the per-variant child processes")
    ap.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.child:
        return reply(_child(args.child, args.config, args.threads))
    load_start = os.getloadavg()
    rss = {}
    if not args.no_rss:
        for v in VARIANTS:
            rss[v] = run_child(__file__, v, "--config", args.config, "--threads", str(args.threads))
    g, ws, c = _setup(args.config, args.threads)
    runs: dict[str, list] = {v: [] for v in VARIANTS}
    outs: dict[str, dict[str, Tensor]] = {}
    with torch.no_grad():
        for v, fn in VARIANTS.items():  # warm-up
            fn(g, ws, c, 0)
        for i in range(args.repeats):
            for v, fn in VARIANTS.items():
                outs[v], laps = fn(g, ws, c, 1 + i)
                runs[v].append(laps)
    diff = {k: (outs["ours"][k] - outs["official"][k]).abs().max().item() for k in outs["ours"]}
    scale = {k: outs["official"][k].abs().max().item() for k in outs["official"]}
    med = {v: _median_laps(r) for v, r in runs.items()}
    tot = {v: {k: statistics.median(_totals(l)[k] for l in r) for k in ("wall_s", "cpu_s")} for v, r in runs.items()}
    ratio = {k: tot["official"][k] / tot["ours"][k] for k in ("wall_s", "cpu_s")}
    load_end = os.getloadavg()
    print(f"{args.config}: median of {args.repeats} interleaved rounds, {args.threads} threads, "
          f"load {load_start[0]:.1f} -> {load_end[0]:.1f}")
    print(f"{'variant':<10}{'wall s':>8}{'cpu s':>8}  {'backbone':>15}{'renderer':>15}{'SR':>15}{'peak RSS GB':>13}")
    for v in VARIANTS:
        parts = "".join(f"{med[v][s]['wall_s']:>7.2f}/{med[v][s]['cpu_s']:<7.2f}" for s in ("backbone", "renderer", "sr"))
        r = f"{rss[v]['peak_rss_gb']:.2f}" if v in rss else "-"
        print(f"{v:<10}{tot[v]['wall_s']:>8.2f}{tot[v]['cpu_s']:>8.2f}  {parts}{r:>13}")
    print(f"ours / official time: wall {1 / ratio['wall_s']:.2f}x, cpu {1 / ratio['cpu_s']:.2f}x "
          f"(speed-up {ratio['wall_s']:.2f}x wall, {ratio['cpu_s']:.2f}x cpu)")
    print("max |ours - official|: " + ", ".join(f"{k} {diff[k]:.1e} (of {scale[k]:.1f})" for k in diff))
    payload = {
        "benchmark": "eg3d_official_port", "config": args.config, "threads": args.threads, "repeats": args.repeats,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "python": platform.python_version(), "load_average_start": load_start,
                    "load_average_end": load_end, "date": time.strftime("%Y-%m-%d %H:%M:%S %z")},
        "median_stage_seconds": med, "median_total_seconds": tot, "all_rounds": runs,
        "speedup_official_over_ours": ratio, "max_abs_diff": diff, "official_output_max_abs": scale,
        "separate_process": rss,
        "note": "same process, interleaved rounds, identical weights/inputs/seeds; official = port of the official "
                "CPU ref paths (fused modconv, eval) + the official-style renderer of bench/rendering.py",
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
