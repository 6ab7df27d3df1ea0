"""Edits: InterfaceGAN directions, the official StyleCLIP mapper, causal smoothing (against loop references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from innout_core.edit import (
    OFFICIAL_SMOOTH_KERNEL,
    EditConfig,
    StyleCLIPMapper,
    _CausalBuffer,
    apply_interfacegan,
    apply_styleclip,
    causal_smooth,
    load_direction,
    load_styleclip_mapper,
)
from innout_core.errors import BadInputError, CheckpointError


# -- InterfaceGAN ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(512,), (1, 512), (14, 512)])
def test_load_direction_shapes(tmp_path, shape):
    rng = np.random.default_rng(0)
    arr = rng.standard_normal(shape).astype(np.float64)
    p = tmp_path / "d.npy"
    np.save(p, arr)
    d = load_direction(p)
    assert d.shape == (14, 512) and d.dtype == torch.float32
    ref = np.broadcast_to(arr.reshape(-1, 512), (14, 512))
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-6)


def test_load_direction_wrong_shape_names_file_and_shapes(tmp_path):
    p = tmp_path / "smile.npy"
    np.save(p, np.zeros((2, 512), np.float32))
    with pytest.raises(BadInputError) as e:
        load_direction(p)
    msg = str(e.value)
    assert "smile.npy" in msg and "[2, 512]" in msg and "[1, 512]" in msg and "[14, 512]" in msg
    with pytest.raises(BadInputError, match="not found"):
        load_direction(tmp_path / "missing.npy")


def test_apply_interfacegan_all_and_selected_layers():
    g = torch.Generator().manual_seed(1)
    ws = torch.randn(3, 14, 512, generator=g)
    d = torch.randn(1, 512, generator=g)
    out = apply_interfacegan(ws, d, 2.2, None)
    torch.testing.assert_close(out, ws + 2.2 * d[None].expand(3, 14, 512))
    out = apply_interfacegan(ws, d, -1.5, [0, 5, 13])
    for i in range(14):
        exp = ws[:, i] - 1.5 * d[0] if i in (0, 5, 13) else ws[:, i]
        torch.testing.assert_close(out[:, i], exp)
    with pytest.raises(BadInputError, match="out of range"):
        apply_interfacegan(ws, d, 1.0, [14])
    with pytest.raises(BadInputError, match="does not fit"):
        apply_interfacegan(ws, torch.zeros(3, 512), 1.0, None)


# -- StyleCLIP -------------------------------------------------------------------------------------------------
def _official_like_state(g: torch.Generator, levels=("course", "medium", "fine")) -> dict[str, torch.Tensor]:
    sd = {}
    for lvl in levels:
        for i in range(1, 5):
            sd[f"mapper.{lvl}_mapping.mapping.{i}.weight"] = torch.randn(512, 512, generator=g) / 0.01
            sd[f"mapper.{lvl}_mapping.mapping.{i}.bias"] = torch.randn(512, generator=g) * 5
    return sd


def _reference_mapper(ws: torch.Tensor, sd: dict[str, torch.Tensor], levels) -> torch.Tensor:
    """Loop reference of rosinality PixelNorm (dim 1) + EqualLinear(fused_lrelu, lr_mul 0.01) x 4 per level."""
    out = torch.zeros_like(ws, dtype=torch.float64)
    bounds = {"course": (0, 4), "medium": (4, 8), "fine": (8, 14)}
    for lvl, (a, b) in bounds.items():
        if lvl not in levels:
            continue
        x = ws[:, a:b].double()
        x = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
        for i in range(1, 5):
            W = sd[f"mapper.{lvl}_mapping.mapping.{i}.weight"].double()
            bias = sd[f"mapper.{lvl}_mapping.mapping.{i}.bias"].double()
            y = torch.empty_like(x)
            for n in range(x.shape[0]):
                for k in range(x.shape[1]):
                    v = W @ x[n, k] * (0.01 / math.sqrt(512)) + bias * 0.01
                    y[n, k] = torch.where(v >= 0, v, 0.2 * v) * math.sqrt(2)
            x = y
        out[:, a:b] = x
    return out


@pytest.mark.parametrize("levels", [("course", "medium", "fine"), ("course", "medium")])
def test_styleclip_mapper_matches_reference_and_loads_official_layout(tmp_path, levels):
    g = torch.Generator().manual_seed(2)
    sd = _official_like_state(g, levels)
    p = tmp_path / "best_model.pt"
    torch.save({"state_dict": sd, "opts": {"mapper_type": "LevelsMapper", "no_fine_mapper": "fine" not in levels}}, p)
    mapper = load_styleclip_mapper(p)
    assert isinstance(mapper, StyleCLIPMapper)
    ws = torch.randn(2, 14, 512, generator=g)
    ref = _reference_mapper(ws, sd, levels)
    got = mapper(ws)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4)  # float32 vs float64 matmul of 512
    if "fine" not in levels:
        assert torch.count_nonzero(got[:, 8:]) == 0
    edited = apply_styleclip(ws, mapper, 0.04)
    torch.testing.assert_close(edited, ws + 0.04 * got)


def test_styleclip_bad_checkpoints(tmp_path):
    p = tmp_path / "empty.pt"
    torch.save({"state_dict": {"decoder.x": torch.zeros(1)}}, p)
    with pytest.raises(CheckpointError, match="no StyleCLIP mapper weights"):
        load_styleclip_mapper(p)
    g = torch.Generator().manual_seed(3)
    sd = _official_like_state(g, ("course",))
    sd["mapper.course_mapping.mapping.2.weight"] = torch.zeros(256, 512)
    p2 = tmp_path / "bad.pt"
    torch.save(sd, p2)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_styleclip_mapper(p2)


# -- smoothing -------------------------------------------------------------------------------------------------
def _loop_smooth(x: torch.Tensor, f: float) -> torch.Tensor:
    k = OFFICIAL_SMOOTH_KERNEL
    out = x.clone()
    for t in range(2, x.shape[0]):
        out[t] = (1 - f) * x[t] + f * (k[0] * x[t - 2] + k[1] * x[t - 1] + k[2] * x[t])
    return out


def test_causal_smooth_matches_loop_and_is_causal():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 14, 8, generator=g)
    for f in (0.0, 0.4, 1.0):
        torch.testing.assert_close(causal_smooth(x, f), _loop_smooth(x, f))
    y = causal_smooth(x, 1.0)
    torch.testing.assert_close(y[:2], x[:2])
    x2 = x.clone()
    x2[5:] += 10.0  # changing the future must not change the past
    torch.testing.assert_close(causal_smooth(x2, 1.0)[:5], y[:5])
    c = torch.full((5, 3), 2.5)  # constants are fixed points (kernel sums to 1)
    torch.testing.assert_close(causal_smooth(c, 1.0), c)
    with pytest.raises(BadInputError):
        causal_smooth(x, 1.5)


@pytest.mark.parametrize("chunks", [[1] * 6, [2, 3, 1], [6]])
def test_running_buffer_equals_batch_smoothing(chunks):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, 3, 3, generator=g)
    buf = _CausalBuffer(0.7, OFFICIAL_SMOOTH_KERNEL)
    outs, i = [], 0
    for n in chunks:
        outs.append(buf(x[i : i + n]))
        i += n
    torch.testing.assert_close(torch.cat(outs), causal_smooth(x, 0.7))


def test_edit_config_round_trip(tmp_path):
    cfg = EditConfig.model_validate(
        {"interfacegan": [{"name": "smile", "path": str(tmp_path / "s.npy"), "layers": [0, 1]}],
         "styleclip": [{"name": "glasses", "path": str(tmp_path / "m.pt")}],
         "novel_view": {"enabled": True, "n_frames": 4}, "smooth": {"ws": 1.0}}
    )
    assert cfg.interfacegan[0].strength == 2.2 and cfg.styleclip[0].strength == 0.04
    assert EditConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(Exception):
        EditConfig.model_validate({"smooth": {"ws": 2.0}})
