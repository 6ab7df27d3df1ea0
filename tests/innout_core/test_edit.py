"""Edits: InterfaceGAN directions, the official StyleCLIP mapper, causal smoothing (against loop references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from innout_core.edit import (
    OFFICIAL_SMOOTH_KERNEL,
    EditConfig,
    SmoothConfig,
    StyleCLIPMapper,
    SyntheticDirectionConfig,
    _raw_luminance,
    apply_interfacegan,
    apply_styleclip,
    causal_smooth,
    load_direction,
    load_styleclip_mapper,
    materialise_edits,
    run_edits,
    synthetic_direction,
)
from innout_core.errors import BadInputError, CheckpointError
from innout_core.smoothing import _CausalBuffer
from innout_core.inversion import frontal_label
from tests.innout_core.tiny_video import known_face_stage_a


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


# -- presets and the synthetic direction -----------------------------------------------------------------------
def test_edit_presets():
    off = EditConfig.preset("official")
    assert off.smooth == SmoothConfig(ws=1.0, phi=1.0, sr=1.0) and off.remove_ood
    assert off.novel_view.enabled and off.novel_view.n_frames == 60 and off.novel_view.pitch_offset == -0.05
    pap = EditConfig.preset("paper")
    assert pap.smooth == SmoothConfig() and pap.synthetic is None  # the paper has no smoothing
    assert EditConfig.preset("fast").smooth.ws == 1.0
    tiny = EditConfig.preset("tiny-demo")
    assert tiny.synthetic is not None and tiny.synthetic.strength == 2.2 and tiny.smooth == SmoothConfig()
    # user edits added to a preset get the official per-edit strengths
    user = EditConfig.model_validate({**off.model_dump(), "interfacegan": [{"name": "smile", "path": "s.npy"}],
                                      "styleclip": [{"name": "elsa", "path": "m.pt"}]})
    assert user.interfacegan[0].strength == 2.2 and user.styleclip[0].strength == 0.04
    with pytest.raises(BadInputError, match="unknown preset 'best'"):
        EditConfig.preset("best")
    from innout_core.config import PipelineConfig

    assert PipelineConfig.from_preset("tiny-demo").edit_config() == tiny  # config.py picks the preset up


def test_synthetic_direction_is_a_brightness_normal(tiny_G, tmp_path):
    G = tiny_G
    d = synthetic_direction(G, samples=8, seed=3)
    assert d.shape == (1, G.w_dim) and d.dtype == torch.float32
    torch.testing.assert_close(d.norm(), torch.tensor(1.0))
    assert torch.equal(d, synthetic_direction(G, samples=8, seed=3))  # deterministic
    # moving along it makes renders brighter, moving against it darker (the attribute it was built from)
    c = frontal_label(G, 4)
    with torch.no_grad():
        w = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(9)), c)
        lum = [_raw_luminance(G, w + s * d, c, torch.Generator().manual_seed(0)).mean() for s in (-2.2, 0.0, 2.2)]
    assert lum[0] < lum[1] < lum[2]
    cfg = EditConfig(synthetic=SyntheticDirectionConfig(samples=8, seed=3, strength=1.5, layers=[0, 1]))
    mat = materialise_edits(cfg, G, tmp_path)
    assert mat.synthetic is None and mat.interfacegan[-1].name == "brighter"
    assert mat.interfacegan[-1].strength == 1.5 and mat.interfacegan[-1].layers == [0, 1]
    loaded = load_direction(mat.interfacegan[-1].path, n_ws=G.num_ws)
    torch.testing.assert_close(loaded, d.expand(G.num_ws, -1))


# -- run_edits end to end on the tiny generator -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_G():
    from innout_core.eg3d.configs import build_generator

    return build_generator("tiny").requires_grad_(False)


@pytest.fixture(scope="module")
def stage_a(tiny_G):
    """A 2-step stage-A result on 2 frames of a known face (neural resolution 16)."""
    return known_face_stage_a(tiny_G, steps=2)


def test_run_edits_end_to_end(tiny_G, stage_a, tmp_path):
    from innout_core.joint import render_composite_video

    G = tiny_G
    sa, c = stage_a
    T, H, R = c.shape[0], G.init_kwargs["img_resolution"], sa.neural_resolution
    rng = np.random.default_rng(0)
    direction = rng.standard_normal((1, 512)).astype(np.float32)
    np.save(tmp_path / "smile.npy", direction / np.linalg.norm(direction))
    g = torch.Generator().manual_seed(4)
    torch.save({"state_dict": _official_like_state(g, ("course", "medium")), "opts": {}}, tmp_path / "best_model.pt")
    cfg = EditConfig(
        interfacegan=[{"name": "smile", "path": tmp_path / "smile.npy", "strength": 2.2},
                      {"name": "zero", "path": tmp_path / "smile.npy", "strength": 0.0}],
        styleclip=[{"name": "glasses", "path": tmp_path / "best_model.pt", "strength": 0.04}],
        synthetic=SyntheticDirectionConfig(samples=8, seed=0),
        novel_view={"enabled": True, "frame": 1, "n_frames": 3, "yaw_range": 0.3},
    )
    out = run_edits(G, sa, c, cfg, torch.Generator().manual_seed(7))
    assert set(out) == {"smile", "zero", "glasses", "brighter", "remove_ood", "novel_view"}
    for name, frames in out.items():
        n = 3 if name == "novel_view" else T
        assert frames.shape == (n, 3, H, H) and frames.dtype == torch.float32, name
        assert torch.isfinite(frames).all() and frames.abs().max() <= 1.0, name

    recon = render_composite_video(G, sa, c, torch.Generator().manual_seed(7)).image.clamp(-1, 1)
    torch.testing.assert_close(out["zero"], recon, rtol=0, atol=0)  # same latents, same ray samples: bitwise
    for name in ("smile", "glasses", "brighter"):
        assert (out[name] - recon).abs().mean() > 1e-3, name  # each edit changes the video
    assert out["brighter"].mean() > recon.mean()
    # OOD removal (blend weights 0) is the plain face render of the stage-A latents with the same ray samples,
    # super-resolved as the release's composite path does (clamped raw RGB, constant SR noise)
    gen = torch.Generator().manual_seed(7)  # frame by frame: the composite renderer draws per frame in order
    with torch.no_grad():
        feats = [G.synthesis(sa.ws[t : t + 1], c[t : t + 1], noise_mode="const", generator=gen,
                             resolution=R).feature_image for t in range(T)]
        face = torch.cat([G.superresolve(f[:, :3].clamp(-1, 1), f, sa.ws[t : t + 1], noise_mode="const")
                          for t, f in enumerate(feats)])
    torch.testing.assert_close(out["remove_ood"], face.clamp(-1, 1), rtol=0, atol=2e-5)  # float32 march order
    assert (out["novel_view"][0] - out["novel_view"][2]).abs().mean() > 1e-3  # the orbit moves the camera


def test_novel_view_sample_mult_doubles_the_depth_samples(tiny_G, stage_a):
    """gen_3d.py --sample_mult 2 (official preset): the orbit is rendered with twice the samples per ray, i.e.
    what a generator configured with 2x depth_resolution and 2x depth_resolution_importance renders."""
    import copy
    import dataclasses

    G = tiny_G
    sa, c = stage_a
    assert EditConfig.preset("official").novel_view.sample_mult == 2
    assert EditConfig.preset("paper").novel_view.sample_mult == 1
    nv = {"enabled": True, "frame": 0, "n_frames": 2, "yaw_range": 0.3}
    one = EditConfig(remove_ood=False, novel_view=nv)
    two = EditConfig(remove_ood=False, novel_view={**nv, "sample_mult": 2})
    out2 = run_edits(G, sa, c, two, torch.Generator().manual_seed(7))["novel_view"]
    r = G.rendering
    G2 = copy.deepcopy(G)
    G2.rendering = dataclasses.replace(r, depth_resolution=2 * r.depth_resolution,
                                       depth_resolution_importance=2 * r.depth_resolution_importance)
    ref = run_edits(G2, sa, c, one, torch.Generator().manual_seed(7))["novel_view"]
    torch.testing.assert_close(out2, ref, atol=0, rtol=0)
    assert G.rendering == r  # restored
    plain = run_edits(G, sa, c, one, torch.Generator().manual_seed(7))["novel_view"]
    assert (plain - out2).abs().max() > 1e-4
