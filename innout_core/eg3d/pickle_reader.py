"""A safe reader for official EG3D network pickles (docs/eg3d.md §15): no code in the file is ever run.

Official pickles are written by ``torch_utils.persistence``: every persistent object is
``_reconstruct_persistent_obj(meta)`` and the official unpickler ``exec``s ``meta['module_src']``. Loading one with
``pickle.load`` therefore runs whatever code the file carries. :func:`read_official_pickle` never does: a
restricted :class:`pickle.Unpickler` resolves only an allow-list of globals, turns persistent objects and the
by-reference module classes into inert records, rebuilds tensors from their embedded legacy ``torch.save``
streams with ``torch.load(weights_only=True)``, and walks the records into the official ``state_dict()``.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from innout_core.errors import CheckpointError

__all__ = ["EasyDictRecord", "ModuleRecord", "OfficialNetwork", "PersistentRecord", "read_official_pickle"]

# ----------------------------------------------------------------------------------------------------------------
# Inert records that stand in for the official classes while unpickling.


class EasyDictRecord(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""


@dataclass
class PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` returns here: the meta, with ``module_src`` never executed.

    ``state`` is the original object's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, attributes).
    """

    class_name: str
    version: int
    state: dict
    module_src_chars: int = 0


class ModuleRecord:
    """Inert stand-in for a class pickled by reference (``training.triplane.OSGDecoder``, ``Sequential``, ...).

    Built by NEWOBJ + BUILD: ``__new__`` ignores its arguments and ``__setstate__`` just keeps the state dict.
    """

    qualname: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ModuleRecord":
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.qualname}: expected a state dict, got {type(state).__name__}")
        self.state = state

    def __repr__(self) -> str:
        return f"ModuleRecord({self.qualname})"


_BY_REFERENCE = (
    ("training.triplane", "OSGDecoder"),
    ("training.volumetric_rendering.renderer", "ImportanceRenderer"),
    ("training.volumetric_rendering.ray_marcher", "MipRayMarcher2"),
    ("training.volumetric_rendering.ray_sampler", "RaySampler"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.activation", "Softplus"),
)
_RECORD_TYPES: dict[tuple[str, str], type[ModuleRecord]] = {
    (m, n): type(n + "Record", (ModuleRecord,), {"qualname": f"{m}.{n}"}) for m, n in _BY_REFERENCE
}

# Persistent classes an EG3D snapshot may hold (G, G_ema and D). Their module_src is never read; the class name
# only has to be one we know.
_PERSISTENT_CLASSES = frozenset(
    {
        "TriPlaneGenerator",
        "Generator",
        "SynthesisNetwork",
        "SynthesisBlock",
        "SynthesisLayer",
        "ToRGBLayer",
        "MappingNetwork",
        "FullyConnectedLayer",
        "Conv2dLayer",
        "SuperresolutionHybrid8XDC",
        "SuperresolutionHybrid8X",
        "SuperresolutionHybrid4X",
        "SuperresolutionHybrid2X",
        "SynthesisBlockNoUp",
        "DualDiscriminator",
        "DummyDualDiscriminator",
        "DiscriminatorBlock",
        "DiscriminatorEpilogue",
        "MinibatchStdLayer",
        "SingleDiscriminator",
        "MaskDualDiscriminatorV2",
        "AugmentPipe",
    }
)


# ----------------------------------------------------------------------------------------------------------------
# The restricted unpickler.


class _UnsafeGlobal(Exception):
    """Raised from ``find_class`` for a global that is not on the allow-list."""

    def __init__(self, qualname: str) -> None:
        super().__init__(qualname)
        self.qualname = qualname


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    """Record a persistent object's meta; ``module_src`` stays an opaque string (never exec/compile/eval)."""
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError(f"persistent object meta is a {type(meta).__name__}, expected a dict")
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"persistent object of type {meta.get('type')!r}; only 'class' is supported")
    version = meta.get("version")
    if version != 6:
        raise pickle.UnpicklingError(f"persistent object format version {version!r}; only version 6 is supported")
    class_name = meta.get("class_name")
    if class_name not in _PERSISTENT_CLASSES:
        raise _UnsafeGlobal(f"persistent class {class_name!r}")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent object {class_name} has no state dict")
    src = meta.get("module_src")
    return PersistentRecord(str(class_name), int(version), state, len(src) if isinstance(src, str) else 0)


def _load_from_bytes(data: Any) -> Tensor:
    """Stand-in for ``torch.storage._load_from_bytes``: parse the legacy ``torch.save`` stream, weights only.

    Returns the storage as a flat 1-D CPU tensor of its dtype (what :func:`_rebuild_tensor_v2` views).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"tensor storage payload is a {type(data).__name__}, expected bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation notices
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
            if isinstance(storage, torch.TypedStorage):
                return torch.empty(0, dtype=storage.dtype).set_(storage.untyped())
    except Exception as err:  # torch raises several types for corrupt or hostile streams
        raise pickle.UnpicklingError(f"unreadable tensor storage ({type(err).__name__}: {_first_line(err)})") from err
    if isinstance(storage, torch.UntypedStorage):
        return torch.empty(0, dtype=torch.uint8).set_(storage)
    raise pickle.UnpicklingError(f"tensor storage payload holds a {type(storage).__name__}, not a storage")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: int,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a bounds-checked strided copy of the storage.

    ``storage`` is the flat tensor :func:`_load_from_bytes` returned.
    """
    if not isinstance(storage, Tensor) or storage.ndim != 1:
        raise pickle.UnpicklingError(f"tensor built from a {type(storage).__name__}, expected a storage")
    flat = storage
    if backward_hooks:
        raise pickle.UnpicklingError("tensor carries backward hooks; refusing to restore them")
    if not (isinstance(storage_offset, int) and all(isinstance(v, int) for v in (*size, *stride))):
        raise pickle.UnpicklingError("tensor size/stride/offset are not integers")
    if len(size) != len(stride) or storage_offset < 0 or any(v < 0 for v in (*size, *stride)):
        raise pickle.UnpicklingError(f"bad tensor geometry size={tuple(size)} stride={tuple(stride)}")
    numel = flat.numel()
    if any(s == 0 for s in size):
        return torch.empty(tuple(size), dtype=flat.dtype)
    last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= numel:
        raise pickle.UnpicklingError(
            f"tensor of size {list(size)} at offset {storage_offset} needs {last + 1} elements; storage has {numel}"
        )
    return flat.as_strided(tuple(size), tuple(stride), storage_offset).clone()


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter``: the data tensor itself (a state dict holds tensors)."""
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError(f"parameter built from a {type(data).__name__}, expected a tensor")
    if backward_hooks:
        raise pickle.UnpicklingError("parameter carries backward hooks; refusing to restore them")
    return data


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's own data-only scalar constructor, refusing object dtypes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} is not allowed")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy scalar payload is not bytes")
    if len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar of {dtype} needs {dtype.itemsize} bytes, got {len(data)}")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    **_RECORD_TYPES,
}


class _SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`_SAFE_GLOBALS` and has no persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise _UnsafeGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not used by network pickles")


# ----------------------------------------------------------------------------------------------------------------
# The result of reading a checkpoint.


@dataclass
class OfficialNetwork:
    """A generator read from a checkpoint, as plain data.

    Attributes:
        init_kwargs: the official constructor kwargs (EasyDicts turned into plain dicts, recursively).
        rendering_kwargs: ``G_ema.rendering_kwargs`` from the object state (what the forward pass reads).
        neural_rendering_resolution: ``G_ema.neural_rendering_resolution`` from the object state (e.g. 128).
        state_dict: the official ``state_dict()``: names and order as torch builds them, CPU tensors.
        kinds: name -> ``"param"`` or ``"buffer"`` for every state-dict entry.
        class_name: the class of the network object (``TriPlaneGenerator``).
    """

    init_kwargs: dict
    rendering_kwargs: dict
    neural_rendering_resolution: int
    state_dict: "OrderedDict[str, Tensor]"
    kinds: dict[str, str] = field(default_factory=dict)
    class_name: str = "TriPlaneGenerator"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _plain(value: Any, where: str) -> Any:
    """EasyDict/OrderedDict -> dict, numpy scalars -> Python numbers, recursively; anything odd is an error."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v, where) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise pickle.UnpicklingError(f"{where} holds a {type(value).__name__}; expected plain data")


def _module_state(node: Any, name: str) -> dict:
    if isinstance(node, (PersistentRecord, ModuleRecord)):
        return node.state
    raise pickle.UnpicklingError(f"module {name or '<root>'} is a {type(node).__name__}, not a network module")


def _flatten(node: Any, prefix: str, out: "OrderedDict[str, Tensor]", kinds: dict[str, str], depth: int = 0) -> None:
    """Exactly ``nn.Module.state_dict`` order: own parameters, own persistent buffers, then children."""
    if depth > 64:
        raise pickle.UnpicklingError("module tree is too deep (cycle?)")
    state = _module_state(node, prefix[:-1])
    params = state.get("_parameters", {})
    buffers = state.get("_buffers", {})
    children = state.get("_modules", {})
    skip = state.get("_non_persistent_buffers_set", set()) or set()
    for group, kind in ((params, "param"), (buffers, "buffer")):
        if not isinstance(group, dict):
            raise pickle.UnpicklingError(f"module {prefix or '<root>'} has a malformed _{kind}s entry")
        for key, tensor in group.items():
            if tensor is None or (kind == "buffer" and key in skip):
                continue
            if not isinstance(tensor, Tensor):
                raise pickle.UnpicklingError(f"{prefix}{key} is a {type(tensor).__name__}, expected a tensor")
            out[prefix + key] = tensor
            kinds[prefix + key] = kind
    if not isinstance(children, dict):
        raise pickle.UnpicklingError(f"module {prefix or '<root>'} has a malformed _modules entry")
    for key, child in children.items():
        if child is not None:
            _flatten(child, f"{prefix}{key}.", out, kinds, depth + 1)


def _network_from_record(g: PersistentRecord) -> OfficialNetwork:
    state = g.state
    init_args = state.get("_init_args", ())
    if init_args:
        raise pickle.UnpicklingError("the network was built with positional constructor arguments; expected kwargs")
    if "_init_kwargs" not in state:
        raise pickle.UnpicklingError("G_ema has no _init_kwargs (not a torch_utils.persistence object)")
    init_kwargs = _plain(state["_init_kwargs"], "init_kwargs")
    rendering_kwargs = _plain(state.get("rendering_kwargs", init_kwargs.get("rendering_kwargs")), "rendering_kwargs")
    if not isinstance(rendering_kwargs, dict):
        raise pickle.UnpicklingError("G_ema has no rendering_kwargs")
    nrr = _plain(state.get("neural_rendering_resolution"), "neural_rendering_resolution")
    if not isinstance(nrr, int) or isinstance(nrr, bool) or nrr <= 0:
        raise pickle.UnpicklingError(f"G_ema.neural_rendering_resolution is {nrr!r}; expected a positive int")
    out: OrderedDict[str, Tensor] = OrderedDict()
    kinds: dict[str, str] = {}
    _flatten(g, "", out, kinds)
    return OfficialNetwork(init_kwargs, rendering_kwargs, nrr, out, kinds, g.class_name)


def read_official_pickle(path: str | Path) -> OfficialNetwork:
    """Read an official EG3D network pickle safely (no embedded code runs) into plain data.

    Accepts the training snapshot layout (a dict with ``G_ema``; ``G``, ``D`` and other keys are ignored).

    Args:
        path: the ``.pkl`` file (e.g. ``ffhqrebalanced512-128.pkl``).
    Returns:
        :class:`OfficialNetwork` with the official 177-entry ``state_dict`` (float32 CPU tensors).
    Raises:
        CheckpointError: one line naming the file and the problem: a global that is not on the allow-list,
            a truncated/empty/non-pickle file, no ``G_ema``, or a malformed network.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError("is a directory; expected an EG3D network .pkl file", path)
    if not path.is_file():
        raise CheckpointError("no such checkpoint file (pass the path of an EG3D .pkl)", path)
    if path.stat().st_size == 0:
        raise CheckpointError("empty file, not an EG3D network pickle", path)
    with path.open("rb") as f:
        head = f.read(2)
        if len(head) < 2 or head[0] != 0x80 or head[1] < 2:
            raise CheckpointError(
                f"not a network pickle (starts with {head!r}; an EG3D .pkl starts with b'\\x80' + protocol)", path
            )
        f.seek(0)
        obj = _unpickle(f, path)
    if isinstance(obj, dict):
        if "G_ema" not in obj:
            keys = ", ".join(sorted(map(str, obj)))[:200] or "none"
            raise CheckpointError(f"pickle has no 'G_ema' network (keys: {keys})", path)
        g = obj["G_ema"]
    else:
        g = obj
    if not isinstance(g, PersistentRecord) or g.class_name != "TriPlaneGenerator":
        what = g.class_name if isinstance(g, PersistentRecord) else type(g).__name__
        raise CheckpointError(f"G_ema is a {what}, expected an EG3D TriPlaneGenerator", path)
    try:
        return _network_from_record(g)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"malformed network: {_first_line(err)}", path) from None


def _unpickle(f: BinaryIO, path: Path) -> Any:
    try:
        return _SafeUnpickler(f).load()
    except _UnsafeGlobal as err:
        raise CheckpointError(
            f"refusing to load: the pickle asks for {err.qualname}, which is not on the allow-list of a network "
            "pickle (it could run code); only load checkpoints from sources you trust",
            path,
        ) from None
    except EOFError:
        raise CheckpointError("truncated pickle (ran out of data); re-download or re-copy the file", path) from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            MemoryError, RecursionError, UnicodeDecodeError) as err:
        msg = _first_line(err)
        if "truncated" in msg or "ran out of input" in msg.lower():
            raise CheckpointError("truncated pickle (ran out of data); re-download or re-copy the file", path) from None
        raise CheckpointError(f"not a readable network pickle ({type(err).__name__}: {msg})", path) from None
