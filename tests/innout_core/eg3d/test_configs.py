"""Configs: ffhq512-128 state dict == the released TSV; tiny is fixed, fast-sized and has empty + opaque space."""

from __future__ import annotations

import json

import pytest
import torch

from innout_core.eg3d.configs import CONFIGS, build_generator, generator_from_kwargs


def _tsv(path):
    rows = []
    for line in path.read_text().splitlines():
        name, shape, dtype, kind = line.split("\t")
        rows.append((name, tuple(json.loads(shape)), dtype, kind))
    return rows


def test_ffhq512_128_state_dict_matches_released_tsv(reference_dir):
    rows = _tsv(reference_dir / "ffhq512-128-state-dict.tsv")
    assert len(rows) == 177
    g = build_generator("ffhq512-128", seed=0)
    sd = g.state_dict()
    params = {n for n, _ in g.named_parameters()}
    got = [(n, tuple(t.shape), str(t.dtype).replace("torch.", ""), "param" if n in params else "buffer")
           for n, t in sd.items()]
    assert got == rows
    assert sum(t.numel() for n, t in sd.items() if n in params) == 30_662_136
    assert g.neural_rendering_resolution == 128 and g.num_ws == 14
    assert g.rendering.depth_resolution == 48 and g.superresolution.input_resolution == 128


def test_small_reference_layout_builds_from_kwargs(reference_dir):
    rows = _tsv(reference_dir / "small-G_ema-state-dict.tsv")
    kw = dict(CONFIGS["ffhq512-128"].init_kwargs, channel_base=1024, channel_max=32)
    g = generator_from_kwargs(kw, kw["rendering_kwargs"], 32)
    assert [(n, tuple(t.shape)) for n, t in g.state_dict().items()] == [(r[0], r[1]) for r in rows]


def test_build_is_deterministic_per_seed():
    a, b, c = build_generator("tiny", 0), build_generator("tiny", 0), build_generator("tiny", 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["backbone.synthesis.b4.const"], sc["backbone.synthesis.b4.const"])


def test_tiny_renders_mix_empty_and_opaque_rays():
    g = build_generator("tiny")
    assert g.num_ws == 10 and g.plane_resolution == 64 and g.neural_rendering_resolution == 32
    assert g.rendering.depth_resolution == 12 and g.rendering.depth_resolution_importance == 12
    c = torch.tensor([[1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1.0]])
    z = torch.randn(4, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = g.mapping(z, c.expand(4, -1), truncation_psi=0.7)
        planes = g.backbone_planes(ws)
        out = g.render(planes, c.expand(4, -1), generator=torch.Generator().manual_seed(0))
        sr = g.superresolve(features_to_image_raw(out), features_to_image_all(out), ws)
    acc = out.acc.flatten()
    assert float((acc < 0.2).float().mean()) > 0.03, "tiny should have empty rays"
    assert float((acc > 0.9).float().mean()) > 0.2, "tiny should have opaque rays"
    assert sr.shape == (4, 3, 128, 128) and float(sr.abs().max()) < 4.0


def features_to_image_all(out):
    from innout_core.eg3d.generator import features_to_image

    return features_to_image(out.rgb, 32)


def features_to_image_raw(out):
    return features_to_image_all(out)[:, :3]


def test_unknown_config_and_unsupported_kwargs():
    with pytest.raises(KeyError, match="unknown generator config"):
        build_generator("ffhq1024")
    kw = dict(CONFIGS["tiny"].init_kwargs)
    bad = dict(kw["rendering_kwargs"], superresolution_module="training.superresolution.SuperresolutionHybrid4X")
    with pytest.raises(ValueError, match="not supported"):
        generator_from_kwargs(kw, bad, 32)
