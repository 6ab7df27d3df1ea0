"""``tiny-face``: the ``tiny`` architecture with the package's shipped weights, loaded by name everywhere ``tiny``
is; missing, corrupt or foreign weights fail in one line naming the file; the wheel carries the weights."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from innout_core.eg3d import configs
from innout_core.eg3d.checkpoint import load_generator
from innout_core.eg3d.configs import CONFIGS, build_generator, shipped_directions, weights_dir
from innout_core.errors import CheckpointError

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "innout_core" / "eg3d" / "weights" / "tiny-face"


def test_tiny_face_is_tiny_with_the_shipped_weights() -> None:
    face, tiny = build_generator("tiny-face"), build_generator("tiny")
    sf, st = face.state_dict(), tiny.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sf.items()] == [(k, tuple(v.shape)) for k, v in st.items()]
    assert face.neural_rendering_resolution == tiny.neural_rendering_resolution == 32
    assert not face.training and all(p.requires_grad for p in face.parameters())  # as build_generator("tiny")
    ref = load_generator(SHIPPED).state_dict()
    assert all(torch.equal(sf[k], ref[k]) for k in sf)
    assert not torch.equal(sf["decoder.net.0.weight"], st["decoder.net.0.weight"])
    again = build_generator("tiny-face", seed=5).state_dict()  # the seed does not change shipped weights
    assert all(torch.equal(sf[k], again[k]) for k in sf)
    assert weights_dir("tiny-face") == SHIPPED and weights_dir("tiny") is None


def test_shipped_directions_are_listed_per_generator() -> None:
    assert shipped_directions("tiny") == {} and shipped_directions("ffhq512-128") == {}
    found = shipped_directions("tiny-face")
    assert found == {p.stem: p for p in sorted((SHIPPED / "directions").glob("*.npy"))}
    assert CONFIGS["tiny-face"].edit_direction in found and CONFIGS["tiny"].edit_direction is None



@pytest.fixture()
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped folder that build_generator reads instead of the package's."""
    copy = tmp_path / "tiny-face"
    shutil.copytree(SHIPPED, copy)
    monkeypatch.setattr(configs, "WEIGHTS_ROOT", tmp_path)
    return copy


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as err:
        build_generator("tiny-face")
    assert "\n" not in str(err.value) and str(path) in str(err.value), str(err.value)


def test_corrupt_weights_fail_naming_the_file(shipped_copy: Path) -> None:
    weights = shipped_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    _one_line_error(weights, "sha256")


def test_missing_weights_fail_naming_the_file(shipped_copy: Path) -> None:
    (shipped_copy / "model.safetensors").unlink()
    _one_line_error(shipped_copy / "model.safetensors", "weights file is missing")
    shutil.rmtree(shipped_copy)
    _one_line_error(shipped_copy / "config.json", "not installed")


def test_weights_of_another_architecture_are_refused(shipped_copy: Path) -> None:
    cfg_path = shipped_copy / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["init_kwargs"]["plane_resolution"] = 32
    cfg_path.write_text(json.dumps(cfg))
    _one_line_error(cfg_path, "not of the 'tiny-face' architecture")


def test_pipeline_config_runs_tiny_face_by_name() -> None:
    from innout_core.config import PipelineConfig
    from tasks.common import load_generator_cached
    from tasks.face import output_resolution

    cfg = PipelineConfig(generator="tiny-face")
    G = load_generator_cached(cfg, torch.device("cpu"))
    assert not any(p.requires_grad for p in G.parameters())
    ref = load_generator(SHIPPED).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in G.state_dict().items())
    assert output_resolution("tiny-face", None) == 128


def test_wheel_carries_the_shipped_weights(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("innout_core", "tasks", "flows", "reports"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = out.glob("innout-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in sorted(SHIPPED.rglob("*")):
            if path.is_file():
                arc = path.relative_to(REPO).as_posix()
                assert arc in names, arc
                assert hashlib.sha256(zf.read(arc)).digest() == hashlib.sha256(path.read_bytes()).digest(), arc
