"""The embedded default's dataset: ground-truth videos from the ``tiny`` generator and their manifest.

Each video (``innout_core.synthetic``) is a render from known latents and cameras with a 3D occluder; the manifest
gives the true cameras (pre-aligned frames, ``given`` face data) and the true occluder masks (``user-masks``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from innout_core.store import atomic_write_text

__all__ = ["build_demo_dataset"]


def build_demo_dataset(run_dir: Path, n_videos: int = 3, n_frames: int = 3, seed: int = 0,
                       generator: str = "tiny") -> Path:
    """Render ``n_videos`` ground-truth videos into ``run_dir/data`` (skipping ones already there) and write
    ``run_dir/data/demo.yaml``; returns the manifest path."""
    from innout_core.eg3d.configs import build_generator
    from innout_core.synthetic import benchmark_videos, make_ground_truth_video, save_ground_truth_video

    data = Path(run_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    base = benchmark_videos(n_frames=n_frames, seed=seed)
    G = None
    entries = []
    for i in range(n_videos):
        vcfg = base[i % len(base)].model_copy(update={"seed": seed + i})
        vid = f"gt{i:02d}-{vcfg.occluder.kind}"
        out = data / vid
        if not (out / "masks.npz").is_file():  # masks.npz is written last
            if G is None:
                G = build_generator(generator).eval().requires_grad_(False)
            video = make_ground_truth_video(G, vcfg, torch.Generator().manual_seed(seed + i))
            save_ground_truth_video(video, out)
        entries.append({"id": vid, "path": f"{vid}/frames.mp4", "cameras": f"{vid}/cameras.npy",
                        "masks": f"{vid}/masks.npz", "clean": f"{vid}/clean.mp4"})
    manifest = data / "demo.yaml"
    atomic_write_text(manifest, yaml.safe_dump({"name": "demo", "videos": entries}, sort_keys=False))
    return manifest
