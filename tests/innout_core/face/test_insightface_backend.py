"""insightface backend: path resolution and clear errors without the user's model pack (never downloads)."""

from __future__ import annotations

import pytest

from innout_core.errors import CheckpointError, MissingWeightsError
from innout_core.face.insightface_backend import (INSIGHTFACE_ROOT_ENV, InsightfaceBackend, insightface_search_dirs,
                                                  resolve_insightface_pack)
from innout_core.face.preprocess import FaceConfig, make_backend

FILES = ("det_10g.onnx", "1k3d68.onnx", "w600k_r50.onnx")


def test_missing_pack_names_every_expected_file_and_place(tmp_path):
    with pytest.raises(MissingWeightsError) as exc:
        make_backend(FaceConfig(backend="insightface", insightface_root=tmp_path))
    msg = str(exc.value)
    for name in FILES:
        assert name in msg
    assert str(tmp_path / "buffalo_l") in msg and str(tmp_path / "models" / "buffalo_l") in msg
    assert INSIGHTFACE_ROOT_ENV in msg and "dlib" in msg


def test_partial_pack_names_only_the_missing_files(tmp_path):
    pack = tmp_path / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    (pack / "det_10g.onnx").write_bytes(b"x")
    with pytest.raises(MissingWeightsError) as exc:
        resolve_insightface_pack(tmp_path)
    assert str(exc.value).startswith(f"{pack}: ")
    assert "missing 1k3d68.onnx, w600k_r50.onnx" in str(exc.value)


def test_resolution_order_env_and_pack_dir(tmp_path, monkeypatch):
    for d in (tmp_path / "a" / "buffalo_l", tmp_path / "b" / "models" / "buffalo_l"):
        d.mkdir(parents=True)
        for n in FILES:
            (d / n).write_bytes(b"x")
    assert resolve_insightface_pack(tmp_path / "a").detector == tmp_path / "a" / "buffalo_l" / "det_10g.onnx"
    monkeypatch.setenv(INSIGHTFACE_ROOT_ENV, str(tmp_path / "b"))
    pack = resolve_insightface_pack()
    assert pack.directory == tmp_path / "b" / "models" / "buffalo_l"
    assert pack.landmarks.name == "1k3d68.onnx" and pack.recognition.name == "w600k_r50.onnx"
    # pointing straight at the pack folder works too
    assert insightface_search_dirs(tmp_path / "a" / "buffalo_l", "buffalo_l")[0] == tmp_path / "a" / "buffalo_l"
    with pytest.raises(MissingWeightsError, match="unknown insightface pack"):
        resolve_insightface_pack(tmp_path, "buffalo_xl")


def test_corrupt_model_file_is_a_checkpoint_error(tmp_path):
    d = tmp_path / "buffalo_l"
    d.mkdir()
    for n in FILES:
        (d / n).write_bytes(b"not an onnx model")
    with pytest.raises(CheckpointError) as exc:
        InsightfaceBackend(tmp_path, providers=["CPUExecutionProvider"])
    assert "det_10g.onnx" in str(exc.value) and "not a loadable ONNX model" in str(exc.value)
