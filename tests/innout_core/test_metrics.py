"""Metrics against independent computations: PSNR by formula, SSIM vs scikit-image, LPIPS vs lpips.LPIPS,
identity similarity through a tiny ArcFace-shaped ONNX model and the real dlib descriptor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from skimage.metrics import structural_similarity

from innout_core.errors import BadInputError, MissingWeightsError
from innout_core.metrics import (
    METRIC_DEFINITIONS,
    ArcFaceEmbedder,
    DlibFaceEmbedder,
    MetricValue,
    identity_after_edit,
    identity_similarity,
    load_embedder,
    lpips,
    metric_definitions,
    psnr,
    reconstruction_metrics,
    ssim,
    summarize,
)
from innout_core.weights import load_lpips_model
from tests.innout_core.test_weights import write_fake_alexnet


def _pair(t: int = 3, h: int = 48, w: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(t, 3, h, w, generator=g) * 2 - 1
    noise = torch.randn(t, 3, h, w, generator=g) * torch.linspace(0.05, 0.5, t).view(t, 1, 1, 1)
    return (target + noise).clamp(-1, 1), target


def test_psnr_matches_formula_on_uint8_scale(device: torch.device) -> None:
    pred, target = _pair()
    got = psnr(pred.to(device), target.to(device))
    assert got.device.type == "cpu" and got.dtype == torch.float32
    p8, t8 = ((pred + 1) * 127.5).double(), ((target + 1) * 127.5).double()
    for i in range(3):
        mse = ((p8[i] - t8[i]) ** 2).mean().item()
        assert got[i].item() == pytest.approx(10 * math.log10(255.0**2 / mse), abs=1e-4)
    assert got[0] > got[1] > got[2]  # more noise, lower PSNR
    assert torch.isinf(psnr(target, target)).all()


def test_ssim_matches_skimage(device: torch.device) -> None:
    pred, target = _pair()
    got = ssim(pred.to(device), target.to(device))
    for i in range(3):
        ref = structural_similarity(
            pred[i].permute(1, 2, 0).double().numpy(), target[i].permute(1, 2, 0).double().numpy(),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2.0, channel_axis=2,
        )
        # Same window, constants and cropping; only the convolution's float32 round-off differs.
        assert got[i].item() == pytest.approx(ref, abs=1e-5)
    assert torch.allclose(ssim(target, target), torch.ones(3))
    with pytest.raises(BadInputError, match="smaller than the SSIM window"):
        ssim(pred[:, :, :8, :8], target[:, :, :8, :8])
    with pytest.raises(BadInputError, match="differ in shape"):
        psnr(pred, target[:2])


def test_lpips_per_frame_and_chunked(monkeypatch, tmp_path: Path, device: torch.device) -> None:
    # load_lpips_model == lpips.LPIPS with the same weights is tested in test_weights.py; here: the per-frame API.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    write_fake_alexnet(tmp_path, seed=3)
    model = load_lpips_model("alex", device=device)
    pred, target = _pair(h=32, w=32)
    pred, target = pred.to(device), target.to(device)
    got = lpips(pred, target, model, batch_size=2)  # chunking must not change values
    with torch.no_grad():
        want = torch.stack([model(pred[i : i + 1], target[i : i + 1]).squeeze() for i in range(3)])
    assert got.shape == (3,) and torch.allclose(got, want.cpu(), atol=1e-6, rtol=1e-5)
    assert got.device.type == "cpu" and got[0] < got[2]
    assert torch.allclose(lpips(target, target, model), torch.zeros(3))


def _tiny_arcface(path: Path, batch: int | str = 1, seed: int = 0) -> tuple[np.ndarray, Path]:
    """ArcFace-shaped ONNX: [N,3,112,112] -> AveragePool 8 -> Flatten -> Gemm -> [N,512]."""
    w = np.random.default_rng(seed).standard_normal((3 * 14 * 14, 512)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [batch, 512])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w, path


def test_identity_similarity_arcface_onnx(tmp_path: Path) -> None:
    w, path = _tiny_arcface(tmp_path / "w600k_r50.onnx", batch=1)
    emb = ArcFaceEmbedder(path)
    assert emb.fixed_batch == 1 and (emb.input_mean, emb.input_std) == (127.5, 127.5)
    a, b = _pair(t=3, h=96, w=96)
    # Embedding equals an independent torch evaluation of the same graph on the documented preprocessing.
    crops = emb.preprocess(a)
    assert crops.shape == (3, 3, 112, 112)
    want = F.avg_pool2d(crops, 8).flatten(1) @ torch.from_numpy(w)
    assert torch.allclose(emb(a), want, atol=1e-3, rtol=1e-4)

    same = identity_similarity(a, a, emb)
    assert torch.allclose(same, torch.ones(3), atol=1e-6)
    ab, ba = identity_similarity(a, b, emb), identity_similarity(b, a, emb)
    assert torch.allclose(ab, ba, atol=1e-6) and (ab < 0.9999).all() and (ab >= -1).all()
    assert torch.equal(identity_after_edit(a, b, emb), ab)

    # A dynamic-batch model gives the same numbers in one call.
    _, dyn = _tiny_arcface(tmp_path / "dyn.onnx", batch="N")
    assert torch.allclose(identity_similarity(a, b, ArcFaceEmbedder(dyn)), ab, atol=1e-6)


def test_arcface_landmark_alignment(tmp_path: Path) -> None:
    from insightface.utils.face_align import arcface_dst

    _, path = _tiny_arcface(tmp_path / "m.onnx", batch="N")
    emb = ArcFaceEmbedder(path)
    a, _ = _pair(t=2, h=112, w=112)
    # Landmarks exactly at the ArcFace template: the alignment is the identity warp.
    lm = torch.from_numpy(np.stack([arcface_dst, arcface_dst]))
    crops = emb.preprocess(a, lm)
    a8 = ((a + 1) * 127.5).round() / 127.5 - 1
    assert torch.allclose(crops, a8, atol=1e-5)


def test_identity_dlib_backend() -> None:
    emb = load_embedder("dlib")
    assert isinstance(emb, DlibFaceEmbedder)
    a, b = _pair(t=1, h=100, w=100, seed=5)
    d = emb(torch.cat([a, b]))
    assert d.shape == (2, 128) and not torch.allclose(d[0], d[1])
    assert torch.allclose(identity_similarity(a, a, emb), torch.ones(1), atol=1e-5)
    cos = F.cosine_similarity(d[:1].double(), d[1:].double()).float()
    assert torch.allclose(identity_similarity(a, b, emb), cos, atol=1e-6) and cos < 0.99999
    assert "dlib" in metric_definitions(identity="dlib")["id_sim"] and "NOT ArcFace" in metric_definitions(
        identity="dlib")["id_sim"]


def test_missing_weights_give_none_with_reason(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INNOUT_INSIGHTFACE_ROOT", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reasons = {}
    try:
        load_embedder("arcface")
    except MissingWeightsError as err:
        reasons["id_sim"] = str(err)
    try:
        load_lpips_model("alex")
    except MissingWeightsError as err:
        reasons["lpips"] = str(err)
    assert "buffalo_l/w600k_r50.onnx not found" in reasons["id_sim"]
    assert "alexnet-owt-7be5be79.pth" in reasons["lpips"]
    pred, target = _pair()
    fm = reconstruction_metrics(pred, target, None, None, reasons=reasons)
    assert fm.lpips is None and fm.id_sim is None
    assert torch.equal(fm.psnr, psnr(pred, target)) and torch.equal(fm.ssim, ssim(pred, target))
    rows = fm.rows()
    assert len(rows) == 3 and rows[0]["lpips"] is None and rows[0]["id_sim"] is None
    assert "alexnet-owt-7be5be79.pth" in rows[0]["reason"] and "w600k_r50.onnx" in rows[0]["reason"]
    summary = fm.summary()
    assert summary["lpips"] == MetricValue(None, METRIC_DEFINITIONS["lpips"], reasons["lpips"])
    assert summary["psnr"].value == pytest.approx(float(psnr(pred, target).double().mean()))
    assert summary["psnr"].reason is None


def test_definitions_name_their_settings() -> None:
    assert set(METRIC_DEFINITIONS) == {"psnr", "ssim", "lpips", "id_sim", "id_sim_edit", "psnr_clean", "occluded"}
    assert "AlexNet" in METRIC_DEFINITIONS["lpips"] and "0.1" in METRIC_DEFINITIONS["lpips"]
    assert "VGG16" in metric_definitions(lpips_net="vgg")["lpips"]
    assert "11x11" in METRIC_DEFINITIONS["ssim"] and "sigma 1.5" in METRIC_DEFINITIONS["ssim"]
    assert "w600k_r50" in METRIC_DEFINITIONS["id_sim"] and "112x112" in METRIC_DEFINITIONS["id_sim"]
    assert summarize("ssim", torch.tensor([0.5, 1.0])) == MetricValue(0.75, METRIC_DEFINITIONS["ssim"], None)
