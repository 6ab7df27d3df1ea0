"""Weights lookup: search places, offline LPIPS loading checked against lpips.LPIPS, MissingWeightsError messages."""

from __future__ import annotations

from pathlib import Path

import lpips as lpips_pkg
import pytest
import torch
from torchvision.models import alexnet

from innout_core.errors import MissingWeightsError
from innout_core.weights import (
    EG3D_CHECKPOINT,
    LPIPS_BACKBONES,
    find_dlib_model,
    find_edit_direction,
    find_eg3d_checkpoint,
    find_insightface_model,
    find_lpips_backbone,
    find_weights,
    load_lpips_model,
)


def write_fake_alexnet(torch_home: Path, seed: int = 0) -> Path:
    """torchvision AlexNet state dict with random `features` (the part LPIPS uses) into a TORCH_HOME cache.

    The classifier's big matrices are saved as stride-0 zero views (a few bytes on disk) to keep the file small;
    they are never used by LPIPS.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    with torch.device("meta"):  # shapes only, no initialisation cost
        shapes = {k: v.shape for k, v in alexnet(weights=None).state_dict().items()}
    for k, shape in shapes.items():
        if k.startswith("features."):
            state[k] = torch.randn(shape, generator=g) * (0.5 / max(1, shape[1:].numel()) ** 0.5)
        else:
            state[k] = torch.zeros(1).expand(shape)
    path = torch_home / "hub" / "checkpoints" / LPIPS_BACKBONES["alex"]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path: Path) -> Path:
    """Point every search place at empty temp folders."""
    for var, sub in (("TORCH_HOME", "torch"), ("INNOUT_WEIGHTS", "weights"), ("INNOUT_INSIGHTFACE_ROOT", "if"),
                     ("HOME", "home"), ("XDG_CACHE_HOME", "cache")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


def test_lpips_loaded_offline_matches_lpips_package(isolated: Path, monkeypatch) -> None:
    write_fake_alexnet(isolated / "torch")
    ours = load_lpips_model("alex")
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())

    # Independent path: lpips.LPIPS builds torchvision's pretrained AlexNet, which finds the same cached file
    # (no download happens because the file is present; a download attempt would fail here: no network).
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    ref = lpips_pkg.LPIPS(net="alex", version="0.1", verbose=False)
    for (ka, va), (kb, vb) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka

    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(3, 3, 64, 64, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        a, b = ours(x, y), ref(x, y)
    assert a.shape == (3, 1, 1, 1)
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)  # same weights, same ops: fp32 round-off only
    assert (a > 0).all() and torch.allclose(ours(x, x), torch.zeros(3, 1, 1, 1))

    spatial = load_lpips_model("alex", spatial=True)
    with torch.no_grad():
        m = spatial(x, y)
    assert m.shape == (3, 1, 64, 64) and torch.allclose(m.mean((1, 2, 3)), a.flatten(), atol=1e-5)


def test_lpips_missing_backbone_message(isolated: Path) -> None:
    expected = isolated / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(MissingWeightsError) as err:
        load_lpips_model("alex")
    msg = str(err.value)
    assert msg.startswith(f"{expected}: ")
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg and f"to {expected}" in msg
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        find_lpips_backbone("vgg")
    # a corrupt cached file is reported, not loaded
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"not a checkpoint")
    with pytest.raises(MissingWeightsError, match="cannot read LPIPS-alex backbone"):
        load_lpips_model("alex")


def test_eg3d_checkpoint_lookup(isolated: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        find_eg3d_checkpoint()
    msg = str(err.value)
    assert EG3D_CHECKPOINT in msg and "$INNOUT_WEIGHTS" in msg and str(isolated / "weights") in msg
    converted = isolated / "cache" / "innout" / "weights" / "ffhqrebalanced512-128.safetensors"
    converted.parent.mkdir(parents=True)
    converted.write_bytes(b"x")
    assert find_eg3d_checkpoint() == converted
    official = isolated / "weights" / EG3D_CHECKPOINT
    official.write_bytes(b"x")
    assert find_eg3d_checkpoint() == official  # $INNOUT_WEIGHTS first


def test_insightface_and_edit_lookup(isolated: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        find_insightface_model()
    assert "buffalo_l/w600k_r50.onnx not found" in str(err.value)
    assert "$INNOUT_INSIGHTFACE_ROOT/models/buffalo_l/" in str(err.value)
    f = isolated / "if" / "models" / "buffalo_l" / "w600k_r50.onnx"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert find_insightface_model() == f
    with pytest.raises(MissingWeightsError, match=r"put smile\.npy in \$INNOUT_WEIGHTS/interfacegan/"):
        find_edit_direction("interfacegan", "smile")
    d = isolated / "weights" / "styleclip" / "eyeglasses.pt"
    d.parent.mkdir(parents=True)
    d.write_bytes(b"x")
    assert find_edit_direction("styleclip", "eyeglasses") == d
    assert find_dlib_model("shape_predictor_68").name == "shape_predictor_68_face_landmarks.dat"


def test_find_weights_reports_each(isolated: Path) -> None:
    before = {w.name: w for w in find_weights()}
    assert not before[f"EG3D {EG3D_CHECKPOINT}"].ok
    assert not before["LPIPS alex backbone alexnet-owt-7be5be79.pth"].ok
    assert before["dlib shape_predictor_68_face_landmarks.dat"].ok  # ships with face_recognition_models
    assert all(w.without and w.needed_for and w.searched for w in before.values())
    write_fake_alexnet(isolated / "torch")
    (isolated / "weights" / EG3D_CHECKPOINT).write_bytes(b"x")
    after = {w.name: w for w in find_weights()}
    assert after[f"EG3D {EG3D_CHECKPOINT}"].found == isolated / "weights" / EG3D_CHECKPOINT
    assert after["LPIPS alex backbone alexnet-owt-7be5be79.pth"].ok
