"""Checkpoint reader/writer tests: the official small pickle, hostile pickles, broken files, round trips."""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from innout_core.eg3d import checkpoint as ck
from innout_core.eg3d import pickle_reader as pr
from innout_core.eg3d.checkpoint import OfficialNetwork, read_official_pickle
from innout_core.synthetic.eg3d_writer import write_official_pickle
from innout_core.errors import CheckpointError

from . import pickles_hostile as hostile

@pytest.fixture(scope="module")
def small_pkl(reference_dir: Path) -> Path:
    return reference_dir / "small-G_ema.pkl"


@pytest.fixture(scope="module")
def small_net(small_pkl: Path) -> OfficialNetwork:
    return read_official_pickle(small_pkl)


def _tsv_rows(reference_dir: Path) -> list[list[str]]:
    text = (reference_dir / "small-G_ema-state-dict.tsv").read_text()
    return [line.split("\t") for line in text.splitlines() if line]


def test_small_pickle_state_dict_matches_tsv(small_net: OfficialNetwork, reference_dir: Path) -> None:
    rows = _tsv_rows(reference_dir)
    assert len(rows) == 177 and len(small_net.state_dict) == 177
    assert [r[0] for r in rows] == list(small_net.state_dict)  # names and order
    for name, shape, dtype, kind in rows:
        t = small_net.state_dict[name]
        assert list(t.shape) == json.loads(shape), name
        assert str(t.dtype).removeprefix("torch.") == dtype, name
        assert small_net.kinds[name] == kind, name
        assert t.device.type == "cpu" and t.is_contiguous()


def test_small_pickle_values_match_reference_arrays(small_net: OfficialNetwork, reference_dir: Path) -> None:
    cases = np.load(reference_dir / "small-cases.npz")
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


# ------------------------------------------------------------------------------------------------------------------
# Hostile pickles: refused, and provably nothing ran.


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "call, qualname",
    [
        ("os.system", f"{os.system.__module__}.system"),
        ("builtins.exec", "builtins.exec"),
        ("builtins.eval", "builtins.eval"),
    ],
)
def test_code_running_reduce_is_refused(tmp_path: Path, call: str, qualname: str) -> None:
    marker = tmp_path / "marker"
    if call == "os.system":
        func, args = hostile.os_system_call(marker)
    else:
        func, args = getattr(builtins, call.split(".")[1]), (hostile.marker_src(marker),)
    pkl = _write(tmp_path / "evil.pkl", hostile.reduce_pickle(func, args))
    with pytest.raises(CheckpointError) as exc:
        read_official_pickle(pkl)
    msg = str(exc.value)
    assert msg.startswith(f"{pkl}: ") and "\n" not in msg
    assert qualname in msg and "allow-list" in msg
    assert not marker.exists()


def test_persistent_object_of_unknown_class_is_refused_and_module_src_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    src = hostile.marker_src(marker)
    pkl = _write(tmp_path / "canary.pkl", hostile.persistent_pickle("Canary", src))
    with pytest.raises(CheckpointError, match=r"persistent class 'Canary', .*allow-list") as exc:
        read_official_pickle(pkl)
    assert str(exc.value).startswith(f"{pkl}: ")
    assert not marker.exists()
    exec(compile(src, "canary", "exec"))  # the canary is real: executing its module_src does create the marker
    assert marker.exists()


def test_hostile_module_src_in_a_valid_network_is_ignored(small_net: OfficialNetwork, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pkl = write_official_pickle(small_net, tmp_path / "g.pkl", module_src=hostile.marker_src(marker))
    net = read_official_pickle(pkl)
    assert not marker.exists()
    assert list(net.state_dict) == list(small_net.state_dict)


@pytest.mark.parametrize(
    "module, name",
    [("training.networks_stylegan2", "Generator"), ("torch.nn.modules.linear", "Linear"), ("subprocess", "Popen"),
     ("torch", "load"), ("numpy.core.multiarray", "_reconstruct")],
)
def test_any_other_global_is_refused(tmp_path: Path, module: str, name: str) -> None:
    pkl = _write(tmp_path / "g.pkl", hostile.global_pickle(module, name))
    with pytest.raises(CheckpointError, match=rf"asks for {module}\.{name},"):
        read_official_pickle(pkl)


def test_hostile_storage_stream_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(hostile._CallOnLoad(*hostile.os_system_call(marker)))  # noqa: SLF001
    # hand-assemble `_load_from_bytes(payload)` to be sure the stream reaches our storage parser
    data = (b"\x80\x04" + pickle.SHORT_BINUNICODE + bytes([13]) + b"torch.storage" + pickle.SHORT_BINUNICODE
            + bytes([16]) + b"_load_from_bytes" + pickle.STACK_GLOBAL + pickle.BINBYTES
            + len(payload).to_bytes(4, "little") + payload + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
    pkl = _write(tmp_path / "s.pkl", data)
    with pytest.raises(CheckpointError, match="unreadable tensor storage"):
        read_official_pickle(pkl)
    assert not marker.exists()


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_numpy_scalars_both_spellings(numpy_module: str) -> None:
    value = np.float64(0.7071067811865476)
    # scalar(np.dtype('float64'), raw bytes), as numpy pickles its scalars; the argument tuple without PROTO/STOP
    body = pickle.dumps((value.dtype, value.tobytes()), protocol=3)[2:-1]
    data = (b"\x80\x04" + pickle.SHORT_BINUNICODE + bytes([len(numpy_module)]) + numpy_module.encode()
            + pickle.SHORT_BINUNICODE + bytes([6]) + b"scalar" + pickle.STACK_GLOBAL + body + pickle.REDUCE
            + pickle.STOP)
    out = pr._SafeUnpickler(io.BytesIO(data)).load()  # noqa: SLF001
    assert type(out) is np.float64 and out == value


# ------------------------------------------------------------------------------------------------------------------
# Broken files: one line naming the file and the problem.


def _one_line_error(path: Path, fn=None) -> str:
    with pytest.raises(CheckpointError) as exc:
        (fn or read_official_pickle)(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    return msg


def test_truncated_empty_and_non_pickle_files(small_pkl: Path, tmp_path: Path) -> None:
    data = small_pkl.read_bytes()
    for cut in (1000, len(data) // 2, len(data) - 1):
        msg = _one_line_error(_write(tmp_path / f"cut{cut}.pkl", data[:cut]))
        assert "truncated pickle" in msg
    assert "empty file" in _one_line_error(_write(tmp_path / "empty.pkl", b""))
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    assert "not a network pickle" in _one_line_error(_write(tmp_path / "img.png", png))
    assert "not a network pickle" in _one_line_error(_write(tmp_path / "notes.pkl", b"hello, world\n"))
    assert "no such checkpoint" in _one_line_error(tmp_path / "missing.pkl")
    garbage = b"\x80\x04" + bytes(range(256)) * 4
    assert "not a readable network pickle" in _one_line_error(_write(tmp_path / "garbage.pkl", garbage))


def test_pickle_without_g_ema(tmp_path: Path) -> None:
    pkl = _write(tmp_path / "d.pkl", pickle.dumps({"G": None, "D": None, "augment_pipe": None}, protocol=4))
    assert "no 'G_ema' network (keys: D, G, augment_pipe)" in _one_line_error(pkl)
    pkl = _write(tmp_path / "l.pkl", pickle.dumps([1, 2, 3], protocol=4))
    assert "G_ema is a list, expected an EG3D TriPlaneGenerator" in _one_line_error(pkl)


# ------------------------------------------------------------------------------------------------------------------
# Round trips (no generator needed).


def _assert_same_network(a: OfficialNetwork, b: OfficialNetwork) -> None:
    assert list(a.state_dict) == list(b.state_dict)
    for k in a.state_dict:
        x, y = a.state_dict[k], b.state_dict[k]
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x.view(torch.int32), y.view(torch.int32)), k  # bit-identical, NaN-safe
    assert a.kinds == b.kinds
    assert a.init_kwargs == b.init_kwargs and a.rendering_kwargs == b.rendering_kwargs
    assert a.neural_rendering_resolution == b.neural_rendering_resolution


class _RecordingUnpickler(pr._SafeUnpickler):  # noqa: SLF001
    def __init__(self, f) -> None:
        super().__init__(f)
        self.seen: set[str] = set()

    def find_class(self, module: str, name: str):
        self.seen.add(f"{module}.{name}")
        return super().find_class(module, name)


def _tree(node, path: str = "") -> list[tuple[str, str]]:
    """(module path, class) for every module of a record tree, in registration order."""
    cls = node.class_name if isinstance(node, ck.PersistentRecord) else node.qualname
    rows = [(path, cls)]
    for key, child in node.state["_modules"].items():
        rows += _tree(child, f"{path}.{key}" if path else key)
    return rows


def _load_records(path: Path) -> tuple[dict, set[str]]:
    with path.open("rb") as f:
        u = _RecordingUnpickler(f)
        return u.load(), u.seen


def test_official_pickle_round_trip_is_bit_identical(small_pkl: Path, small_net: OfficialNetwork,
                                                     tmp_path: Path) -> None:
    out = write_official_pickle(small_net, tmp_path / "rt.pkl")
    _assert_same_network(read_official_pickle(out), small_net)
    # Same layout as the official file: the same globals, the same module tree and classes, EasyDict kwargs.
    ours, ours_globals = _load_records(out)
    ref, ref_globals = _load_records(small_pkl)
    # (the official file also holds numpy scalar gains, attributes we recompute instead of writing)
    assert ours_globals == ref_globals - {"numpy.dtype", "numpy._core.multiarray.scalar"}
    assert _tree(ours["G_ema"]) == _tree(ref["G_ema"])
    for key in ("mapping_kwargs", "sr_kwargs"):
        assert type(ours["G_ema"].state["_init_kwargs"][key]) is ck.EasyDictRecord
    assert ours["G_ema"].state["neural_rendering_resolution"] == 32
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # atomic write left no temp file


def test_saved_weights_are_byte_identical_across_saves(small_net: OfficialNetwork, tmp_path: Path) -> None:
    # shipped weights are identified by their sha256 (config.json, provenance, benchmark fingerprints): saving the
    # same network again must give the same bytes (safetensors orders a multi-key metadata map by hash: 2 of 8
    # saves differed before the metadata became one key)
    shas = {json.loads((ck.save_network(small_net, tmp_path / f"s{i}") / "config.json").read_text())["weights"]["sha256"]
            for i in range(8)}
    assert len(shas) == 1


def test_safetensors_dir_round_trip_and_integrity(small_net: OfficialNetwork, tmp_path: Path) -> None:
    out = ck.save_network(small_net, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    (tmp_path / "plain").mkdir()  # the staged directory ends up with the umask's mode, like any new directory
    assert out.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format_version"] == ck.FORMAT_VERSION and len(cfg["weights"]["sha256"]) == 64
    _assert_same_network(ck.read_network(out), small_net)
    _assert_same_network(ck.read_network(out / "config.json"), small_net)  # a file inside names the directory
    assert "is a directory; expected an EG3D network .pkl" in _one_line_error(out)
    ck.save_network(small_net, out)  # overwriting an existing checkpoint directory works
    _assert_same_network(ck.read_network(out), small_net)
    # corruption is caught by the sha256 in config.json
    weights = out / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    msg = _one_line_error(weights, fn=lambda _: ck.read_network(out))
    assert "do not match the sha256" in msg
    (out / "config.json").unlink()
    assert "no config.json" in _one_line_error(out, fn=ck.read_network)


# ------------------------------------------------------------------------------------------------------------------
# Building a generator: error messages (test-only fake architecture, so these do not depend on generator.py).


class FakeTriPlaneGenerator(torch.nn.Module):
    """Test-only stand-in for generator_from_kwargs: a module tree with the reference TSV's names and shapes."""

    def __init__(self, rows: list[list[str]], init_kwargs: dict, rendering_kwargs: dict, nrr: int) -> None:
        super().__init__()
        self.init_kwargs, self.neural_rendering_resolution = init_kwargs, nrr
        self.rendering_kwargs = rendering_kwargs
        for name, shape, _, kind in rows:
            *mods, leaf = name.split(".")
            node: torch.nn.Module = self
            for m in mods:
                if not hasattr(node, m):
                    node.add_module(m, torch.nn.Module())
                node = getattr(node, m)
            t = torch.zeros(json.loads(shape))
            if kind == "param":
                node.register_parameter(leaf, torch.nn.Parameter(t))
            else:
                node.register_buffer(leaf, t)


@pytest.fixture()
def fake_arch(reference_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _tsv_rows(reference_dir)
    monkeypatch.setattr(ck, "_build_generator", lambda ik, rk, nrr: FakeTriPlaneGenerator(rows, ik, rk, nrr))


def _variant(net: OfficialNetwork, **changes) -> OfficialNetwork:
    state = OrderedDict(net.state_dict)
    kinds = dict(net.kinds)
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            del state[name], kinds[name]
        else:
            state[name] = value
            kinds.setdefault(name, "param")
    return OfficialNetwork(net.init_kwargs, net.rendering_kwargs, net.neural_rendering_resolution, state, kinds)


def test_load_generator_with_fake_architecture_is_bit_identical(fake_arch, small_net, small_pkl, tmp_path) -> None:
    g = ck.load_generator(small_pkl)
    assert not g.training and not any(p.requires_grad for p in g.parameters())
    for k, v in g.state_dict().items():
        assert torch.equal(v, small_net.state_dict[k]), k
    out = ck.convert_checkpoint(small_pkl, tmp_path / "conv")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["source"]["file"] == "small-G_ema.pkl" and len(cfg["source"]["sha256"]) == 64
    _assert_same_network(ck.read_network(out), small_net)


def test_wrong_shape_missing_and_unknown_tensors(fake_arch, small_net: OfficialNetwork, tmp_path: Path) -> None:
    bad = _variant(small_net, decoder__net__0__weight=torch.zeros(64, 31))
    pkl = write_official_pickle(bad, tmp_path / "shape.pkl")
    msg = _one_line_error(pkl, fn=ck.load_generator)
    assert "tensor decoder.net.0.weight has shape [64, 31] in the checkpoint but the model expects [64, 32]" in msg
    d = ck.save_network(bad, tmp_path / "shape_dir")
    assert "has shape [64, 31]" in _one_line_error(d, fn=ck.load_generator)
    missing = write_official_pickle(_variant(small_net, backbone__mapping__w_avg=None), tmp_path / "missing.pkl")
    assert "lacks 1 tensor(s) the model needs (first: backbone.mapping.w_avg)" in _one_line_error(
        missing, fn=ck.load_generator)
    extra = _variant(small_net, **{"superresolution__block1__extra": torch.ones(2)})
    pkl = write_official_pickle(extra, tmp_path / "extra.pkl")
    assert "1 tensor(s) the model does not know (first: superresolution.block1.extra)" in _one_line_error(
        pkl, fn=ck.load_generator)
    assert not (tmp_path / "conv").exists()
    with pytest.raises(CheckpointError):
        ck.convert_checkpoint(tmp_path / "shape.pkl", tmp_path / "conv")
    assert not (tmp_path / "conv").exists()  # nothing is written for a checkpoint that does not fit


# ------------------------------------------------------------------------------------------------------------------
# With the real architecture (generator.py / configs.py).


@torch.no_grad()
def _render(g, c: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """mapping -> backbone ('random' noise) -> render at 16x16 rays, every draw from one seeded generator.

    (The SR stage costs ~10 s on a shared 2-core CPU; its weights are compared bit-exactly instead.)
    """
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 512, generator=rng)
    ws = g.mapping(z, c, truncation_psi=0.7)
    planes = g.backbone_planes(ws, noise_mode="random", generator=rng)
    out = g.render(planes, c, resolution=16, generator=rng)
    return ws, planes, out.rgb, out.depth, out.acc


def test_convert_checkpoint_round_trip_real_generator(small_pkl: Path, small_net: OfficialNetwork,
                                                      reference_dir: Path, tmp_path: Path) -> None:
    from innout_core.eg3d.generator import TriPlaneGenerator

    g_pkl = ck.load_generator(small_pkl)
    assert isinstance(g_pkl, TriPlaneGenerator) and g_pkl.neural_rendering_resolution == 32
    out = ck.convert_checkpoint(small_pkl, tmp_path / "small")
    g_dir = ck.load_generator(out)
    assert isinstance(g_dir, TriPlaneGenerator) and g_dir.neural_rendering_resolution == 32
    for k, v in g_dir.state_dict().items():
        assert torch.equal(v, small_net.state_dict[k]), k
    assert g_dir.rendering.to_kwargs() == g_pkl.rendering.to_kwargs()
    assert g_dir.init_kwargs == g_pkl.init_kwargs
    cases = np.load(reference_dir / "small-cases.npz")
    c = torch.from_numpy(cases["mapping/c"])
    # same seed -> bitwise the same outputs from both loads
    for a, b in zip(_render(g_pkl, c[1:2], 7), _render(g_dir, c[1:2], 7)):
        assert torch.equal(a, b)
    # and the converted model is the official one: reference case a (README tolerance 2e-5 for ws)
    ws = g_dir.mapping(torch.from_numpy(cases["mapping/z"]), c, truncation_psi=0.7)
    assert (ws - torch.from_numpy(cases["mapping/ws_psi0.7"])).abs().max() < 2e-5


def test_save_and_official_pickle_from_a_live_generator(small_pkl: Path, tmp_path: Path,
                                                         device: torch.device) -> None:
    g = ck.load_generator(small_pkl, device=device)
    assert all(t.device.type == device.type for t in g.state_dict().values())
    g.neural_rendering_resolution = 64  # object state travels with the checkpoint
    for path in (ck.save_generator(g, tmp_path / "dir"), write_official_pickle(g, tmp_path / "g.pkl")):
        back = ck.load_generator(path, device=device)
        assert back.neural_rendering_resolution == 64
        assert back.rendering.to_kwargs() == g.rendering.to_kwargs()
        assert list(back.state_dict()) == list(g.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), g.state_dict().values()))


def test_official_pickle_without_dataset_label_std_loads_and_converts(small_net: OfficialNetwork,
                                                                       tmp_path: Path) -> None:
    """The official class registers no `dataset_label_std` (its training loop adds it): such a pickle loads."""
    from flows.cli import main

    plain = _variant(small_net, dataset_label_std=None)
    assert "dataset_label_std" not in plain.state_dict and len(plain.state_dict) == 176
    pkl = write_official_pickle(plain, tmp_path / "plain.pkl")
    assert "dataset_label_std" not in read_official_pickle(pkl).state_dict
    g = ck.load_generator(pkl)
    assert torch.equal(g.dataset_label_std, torch.ones(25))  # the model's default
    for k, v in g.state_dict().items():
        assert k == "dataset_label_std" or torch.equal(v, small_net.state_dict[k]), k
    assert main(["convert-checkpoint", str(pkl), str(tmp_path / "conv")]) == 0
    converted = ck.read_network(tmp_path / "conv")
    assert list(converted.state_dict) == list(plain.state_dict)  # converted as it is: no tensor invented
    back = ck.load_generator(tmp_path / "conv")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), g.state_dict().values()))
    # every other tensor is still required
    no_w_avg = write_official_pickle(_variant(plain, backbone__mapping__w_avg=None), tmp_path / "w.pkl")
    assert "lacks 1 tensor(s) the model needs (first: backbone.mapping.w_avg)" in _one_line_error(
        no_w_avg, fn=ck.load_generator)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_checkpoint_files_get_the_umask_mode(small_net: OfficialNetwork, tmp_path: Path, umask: int) -> None:
    """model.safetensors and config.json both get 0666 minus the umask, as any new file (safetensors alone: 0600)."""
    old = os.umask(umask)
    try:
        out = ck.save_network(small_net, tmp_path / "ckpt")
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
        assert modes == {"config.json": 0o666 & ~umask, "model.safetensors": 0o666 & ~umask}
        ck.save_network(small_net, out)  # overwriting keeps the same modes
        assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == modes
    finally:
        os.umask(old)
