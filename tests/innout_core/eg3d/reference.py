"""Readers for the trimmed official EG3D reference data in tests/data/eg3d-reference/ (layout: its README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PLANE_RES, PLANE_CH = 256, 32


def load_npz(reference_dir: Path, name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every array of ``reference_dir / name`` whose key starts with ``prefix``, as CPU tensors."""
    with np.load(reference_dir / name) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files if k.startswith(prefix)}


def planes_item0(reference_dir: Path) -> torch.Tensor:
    """Case b's item-0 planes [1, 96, 256, 256] float32: the official values at every texel that bilinear sampling
    at the kept case-c points reads, zero elsewhere (so a sampler that reads any other texel gets a wrong value)."""
    with np.load(reference_dir / "small-planes.npz") as data:
        mask = torch.from_numpy(data["backbone/planes_item0_mask"])  # [3, 256, 256] bool
        texels = torch.from_numpy(data["backbone/planes_item0_texels"])  # [K, 32]
    planes = torch.zeros(3, PLANE_RES, PLANE_RES, PLANE_CH)
    planes[mask] = texels
    return planes.permute(0, 3, 1, 2).reshape(1, 3 * PLANE_CH, PLANE_RES, PLANE_RES).contiguous()


def on_grid(image: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``image[..., idx, :][..., idx]``: the rows and columns a ``*_grid`` reference array keeps ([..., H, W])."""
    idx = idx.to(image.device)
    return image.index_select(-2, idx).index_select(-1, idx)
