"""A writer of official-format EG3D snapshot pickles, for test data only (the pipeline never writes one).

Makes files in the ``torch_utils.persistence`` layout (persistent objects, by-reference classes, legacy tensor
storage streams) from a generator or an :class:`~innout_core.eg3d.pickle_reader.OfficialNetwork`, so the safe
reader and the converter can be tested without shipping an official pickle. No official source code is shipped:
every ``module_src`` holds a short stand-in string.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from innout_core.eg3d.checkpoint import network_from_generator
from innout_core.eg3d.pickle_reader import OfficialNetwork
from innout_core.errors import CheckpointError
from innout_core.io import atomic_path

if TYPE_CHECKING:  # pragma: no cover - typing only
    from innout_core.eg3d.generator import TriPlaneGenerator

__all__ = ["MODULE_SRC_PLACEHOLDER", "write_official_pickle"]

MODULE_SRC_PLACEHOLDER = "# source omitted: written by innout; loaders must never execute embedded source\n"

# ----------------------------------------------------------------------------------------------------------------
# Writing the official persistent-object format.


@dataclass(frozen=True)
class _Ref:
    """A global emitted by name (module need not be importable here, and is never imported)."""

    module: str
    name: str


@dataclass(eq=False)
class _PersistentOut:
    class_name: str
    state: dict
    module_src: str


@dataclass(eq=False)
class _ByRefOut:
    ref: _Ref
    state: dict


@dataclass(eq=False)
class _TensorOut:
    tensor: Tensor
    parameter: bool


class _EasyDictOut(dict):
    """Pickled as ``dnnlib.util.EasyDict`` (NEWOBJ + SETITEMS, as a dict subclass is)."""


_RECONSTRUCT = _Ref("torch_utils.persistence", "_reconstruct_persistent_obj")
_EASYDICT = _Ref("dnnlib.util", "EasyDict")
_REBUILD_TENSOR = _Ref("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Ref("torch._utils", "_rebuild_parameter")
_LOAD_FROM_BYTES = _Ref("torch.storage", "_load_from_bytes")


def _legacy_storage_bytes(tensor: Tensor) -> bytes:
    """``torch.save`` of the tensor's typed storage in the legacy (non-zip) format, as official pickles embed."""
    flat = tensor.detach().cpu().contiguous().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = torch.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=flat.dtype, _internal=True)
        buf = io.BytesIO()
        torch.save(storage, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


class _OfficialPickler(pickle._Pickler):  # noqa: SLF001 - the pure-Python pickler allows custom dispatch
    """Protocol-4 pickler that writes the ``torch_utils.persistence`` layout without importing its modules."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: SLF001

    def _save_ref(self, obj: _Ref) -> None:
        self.save(obj.module)
        self.save(obj.name)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    def _save_persistent(self, obj: _PersistentOut) -> None:
        meta = {"type": "class", "version": 6, "module_src": obj.module_src, "class_name": obj.class_name,
                "state": obj.state}
        self.save(_RECONSTRUCT)
        self.save((meta,))
        self.write(pickle.REDUCE)
        self.memoize(obj)

    def _save_by_ref(self, obj: _ByRefOut) -> None:
        self.save(obj.ref)
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    def _save_easydict(self, obj: _EasyDictOut) -> None:
        self.save(_EASYDICT)
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    def _save_tensor(self, obj: _TensorOut) -> None:
        if obj.parameter:  # _rebuild_parameter(_rebuild_tensor_v2(...), False, OrderedDict())
            self.save(_REBUILD_PARAMETER)
            self.write(pickle.MARK)
            self._save_plain_tensor(obj.tensor)
            self.save(False)
            self.save(OrderedDict())
            self.write(pickle.TUPLE + pickle.REDUCE)
        else:
            self._save_plain_tensor(obj.tensor)
        self.memoize(obj)

    def _save_plain_tensor(self, t: Tensor) -> None:
        """_rebuild_tensor_v2(_load_from_bytes(<legacy stream>), 0, size, contiguous stride, False, OrderedDict())."""
        self.save(_REBUILD_TENSOR)
        self.write(pickle.MARK)
        self.save(_LOAD_FROM_BYTES)
        self.save((_legacy_storage_bytes(t),))
        self.write(pickle.REDUCE)
        self.save(0)
        self.save(tuple(int(s) for s in t.shape))
        self.save(tuple(int(s) for s in torch.empty(t.shape, device="meta").stride()))
        self.save(False)
        self.save(OrderedDict())
        self.write(pickle.TUPLE + pickle.REDUCE)

    dispatch[_Ref] = _save_ref
    dispatch[_PersistentOut] = _save_persistent
    dispatch[_ByRefOut] = _save_by_ref
    dispatch[_EasyDictOut] = _save_easydict
    dispatch[_TensorOut] = _save_tensor


def _official_class(path: tuple[str, ...], sr_class: str) -> tuple[str, _Ref | None]:
    """(class name, by-reference global or None for a persistent class) of the official module at ``path``."""
    last = path[-1] if path else ""
    table = {
        (): "TriPlaneGenerator",
        ("backbone",): "Generator",
        ("backbone", "synthesis"): "SynthesisNetwork",
        ("backbone", "mapping"): "MappingNetwork",
        ("superresolution",): sr_class,
    }
    if path in table:
        return table[path], None
    by_ref = {
        ("renderer",): _Ref("training.volumetric_rendering.renderer", "ImportanceRenderer"),
        ("renderer", "ray_marcher"): _Ref("training.volumetric_rendering.ray_marcher", "MipRayMarcher2"),
        ("ray_sampler",): _Ref("training.volumetric_rendering.ray_sampler", "RaySampler"),
        ("decoder",): _Ref("training.triplane", "OSGDecoder"),
        ("decoder", "net"): _Ref("torch.nn.modules.container", "Sequential"),
        ("decoder", "net", "1"): _Ref("torch.nn.modules.activation", "Softplus"),
    }
    if path in by_ref:
        return by_ref[path].name, by_ref[path]
    if path[:2] == ("decoder", "net") or last in ("affine", "embed") or (last[:2] == "fc" and last[2:].isdigit()):
        return "FullyConnectedLayer", None
    if (last[:1] == "b" and last[1:].isdigit()) or (last[:5] == "block" and last[5:].isdigit()):
        return "SynthesisBlock", None
    if last in ("conv0", "conv1"):
        return "SynthesisLayer", None
    if last == "torgb":
        return "ToRGBLayer", None
    raise ValueError(f"no official EG3D module is named {'.'.join(path)!r}")


@dataclass
class _Node:
    params: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    children: dict = field(default_factory=dict)


def _module_tree(net: OfficialNetwork) -> _Node:
    """Rebuild the official module tree from state-dict names (first appearance = registration order), plus the
    parameter-free modules the official generator registers (renderer, ray_marcher, ray_sampler, Softplus)."""
    root = _Node()
    root.children["renderer"] = _Node(children={"ray_marcher": _Node()})
    root.children["ray_sampler"] = _Node()
    for name, tensor in net.state_dict.items():
        *mods, leaf = name.split(".")
        node = root
        for m in mods:
            node = node.children.setdefault(m, _Node())
        group = node.params if net.kinds.get(name, "param") == "param" else node.buffers
        group[leaf] = tensor
    net_node = root.children.get("decoder", _Node()).children.get("net")
    if net_node is not None and "1" not in net_node.children:
        items = list(net_node.children.items())
        net_node.children = dict(items[:1] + [("1", _Node())] + items[1:])
    return root


def _to_out(node: _Node, path: tuple[str, ...], net: OfficialNetwork, sr_class: str, module_src: str) -> Any:
    state: dict = {
        "training": False,
        "_parameters": {k: _TensorOut(v, True) for k, v in node.params.items()},
        "_buffers": {k: _TensorOut(v, False) for k, v in node.buffers.items()},
        "_non_persistent_buffers_set": set(),
        "_modules": {k: _to_out(c, (*path, k), net, sr_class, module_src) for k, c in node.children.items()},
    }
    class_name, ref = _official_class(path, sr_class)
    if ref is not None:
        return _ByRefOut(ref, state)
    if not path:
        kwargs = copy.deepcopy(net.init_kwargs)
        for key in ("mapping_kwargs", "sr_kwargs"):  # the official code passes these as EasyDicts
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = _EasyDictOut(kwargs[key])
        state.update(_init_args=(), _init_kwargs=kwargs, rendering_kwargs=copy.deepcopy(net.rendering_kwargs),
                     neural_rendering_resolution=int(net.neural_rendering_resolution))
    return _PersistentOut(class_name, state, module_src)


def write_official_pickle(
    network: "TriPlaneGenerator | OfficialNetwork", path: str | Path, *, module_src: str = MODULE_SRC_PLACEHOLDER
) -> Path:
    """Write an official-format snapshot pickle ``{'training_set_kwargs': None, 'G_ema': ..., 'augment_pipe': None}``.

    Persistent objects are ``_reconstruct_persistent_obj(meta)`` with the official meta (version 6); the module
    tree, class names and by-reference classes follow the official ``TriPlaneGenerator``; tensors are
    ``_rebuild_tensor_v2`` / ``_rebuild_parameter`` over ``_load_from_bytes`` legacy storage streams. Every
    ``module_src`` is the stand-in string ``module_src`` (no official source is shipped), so the file reads with
    :func:`read_official_pickle` and other state-level readers, but not with the official unpickler, which needs
    the real source to exec. Written atomically.
    """
    path = Path(path)
    net = network if isinstance(network, OfficialNetwork) else network_from_generator(network)
    sr_module = str(net.rendering_kwargs.get("superresolution_module", "SuperresolutionHybrid8XDC"))
    try:
        g_ema = _to_out(_module_tree(net), (), net, sr_module.rsplit(".", 1)[-1], module_src)
    except ValueError as err:
        raise CheckpointError(f"cannot write an official pickle: {err}", path) from None
    snapshot = {"training_set_kwargs": None, "G_ema": g_ema, "augment_pipe": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _OfficialPickler(f, protocol=4).dump(snapshot)
    return path
