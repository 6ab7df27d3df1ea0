"""Checkpoint reader/writer tests: the official small pickle, hostile pickles, broken files, round trips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from innout_core.eg3d.checkpoint import OfficialNetwork, read_official_pickle
from innout_core.errors import CheckpointError

REF = ("eg3d", "reference")


@pytest.fixture(scope="module")
def small_pkl(shared_dir: Path) -> Path:
    return shared_dir.joinpath(*REF, "small-G_ema.pkl")


@pytest.fixture(scope="module")
def small_net(small_pkl: Path) -> OfficialNetwork:
    return read_official_pickle(small_pkl)


def _tsv_rows(shared_dir: Path) -> list[list[str]]:
    text = shared_dir.joinpath(*REF, "small-G_ema-state-dict.tsv").read_text()
    return [line.split("\t") for line in text.splitlines() if line]


def test_small_pickle_state_dict_matches_tsv(small_net: OfficialNetwork, shared_dir: Path) -> None:
    rows = _tsv_rows(shared_dir)
    assert len(rows) == 177 and len(small_net.state_dict) == 177
    assert [r[0] for r in rows] == list(small_net.state_dict)  # names and order
    for name, shape, dtype, kind in rows:
        t = small_net.state_dict[name]
        assert list(t.shape) == json.loads(shape), name
        assert str(t.dtype).removeprefix("torch.") == dtype, name
        assert small_net.kinds[name] == kind, name
        assert t.device.type == "cpu" and t.is_contiguous()


def test_small_pickle_values_match_reference_arrays(small_net: OfficialNetwork, shared_dir: Path) -> None:
    cases = np.load(shared_dir.joinpath(*REF, "small-cases.npz"))
    w_avg = small_net.state_dict["backbone.mapping.w_avg"]
    assert torch.equal(w_avg, torch.from_numpy(cases["mapping/w_avg"]))
    # README: every tensor has non-zero entries; resample_filter keeps its official value [1,3,3,1]^T[1,3,3,1]/64.
    assert all(bool(t.ne(0).any()) for t in small_net.state_dict.values())
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expect = torch.outer(f, f) / 64
    filters = [v for k, v in small_net.state_dict.items() if k.endswith("resample_filter")]
    assert len(filters) == 26 and all(torch.equal(v, expect) for v in filters)


def test_small_pickle_kwargs(small_net: OfficialNetwork) -> None:
    ik = small_net.init_kwargs
    assert type(ik["mapping_kwargs"]) is dict and ik["mapping_kwargs"] == {"num_layers": 2}
    assert ik["sr_kwargs"] == {"channel_base": 32768, "channel_max": 512, "fused_modconv_default": "inference_only"}
    assert type(ik["sr_kwargs"]) is dict
    expect_init = dict(z_dim=512, w_dim=512, c_dim=25, img_resolution=512, img_channels=3, channel_base=1024,
                       channel_max=32, fused_modconv_default="inference_only", num_fp16_res=0, conv_clamp=None,
                       sr_num_fp16_res=4)
    assert {k: ik[k] for k in expect_init} == expect_init
    rk = small_net.rendering_kwargs
    assert rk == {
        "image_resolution": 512, "disparity_space_sampling": False, "clamp_mode": "softplus",
        "superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC",
        "c_gen_conditioning_zero": False, "gpc_reg_prob": 0.5, "c_scale": 1.0, "superresolution_noise_mode": "none",
        "density_reg": 0.25, "density_reg_p_dist": 0.004, "reg_type": "l1", "decoder_lr_mul": 1.0,
        "sr_antialias": True, "depth_resolution": 12, "depth_resolution_importance": 12, "ray_start": 2.25,
        "ray_end": 3.3, "box_warp": 1, "avg_camera_radius": 2.7, "avg_camera_pivot": [0, 0, 0.2],
    }
    assert ik["rendering_kwargs"] == rk
    assert small_net.neural_rendering_resolution == 32
    assert small_net.class_name == "TriPlaneGenerator"


def test_reader_imports_nothing_from_the_pickle(small_pkl: Path) -> None:
    read_official_pickle(small_pkl)
    bad = [m for m in sys.modules if m.split(".")[0] in {"training", "torch_utils", "dnnlib"}
           or m.startswith("_imported_module_")]
    assert bad == []
