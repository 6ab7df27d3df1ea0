"""The EG3D reference data travels with the repository: inside tests/data, small, and documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def test_reference_data_is_in_the_repository_and_at_most_25_mb(reference_dir: Path) -> None:
    assert reference_dir.resolve().is_relative_to(REPO / "tests" / "data")
    files = sorted(p.name for p in reference_dir.iterdir())
    assert {"README.md", "trim.py", "small-G_ema.pkl", "small-cases.npz", "small-e2e.npz", "small-planes.npz",
            "small-sr.npz", "small-G_ema-state-dict.tsv", "ffhq512-128-state-dict.tsv"} <= set(files)
    assert sum(p.stat().st_size for p in reference_dir.iterdir()) <= 25_000_000


def test_trimmed_arrays_are_float32_and_grid_indices_cover_borders(reference_dir: Path) -> None:
    for name in ("small-cases.npz", "small-e2e.npz", "small-planes.npz", "small-sr.npz"):
        with np.load(reference_dir / name) as data:
            for key in data.files:
                assert data[key].dtype in (np.float32, np.int64, np.bool_), (name, key, data[key].dtype)
                if key.endswith("_grid_idx"):
                    idx, grid = data[key], data[key.removesuffix("_idx")]
                    n = int(idx[-1]) + 1
                    assert n in (256, 512) and grid.shape[-2:] == (len(idx), len(idx))
                    assert list(idx[:16]) == list(range(16)) and list(idx[-16:]) == list(range(n - 16, n))
                    assert {int(i) % 8 for i in idx} == set(range(8))  # every up-sampling phase is on the grid
