"""Make tests/data/eg3d-reference/ from the full EG3D reference folder (official-code outputs); not used by tests.

    python tests/data/eg3d-reference/trim.py SOURCE [--out DIR]

SOURCE is the folder holding ``ffhq512-128-state-dict.tsv`` and ``reference/`` (small-G_ema.pkl, small-*.npz,
README.md) as described in this folder's README.md. The pickle and the two state-dict tables are copied byte for
byte; the arrays are trimmed (see README.md, "What was trimmed"):

* keys no test reads are dropped;
* reference case c keeps its 16 edge points and every 4th of the other 2032 points (the rows of every
  ``decoder/*`` array), and ``backbone/planes_item0`` keeps only the texels that bilinear sampling at those
  points reads (a mask plus the [K, 32] texel features; the rest reads as zero);
* the 512x512 / 256x256 images of cases g and h are kept on a grid: a 16-pixel band along every border plus
  every 7th row and column (an odd stride, so every upsampling phase is covered), stored with the indices.

Every kept value is the official float32 value, bit for bit. With torch installed, the script also checks that
sampling the trimmed planes at the kept points gives exactly the features sampled from the full planes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
COPIED = {"ffhq512-128-state-dict.tsv": "ffhq512-128-state-dict.tsv",
          "reference/small-G_ema.pkl": "small-G_ema.pkl",
          "reference/small-G_ema-state-dict.tsv": "small-G_ema-state-dict.tsv"}
DROPPED = {"decoder/directions", "importance/n_importance", "backbone/ws_item0"}  # no test reads these
EDGE_POINTS = 16  # case c points 0-15: box corners, origin, just outside, texel centres
POINT_STEP = 4
PLANE_RES, PLANE_CH = 256, 32
GRID_BAND, GRID_STRIDE = 16, 7
GRIDDED = {  # file -> keys stored on the border-band + stride grid of their last two axes
    "small-e2e.npz": ["e2e/image"],
    "small-sr.npz": ["sr/a_image_noise_none_item0", "sr/a_item0_block0_img", "sr/c_image_noise_none"],
}


def grid_index(n: int, band: int = GRID_BAND, stride: int = GRID_STRIDE) -> np.ndarray:
    """Sorted int64 indices: the first and last ``band`` of ``range(n)`` and every ``stride``-th one."""
    keep = set(range(band)) | set(range(n - band, n)) | set(range(0, n, stride))
    return np.array(sorted(keep), dtype=np.int64)


def point_index(n_points: int) -> np.ndarray:
    """The case-c points kept: all edge points, then every ``POINT_STEP``-th point."""
    return np.concatenate([np.arange(EDGE_POINTS), np.arange(EDGE_POINTS, n_points, POINT_STEP)]).astype(np.int64)


def texel_mask(plane_uv: np.ndarray, res: int = PLANE_RES) -> np.ndarray:
    """[3, res, res] bool: texels that bilinear grid_sample (align_corners=False) reads at ``plane_uv`` [3, P, 2].

    The pixel coordinate ``((u + 1) * res - 1) / 2`` is taken in float32 and float64, and a neighbour is added
    where it lies within 1e-3 of an integer, so a sampler that rounds differently still reads stored texels.
    """
    mask = np.zeros((3, res, res), dtype=bool)
    for dtype in (np.float32, np.float64):
        uv = plane_uv.astype(dtype)
        pix = ((uv + dtype(1)) * dtype(res) - dtype(1)) / dtype(2)  # [3, P, 2]: (x = column, y = row)
        base = np.floor(pix).astype(np.int64)
        frac = pix - base
        near = [base, base + 1, np.where(frac < 1e-3, base - 1, base), np.where(frac > 1 - 1e-3, base + 2, base + 1)]
        plane = np.broadcast_to(np.arange(3)[:, None], base.shape[:2])
        for cx in near:
            for cy in near:
                x, y = cx[..., 0], cy[..., 1]
                ok = (x >= 0) & (x < res) & (y >= 0) & (y < res)
                mask[plane[ok], y[ok], x[ok]] = True
    return mask


def sparse_planes(planes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[K, 32] features of the masked texels of ``planes`` [1, 96, 256, 256] (plane-major, row-major order)."""
    p = planes.reshape(3, PLANE_CH, PLANE_RES, PLANE_RES).transpose(0, 2, 3, 1)  # [3, H, W, C]
    return np.ascontiguousarray(p[mask])


def dense_planes(mask: np.ndarray, texels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`sparse_planes`: [1, 96, 256, 256] with zeros outside ``mask``."""
    p = np.zeros((3, PLANE_RES, PLANE_RES, PLANE_CH), dtype=texels.dtype)
    p[mask] = texels
    return np.ascontiguousarray(p.transpose(0, 3, 1, 2).reshape(1, 3 * PLANE_CH, PLANE_RES, PLANE_RES))


def _float32(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for k, a in arrays.items():
        assert a.dtype in (np.float32, np.int64), (k, a.dtype)
    return arrays


def trim_cases(cases: dict[str, np.ndarray], planes: dict[str, np.ndarray]) -> tuple[dict, dict]:
    idx = point_index(cases["decoder/points"].shape[1])
    out = {}
    for k, a in cases.items():
        if k in DROPPED:
            continue
        if k.startswith("decoder/"):
            a = a[:, :, idx] if k in ("decoder/plane_uv", "decoder/sampled_features") else a[:, idx]
        out[k] = np.ascontiguousarray(a)
    out["decoder/point_idx"] = idx
    full = planes["backbone/planes_item0"]
    mask = texel_mask(out["decoder/plane_uv"][0])
    texels = sparse_planes(full, mask)
    print(f"case c: {len(idx)} of {cases['decoder/points'].shape[1]} points, {int(mask.sum())} texels of planes_item0")
    _check_planes(full, dense_planes(mask, texels), out)
    return out, {"backbone/planes_item0_mask": mask, "backbone/planes_item0_texels": texels}


def _check_planes(full: np.ndarray, trimmed: np.ndarray, cases: dict[str, np.ndarray]) -> None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch not installed: skipping the trimmed-planes check")
        return
    grid = torch.from_numpy(cases["decoder/plane_uv"][0]).unsqueeze(1)  # [3, 1, P, 2]

    def sample(p: np.ndarray) -> torch.Tensor:
        planes = torch.from_numpy(p).view(3, PLANE_CH, PLANE_RES, PLANE_RES)
        return F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    a, b = sample(full), sample(trimmed)
    assert torch.equal(a, b), "trimmed planes do not reproduce the sampled features"
    ref = torch.from_numpy(cases["decoder/sampled_features"][0]).permute(0, 2, 1).unsqueeze(2)
    assert (a - ref).abs().max().item() <= 1e-5
    print("trimmed planes: sampled features identical to the full planes")


def trim_gridded(arrays: dict[str, np.ndarray], keys: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for k, a in arrays.items():
        if k in DROPPED:
            continue
        if k in keys:
            h, w = a.shape[-2:]
            assert h == w, k
            idx = grid_index(h)
            out[f"{k}_grid"] = np.ascontiguousarray(a[..., idx, :][..., idx])
            out[f"{k}_grid_idx"] = idx
        else:
            out[k] = a
    return out


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder with ffhq512-128-state-dict.tsv and reference/")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args()
    ref = a.source / "reference"
    a.out.mkdir(parents=True, exist_ok=True)
    for src, dst in COPIED.items():
        shutil.copyfile(a.source / src, a.out / dst)
    cases, planes = trim_cases(_load(ref / "small-cases.npz"), _load(ref / "small-planes.npz"))
    np.savez_compressed(a.out / "small-cases.npz", **_float32(cases))
    np.savez_compressed(a.out / "small-planes.npz", **planes)
    for name, keys in GRIDDED.items():
        np.savez_compressed(a.out / name, **_float32(trim_gridded(_load(ref / name), keys)))
    total = 0
    for p in sorted(a.out.iterdir()):
        if p.suffix in (".npz", ".pkl", ".tsv"):
            total += p.stat().st_size
            print(f"{p.name:32s} {p.stat().st_size:>11,d}  sha256 {_sha256(p)[:16]}")
    print(f"{'data total':32s} {total:>11,d}")
    assert total <= 25_000_000


if __name__ == "__main__":
    main()
