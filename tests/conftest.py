"""Shared fixtures: the EG3D reference data folder, device parametrisation, a throwaway Prefect home."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "data" / "eg3d-reference"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (``bench/*.py``, ``deployments/*.py``) as module ``name``; it is
    registered in ``sys.modules`` so pydantic can resolve the script's model annotations."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """tests/data/eg3d-reference: official EG3D outputs and the small official pickle (provenance in its README)."""
    assert (REFERENCE / "small-G_ema.pkl").is_file(), f"{REFERENCE} is incomplete: the clone lacks its test data"
    return REFERENCE


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """CPU always; CUDA too when one is present (kornia's pattern)."""
    return torch.device(request.param)


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
