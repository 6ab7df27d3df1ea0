"""The embedded default's dataset: ground-truth videos from the demo's generator and their manifest.

Each video (``innout_core.synthetic``) is a render from known latents and cameras with a 3D occluder; the manifest
gives the true cameras (pre-aligned frames, ``given`` face data) and the true occluder masks (``user-masks``).
The generator is the ``tiny-demo`` preset's (``innout_core.config.PRESETS``), so the data always matches the
pipeline that runs on it: ``tiny`` draws box / sphere / bar videos, ``tiny-face`` hand / glasses / microphone videos
on held-out identities.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from innout_core.store import atomic_write_text

__all__ = ["build_demo_dataset", "demo_generator"]


def demo_generator() -> str:
    """The generator name of the ``tiny-demo`` preset (what ``innout demo`` runs)."""
    from innout_core.config import PRESETS

    return str(PRESETS["tiny-demo"].values["generator"])


def build_demo_dataset(run_dir: Path, n_videos: int = 3, n_frames: int = 3, seed: int = 0,
                       generator: str | None = None) -> Path:
    """Render ``n_videos`` ground-truth videos into ``run_dir/data`` (skipping ones already there) and write
    ``run_dir/data/demo.yaml``; returns the manifest path.

    ``generator``: a generator config name; None = :func:`demo_generator`. ``tiny`` (and any generator without
    its own suite): video i is
    ``benchmark_videos()[i % 3]`` with seed ``seed + i``. ``tiny-face``: video i is
    ``benchmark_videos(seed=seed + i // 3, generator="tiny-face")[i % 3]`` (hand, glasses, microphone; identities
    from the held-out seed stream ``synthetic.HELD_OUT_SEED``). Ids: ``gt<i>-<occluder kind>``."""
    from innout_core.eg3d.configs import build_generator
    from innout_core.synthetic import GENERATORS, benchmark_videos, make_ground_truth_video, save_ground_truth_video

    generator = generator or demo_generator()
    suite = generator if generator in GENERATORS else "tiny"  # other generators (ffhq512-128): tiny's occluders
    data = Path(run_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    base = benchmark_videos(n_frames=n_frames, seed=seed, generator=suite)
    G = None
    entries = []
    for i in range(n_videos):
        if suite == "tiny":  # as before tiny-face existed: the demo runs keyed by these files stay valid
            vcfg = base[i % len(base)].model_copy(update={"seed": seed + i})
            rng: torch.Generator | None = torch.Generator().manual_seed(seed + i)
        else:
            vcfg = benchmark_videos(n_frames, seed + i // len(base), suite)[i % len(base)]
            rng = None  # seeded with vcfg.seed
        vid = f"gt{i:02d}-{vcfg.occluder.kind}"
        out = data / vid
        if not (out / "masks.npz").is_file():  # masks.npz is written last
            if G is None:
                G = build_generator(generator).eval().requires_grad_(False)
            video = make_ground_truth_video(G, vcfg, rng)
            save_ground_truth_video(video, out)
        entries.append({"id": vid, "path": f"{vid}/frames.mp4", "cameras": f"{vid}/cameras.npy",
                        "masks": f"{vid}/masks.npz", "clean": f"{vid}/clean.mp4"})
    manifest = data / "demo.yaml"
    atomic_write_text(manifest, yaml.safe_dump({"name": "demo", "videos": entries}, sort_keys=False))
    return manifest
