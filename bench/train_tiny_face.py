"""Train ``tiny-face``: the ``tiny`` EG3D architecture fitted to the procedural head family, without a GAN.

Data: ``n_identities`` heads from :func:`innout_core.synthetic.heads.sample_identities` (seed ``seed``), each
rendered from ``views_per_identity`` EG3D cameras (view 0 frontal, the others yaw ~ U[-25, 25] deg, pitch ~
U[-12, 12] deg, radius 2.7) at ``image_resolution``^2 with the project's volume renderer. The views are rendered
once and cached, one ``.npz`` per identity (uint8 images, float32 cameras) under
``<work>/views-<dataset hash>/``, so an interrupted render resumes where it stopped; the hash covers the dataset
settings and the source of ``synthetic/heads.py``.

Model: an auto-decoder. Every identity owns a learnable latent **z** (512-d, initialised N(0, I) from the seed)
that goes through the mapping network (conditioned on the frontal camera, as ``innout_core.synthetic`` maps its
latents) into W, then the tri-plane backbone, the decoder, the volume renderer (``neural_resolution``^2 rays) and
the super-resolution. z rather than w: the mapping network is then trained too, ``w_avg`` (the mean mapped training
latent, set at export) is a meaningful truncation centre, and ``G.mapping(z, c)`` with a fresh z -- what the demo
and the ground-truth videos draw -- lands in the trained W region instead of an untouched one.

Loss per batch of (identity, view) pairs: L2 of the raw image against the target area-downsampled to the neural
resolution, plus L2 of the SR image (area-downsampled when ``image_resolution`` < 128) against the target, plus
``w_reg`` * mean((w - w_avg)^2) over dims and batch (``w_avg`` the mapping's running mean of the batch ws, EG3D's own EMA), which
keeps the identities' ws in a compact cloud around w_avg so interpolation and truncation toward it stay inside the
trained region. Adam on the generator (``lr``) and on the latents (``latent_lr``).

Resume: ``<work>/checkpoint.pt`` (model, optimiser, latents, RNG state, step, loss history) is written atomically
every ``checkpoint_every_s`` seconds, at the end and on SIGTERM/SIGINT (after the current step); a rerun with the same settings continues from it, and a run
split into pieces gives the same weights as an uninterrupted one. ``--export DIR`` writes the generator in our
safetensors format (``model.safetensors`` + ``config.json``) plus ``provenance.json``, and a preview PNG (targets
over renders) into the work folder.

Usage::

    nice -n 19 python bench/train_tiny_face.py --work .cache/tiny-face --steps 6000 --export weights/tiny-face
    python bench/train_tiny_face.py --work .cache/tiny-face --export-only --export weights/tiny-face
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from innout_core.eg3d.checkpoint import load_generator, save_generator  # noqa: E402
from innout_core.eg3d.configs import build_generator  # noqa: E402
from innout_core.eg3d.generator import TriPlaneGenerator  # noqa: E402
from innout_core.errors import BadInputError  # noqa: E402
from innout_core.store import atomic_path, atomic_write_json  # noqa: E402
from innout_core.synthetic.heads import (  # noqa: E402
    frontal_camera,
    head_cameras,
    head_field,
    render_head,
    sample_identities,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = "checkpoint.pt"
#: Settings that may change between the pieces of one run (they do not change the result).
RESUMABLE_FIELDS = frozenset({"steps", "checkpoint_every_s", "threads", "log_every"})
#: Set (by SIGTERM/SIGINT under ``main``) to make :func:`train` checkpoint after the current step and return.
STOP = threading.Event()


class TrainConfig(BaseModel):
    """Settings of one training run (everything except ``RESUMABLE_FIELDS`` must match to resume)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(0, description="seed of the identities, cameras, latents, model init and batches")
    n_identities: int = Field(160, ge=1, description="identities (each with its own latent)")
    views_per_identity: int = Field(4, ge=1, description="rendered views per identity (view 0 frontal)")
    image_resolution: int = Field(128, ge=8, description="target side in pixels (SR loss); divides 128")
    neural_resolution: int = Field(32, ge=8, description="rays per image side of the generator's rendering")
    render_coarse: int = Field(16, ge=3, description="coarse samples per ray of the target renders")
    render_fine: int = Field(16, ge=0, description="importance samples per ray of the target renders")
    steps: int = Field(6000, ge=0, description="optimiser steps in total")
    batch_size: int = Field(8, ge=1, description="(identity, view) pairs per step")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate of the generator")
    latent_lr: float = Field(1e-2, gt=0, description="Adam learning rate of the per-identity latents")
    raw_weight: float = Field(1.0, ge=0, description="weight of the L2 at the neural resolution")
    sr_weight: float = Field(1.0, ge=0, description="weight of the L2 at the target (SR) resolution")
    w_reg: float = Field(0.01, ge=0, description="weight of the mean over dims of (w - w_avg)^2 (about 1 at init)")
    threads: int = Field(2, ge=1, description="torch threads")
    checkpoint_every_s: float = Field(240.0, gt=0, description="seconds between checkpoints")
    log_every: int = Field(50, ge=1, description="steps between loss-history entries (each the mean since the last)")

    def dataset_key(self) -> str:
        """Hash of what the cached views depend on: dataset settings + a probe of the head family's behaviour
        (the field of the first identities at fixed points, rounded), so editing ``synthetic/heads.py`` without
        changing what it renders keeps the cache and the checkpoint valid."""
        keys = ("seed", "n_identities", "views_per_identity", "image_resolution", "render_coarse", "render_fine")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True).encode() + _family_probe(self.seed)
        return hashlib.sha256(blob).hexdigest()[:16]


def _family_probe(seed: int, n_ids: int = 3, n_points: int = 4096) -> bytes:
    """Bytes that change when the head family's distribution or field changes (values rounded to 1e-3)."""
    pts = torch.rand(n_points, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    out = []
    for p in sample_identities(n_ids, seed):
        f = head_field(pts, p)
        out.append(torch.cat((f.sigma / 100, f.rgb), -1))
    return np.round(torch.stack(out).numpy().astype(np.float64), 3).tobytes()


@dataclass
class Views:
    """The cached training set."""

    images: torch.Tensor  # [I, V, 3, H, W] uint8 (image in [-1, 1] = x / 127.5 - 1)
    cameras: torch.Tensor  # [I, V, 25] float32 EG3D labels


@dataclass
class TrainState:
    """Everything a checkpoint holds."""

    G: TriPlaneGenerator
    latents: torch.Tensor  # [I, 512] float32 leaf with grad
    optimizer: torch.optim.Optimizer
    rng: torch.Generator
    step: int
    history: list[dict]


# ----------------------------------------------------------------------------------------------------------------
# Data


def _camera_generator(seed: int, identity: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * (seed + 1) + identity)


def render_views(cfg: TrainConfig, work: Path, progress: bool = True) -> Views:
    """Render (or load from the cache) every identity's views. Resumable per identity.

    Returns:
        :class:`Views` with images [I, V, 3, R, R] uint8 and cameras [I, V, 25] float32 (R = image_resolution).
    """
    if 128 % cfg.image_resolution:
        raise BadInputError(f"image_resolution {cfg.image_resolution} must divide 128")
    folder = work / f"views-{cfg.dataset_key()}"
    folder.mkdir(parents=True, exist_ok=True)
    identities = sample_identities(cfg.n_identities, cfg.seed)
    images, cameras = [], []
    bar = tqdm(identities, desc="render views", unit="id", disable=not progress)
    for i, params in enumerate(bar):
        path = folder / f"id_{i:05d}.npz"
        if path.is_file():
            with np.load(path) as f:
                img, cam = torch.from_numpy(f["images"]), torch.from_numpy(f["cameras"])
        else:
            cam = head_cameras(cfg.views_per_identity, _camera_generator(cfg.seed, i))
            cam[0] = frontal_camera()[0]
            r = render_head(params, cam, cfg.image_resolution, n_coarse=cfg.render_coarse, n_fine=cfg.render_fine)
            img = ((r.image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, images=img.numpy(), cameras=cam.numpy().astype(np.float32))
        images.append(img)
        cameras.append(cam.float())
    return Views(torch.stack(images), torch.stack(cameras))


def _targets(views: Views, idx: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat (identity*V + view) indices [B] -> target [B,3,R,R] and raw target [B,3,r,r] in [-1,1], cameras [B,25]."""
    v = cfg.views_per_identity
    img = views.images[idx // v, idx % v].float() / 127.5 - 1
    raw = F.interpolate(img, size=(cfg.neural_resolution,) * 2, mode="area")
    return img, raw, views.cameras[idx // v, idx % v]


# ----------------------------------------------------------------------------------------------------------------
# Model and steps


def new_state(cfg: TrainConfig) -> TrainState:
    """Step-0 state: ``tiny``'s fixed weights (seeded), N(0, I) latents, Adam, the batch RNG."""
    G = build_generator("tiny", seed=cfg.seed).train().requires_grad_(True)
    G.neural_rendering_resolution = cfg.neural_resolution
    rng = torch.Generator().manual_seed(cfg.seed + 7)
    latents = torch.randn(cfg.n_identities, G.z_dim, generator=rng).requires_grad_(True)
    opt = _optimizer(G, latents, cfg)
    return TrainState(G, latents, opt, rng, 0, [])


def _optimizer(G: TriPlaneGenerator, latents: torch.Tensor, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([{"params": list(G.parameters()), "lr": cfg.lr},
                             {"params": [latents], "lr": cfg.latent_lr}], betas=(0.9, 0.99))


def _ws(G: TriPlaneGenerator, z: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
    c = frontal_camera().expand(z.shape[0], -1)
    return G.mapping(z, c, update_emas=update_emas)


def losses(G: TriPlaneGenerator, z: torch.Tensor, target: torch.Tensor, raw_target: torch.Tensor,
           cameras: torch.Tensor, cfg: TrainConfig, rng: torch.Generator | None,
           update_emas: bool = False) -> dict[str, torch.Tensor]:
    """The training losses for latents z [B, 512] against targets [B,3,R,R] / [B,3,r,r] at cameras [B,25]."""
    ws = _ws(G, z, update_emas=update_emas)
    out = G.synthesis(ws, cameras, noise_mode="const", generator=rng, resolution=cfg.neural_resolution)
    image = out.image
    if image.shape[-1] != target.shape[-1]:
        image = F.interpolate(image, size=target.shape[-2:], mode="area")
    raw = F.mse_loss(out.image_raw, raw_target)
    sr = F.mse_loss(image, target)
    reg = (ws[:, 0] - G.backbone.mapping.w_avg.detach()).square().mean()
    total = cfg.raw_weight * raw + cfg.sr_weight * sr + cfg.w_reg * reg
    return {"total": total, "raw": raw, "sr": sr, "w_reg": reg}


def train_step(state: TrainState, views: Views, cfg: TrainConfig) -> dict[str, float]:
    """One optimiser step on a random batch (all draws from ``state.rng``)."""
    n = cfg.n_identities * cfg.views_per_identity
    idx = torch.randint(n, (cfg.batch_size,), generator=state.rng)
    target, raw_target, cams = _targets(views, idx, cfg)
    z = state.latents[idx // cfg.views_per_identity]
    parts = losses(state.G, z, target, raw_target, cams, cfg, state.rng, update_emas=True)
    state.optimizer.zero_grad(set_to_none=True)
    parts["total"].backward()
    state.optimizer.step()
    state.step += 1
    return {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def evaluate(G: TriPlaneGenerator, latents: torch.Tensor, views: Views, cfg: TrainConfig,
             batch: int = 8) -> dict[str, float]:
    """Mean losses over every cached view (fixed ray samples: a seeded generator per call)."""
    n = cfg.n_identities * cfg.views_per_identity
    rng = torch.Generator().manual_seed(0)
    sums: dict[str, float] = {}
    for s in range(0, n, batch):
        idx = torch.arange(s, min(n, s + batch))
        target, raw_target, cams = _targets(views, idx, cfg)
        parts = losses(G, latents[idx // cfg.views_per_identity], target, raw_target, cams, cfg, rng)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
    return {k: v / n for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(state: TrainState, cfg: TrainConfig, work: Path) -> Path:
    """Atomically write ``<work>/checkpoint.pt``."""
    blob = {"config": cfg.model_dump(), "dataset_key": cfg.dataset_key(), "step": state.step,
            "model": state.G.state_dict(), "latents": state.latents.detach().clone(),
            "optimizer": state.optimizer.state_dict(), "rng": state.rng.get_state(), "history": state.history}
    path = work / CHECKPOINT
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_checkpoint(cfg: TrainConfig, work: Path) -> TrainState | None:
    """The state in ``<work>/checkpoint.pt`` (None when absent). Raises BadInputError if its settings differ."""
    path = work / CHECKPOINT
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise BadInputError(f"unreadable training checkpoint ({type(err).__name__}); delete it to start over",
                            path) from None
    saved = {k: v for k, v in blob["config"].items() if k not in RESUMABLE_FIELDS}
    now = {k: v for k, v in cfg.model_dump().items() if k not in RESUMABLE_FIELDS}
    if saved != now or blob["dataset_key"] != cfg.dataset_key():
        diff = sorted(k for k in now if saved.get(k) != now[k]) or ["dataset (synthetic/heads.py changed)"]
        raise BadInputError(f"checkpoint was made with other settings ({', '.join(diff)}); use another --work "
                            "folder or delete it", path)
    state = new_state(cfg)
    state.G.load_state_dict(blob["model"])
    with torch.no_grad():
        state.latents.copy_(blob["latents"])
    state.optimizer.load_state_dict(blob["optimizer"])
    state.rng.set_state(blob["rng"])
    state.step = int(blob["step"])
    state.history = list(blob["history"])
    return state


# ----------------------------------------------------------------------------------------------------------------
# Training loop and export


def train(cfg: TrainConfig, work: str | Path, progress: bool = True, views: Views | None = None) -> TrainState:
    """Render/load the views, resume or start, and train up to ``cfg.steps`` steps (checkpointing as it goes).

    Returns early, after checkpointing, once :data:`STOP` is set."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    views = views if views is not None else render_views(cfg, work, progress)
    state = load_checkpoint(cfg, work) or new_state(cfg)
    last_save = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=min(state.step, cfg.steps), desc="train tiny-face", unit="step",
               disable=not progress)
    running: dict[str, float] = {}
    n_running = 0
    while state.step < cfg.steps and not STOP.is_set():
        parts = train_step(state, views, cfg)
        running = {k: running.get(k, 0.0) + v for k, v in parts.items()}
        n_running += 1
        if state.step % cfg.log_every == 0 or state.step == cfg.steps:
            state.history.append({"step": state.step, **{k: v / n_running for k, v in running.items()}})
            bar.set_postfix(loss=f"{state.history[-1]['total']:.4f}")
            running, n_running = {}, 0
        bar.update(1)
        if time.monotonic() - last_save > cfg.checkpoint_every_s:
            save_checkpoint(state, cfg, work)
            last_save = time.monotonic()
    bar.close()
    save_checkpoint(state, cfg, work)
    return state


#: The code a trained generator depends on (``dirty`` in the provenance: one of these differs from HEAD). The shipped
#: weights folder is excluded: the export itself rewrites it.
PROVENANCE_PATHS = ("bench/train_tiny_face.py", "innout_core/synthetic/heads.py", "innout_core/eg3d",
                    ":(exclude)innout_core/eg3d/weights")


def _git_commit(root: Path = ROOT) -> dict[str, object]:
    """HEAD and whether a tracked file of :data:`PROVENANCE_PATHS` differs from it (index or work tree; untracked
    files do not count)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *PROVENANCE_PATHS],
                               cwd=root, capture_output=True, text=True, check=True)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


@torch.no_grad()
def mean_w(G: TriPlaneGenerator, latents: torch.Tensor) -> torch.Tensor:
    """Mean mapped training latent [512] (frontal conditioning): the exported ``w_avg``."""
    return _ws(G, latents.detach())[:, 0].mean(0)


def export(state: TrainState, cfg: TrainConfig, views: Views, out_dir: str | Path, work: str | Path) -> Path:
    """Write the generator (our format, ``w_avg`` = mean training w) + ``provenance.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    G = state.G.eval()
    G.backbone.mapping.w_avg.copy_(mean_w(G, state.latents))
    metrics = evaluate(G, state.latents, views, cfg)
    save_generator(G, out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    provenance = {
        "script": "bench/train_tiny_face.py",
        "settings": cfg.model_dump(),
        "dataset_key": cfg.dataset_key(),
        "steps_done": state.step,
        "final_eval_losses": metrics,
        "loss_history": state.history,
        "weights_sha256": config["weights"]["sha256"],
        "git": _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    atomic_write_json(out_dir / "provenance.json", provenance)
    write_preview(G, state.latents, views, cfg, Path(work) / f"preview_step{state.step:06d}.png")
    return out_dir


@torch.no_grad()
def write_preview(G: TriPlaneGenerator, latents: torch.Tensor, views: Views, cfg: TrainConfig, path: Path,
                  n: int = 4) -> Path:
    """PNG: row 1 targets (view 0..), row 2 renders of the same identity/view, row 3 truncated fresh z at the
    frontal camera (psi 0.7), row 4 w_avg at the first identities' cameras."""
    from PIL import Image

    n = min(n, cfg.n_identities)
    ids = torch.arange(n)
    view = ids % cfg.views_per_identity
    target = views.images[ids, view].float() / 127.5 - 1
    cams = views.cameras[ids, view]
    out = G.synthesis(_ws(G, latents[ids].detach()), cams, noise_mode="const",
                      generator=torch.Generator().manual_seed(0), resolution=cfg.neural_resolution).image
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(123))
    w = G.backbone.mapping.w_avg.lerp(_ws(G, z)[:, 0], 0.7)[:, None].expand(-1, G.num_ws, -1)
    fresh = G.synthesis(w, frontal_camera().expand(n, -1), noise_mode="const",
                        generator=torch.Generator().manual_seed(0), resolution=cfg.neural_resolution).image
    wa = G.backbone.mapping.w_avg.expand(n, G.num_ws, -1)
    mean = G.synthesis(wa, cams, noise_mode="const", generator=torch.Generator().manual_seed(0),
                       resolution=cfg.neural_resolution).image
    size = out.shape[-1]
    rows = [F.interpolate(t, size=(size, size), mode="nearest") for t in (target, out, fresh, mean)]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "tiny-face",
                        help="folder of the cached views, the checkpoint and previews")
    parser.add_argument("--export", type=Path, default=None, help="write the trained generator here at the end")
    parser.add_argument("--export-only", action="store_true", help="export the current checkpoint, no training")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for name, field in TrainConfig.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=field.description)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.model_fields})
    torch.set_num_threads(cfg.threads)  # before rendering too (a niced 2-thread process spins at its barriers)
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop cleanly: checkpoint after the current step
        signal.signal(sig, lambda *_: STOP.set())
    try:
        views = render_views(cfg, args.work, not args.quiet)
        if args.export_only:
            state = load_checkpoint(cfg, args.work)
            if state is None:
                raise BadInputError("no checkpoint to export", args.work / CHECKPOINT)
        else:
            t0 = time.monotonic()
            start = load_checkpoint(cfg, args.work)
            step0 = start.step if start else 0
            state = train(cfg, args.work, not args.quiet, views)
            dt = time.monotonic() - t0
            done = state.step - step0
            print(f"{done} steps in {dt:.0f} s ({dt / max(done, 1):.2f} s/step); step {state.step}/{cfg.steps}")
        if state.history:
            first, last = state.history[0], state.history[-1]
            print(f"{'loss':<8}{'first log':>12}{'last log':>12}{'ratio':>8}")
            for k in ("total", "raw", "sr", "w_reg"):
                print(f"{k:<8}{first[k]:>12.5f}{last[k]:>12.5f}{last[k] / max(first[k], 1e-12):>8.3f}")
        if args.export is not None:
            export(state, cfg, views, args.export, args.work)
            load_generator(args.export)  # the written checkpoint reads back
            print(f"exported step {state.step} to {args.export}")
    except BadInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
