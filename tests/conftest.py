"""Shared fixtures: the shared reference data folder, device parametrisation, a throwaway Prefect home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INNOUT_SHARED", REPO.parent / "shared"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repository (the official reference data); skip-free: CI always has it."""
    assert SHARED.is_dir(), f"{SHARED} not found: clone innout beside the shared folder or set INNOUT_SHARED"
    return SHARED


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """CPU always; CUDA too when one is present (kornia's pattern)."""
    return torch.device(request.param)


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
