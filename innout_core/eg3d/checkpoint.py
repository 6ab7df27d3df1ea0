"""Checkpoints: a safe reader for official EG3D network pickles, and our own safetensors format.

Official pickles (docs/eg3d.md §15) are written by ``torch_utils.persistence``: every persistent object is
``_reconstruct_persistent_obj(meta)`` and the official unpickler ``exec``s ``meta['module_src']``. Loading one with
``pickle.load`` therefore runs whatever code the file carries. :func:`read_official_pickle` never does: a
restricted :class:`pickle.Unpickler` resolves only an allow-list of globals, turns persistent objects and the
by-reference module classes into inert records, rebuilds tensors from their embedded legacy ``torch.save``
streams with ``torch.load(weights_only=True)``, and walks the records into the official ``state_dict()``.

Our format is a directory holding ``model.safetensors`` and ``config.json`` (init_kwargs, rendering_kwargs,
neural_rendering_resolution, the state-dict key order, the format version and the sha256 of the weights file).
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import secrets
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from innout_core.errors import CheckpointError
from innout_core.io import atomic_path, hash_file

if TYPE_CHECKING:  # pragma: no cover - typing only
    from innout_core.eg3d.generator import TriPlaneGenerator

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OfficialNetwork",
    "PersistentRecord",
    "ModuleRecord",
    "EasyDictRecord",
    "read_official_pickle",
    "read_network",
    "network_from_generator",
    "load_generator",
    "save_generator",
    "save_network",
    "convert_checkpoint",
    "write_official_pickle",
]

FORMAT_NAME = "innout-eg3d-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Tensors of our TriPlaneGenerator that a checkpoint may lack: the official training loop registers
# `dataset_label_std` on the generator (label statistics, unused at inference); the official class does not, so a
# generator built directly from it has no such buffer. A missing one keeps the model's default.
OPTIONAL_TENSORS = frozenset({"dataset_label_std"})
MODULE_SRC_PLACEHOLDER = "# source omitted: written by innout; loaders must never execute embedded source\n"

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


# ----------------------------------------------------------------------------------------------------------------
# Our format: <dir>/model.safetensors + <dir>/config.json.


def _json_ready(value: Any) -> Any:
    """Tuples -> lists so that JSON round-trips compare equal to what was written."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def network_from_generator(generator: "TriPlaneGenerator") -> OfficialNetwork:
    """The plain-data view of a live generator (state dict on the CPU, kwargs copied).

    ``rendering_kwargs`` comes from ``generator.rendering.to_kwargs()`` (the typed view round-trips the official
    dict); ``init_kwargs`` and ``neural_rendering_resolution`` from the attributes of the same names.
    """
    params = {name for name, _ in generator.named_parameters()}
    state = OrderedDict((k, v.detach().cpu()) for k, v in generator.state_dict().items())
    kinds = {k: ("param" if k in params else "buffer") for k in state}
    rendering = getattr(generator, "rendering", None)
    if rendering is not None and hasattr(rendering, "to_kwargs"):
        rendering_kwargs = dict(rendering.to_kwargs())
    else:
        rendering_kwargs = dict(generator.init_kwargs.get("rendering_kwargs", {}))
    return OfficialNetwork(
        init_kwargs=copy.deepcopy(_plain(dict(generator.init_kwargs), "init_kwargs")),
        rendering_kwargs=copy.deepcopy(_plain(rendering_kwargs, "rendering_kwargs")),
        neural_rendering_resolution=int(generator.neural_rendering_resolution),
        state_dict=state,
        kinds=kinds,
        class_name="TriPlaneGenerator",
    )


def _temp_name(target: Path) -> Path:
    """A fresh hidden sibling of ``target`` for an atomic write (same directory, so ``os.replace`` is atomic)."""
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def save_network(net: OfficialNetwork, out_dir: str | Path, *, source: dict | None = None) -> Path:
    """Write ``net`` in our format (``model.safetensors`` + ``config.json``) atomically.

    A new directory is staged beside ``out_dir`` and renamed into place; an existing directory gets each file
    replaced atomically, weights first and ``config.json`` (which holds the weights' sha256) last, so a crash
    leaves either the old checkpoint or a pair whose hash check fails loudly, never a silently mixed one.

    Returns:
        ``out_dir`` as a :class:`Path`.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError("exists and is not a directory; choose a new output directory", out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict.items()}
    stage = _temp_name(out_dir)
    stage.mkdir()  # (not mkdtemp: its 0700 mode would survive the rename; mkdir honours the umask)
    try:
        weights = stage / WEIGHTS_FILE
        # one metadata key: safetensors writes its metadata map in hash order, so two keys made the bytes (and the
        # sha256) of equal weights differ from one save to the next
        save_file(tensors, str(weights), metadata={"format": f"{FORMAT_NAME}/{FORMAT_VERSION}"})
        config = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "class_name": net.class_name,
            "init_kwargs": _json_ready(net.init_kwargs),
            "rendering_kwargs": _json_ready(net.rendering_kwargs),
            "neural_rendering_resolution": int(net.neural_rendering_resolution),
            "state_dict": [[k, net.kinds.get(k, "param")] for k in net.state_dict],
            "weights": {"file": WEIGHTS_FILE, "sha256": hash_file(weights)},
            "source": source or {},
        }
        (stage / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        # safetensors writes 0600; give the weights the mode a new file gets here (0666 minus the umask), as the
        # config has (reading the config's mode avoids os.umask, which is process-wide and racy)
        os.chmod(weights, (stage / CONFIG_FILE).stat().st_mode & 0o777)
        for f in (weights, stage / CONFIG_FILE):
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        if not out_dir.exists():
            os.rename(stage, out_dir)
        else:
            os.replace(weights, out_dir / WEIGHTS_FILE)
            os.replace(stage / CONFIG_FILE, out_dir / CONFIG_FILE)
    finally:
        if stage.exists():
            for f in stage.iterdir():
                f.unlink()
            stage.rmdir()
    return out_dir


def save_generator(generator: "TriPlaneGenerator", out_dir: str | Path) -> Path:
    """Save a generator in our format (see :func:`save_network`); returns ``out_dir``."""
    return save_network(network_from_generator(generator), out_dir)


def _read_dir(path: Path) -> OfficialNetwork:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE}: not an innout checkpoint directory (make one with "
                              "`innout convert-checkpoint PKL OUT`)", path)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"invalid JSON ({_first_line(err)})", cfg_path) from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT_NAME:
        raise CheckpointError(f"not an {FORMAT_NAME} config", cfg_path)
    version = cfg.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"format version {version!r} is newer than this innout ({FORMAT_VERSION}); "
                              "upgrade innout", cfg_path)
    try:
        weights = path / cfg["weights"]["file"]
        expect_sha = cfg["weights"]["sha256"]
        order = [(str(k), str(kind)) for k, kind in cfg["state_dict"]]
        init_kwargs, rendering_kwargs = dict(cfg["init_kwargs"]), dict(cfg["rendering_kwargs"])
        nrr = int(cfg["neural_rendering_resolution"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"missing or malformed field {_first_line(err)}", cfg_path) from None
    if not weights.is_file():
        raise CheckpointError("weights file is missing", weights)
    if hash_file(weights) != expect_sha:
        raise CheckpointError(f"weights do not match the sha256 in {CONFIG_FILE} (corrupt or partially written; "
                              "convert the checkpoint again)", weights)
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"unreadable safetensors file ({_first_line(err)})", weights) from None
    names = [k for k, _ in order]
    if set(names) != set(tensors):
        extra = sorted(set(tensors) ^ set(names))
        raise CheckpointError(f"tensor names differ from {CONFIG_FILE} (first: {extra[0]})", weights)
    state = OrderedDict((k, tensors[k]) for k in names)
    return OfficialNetwork(init_kwargs, rendering_kwargs, nrr, state, dict(order),
                           str(cfg.get("class_name", "TriPlaneGenerator")))


def read_network(path: str | Path) -> OfficialNetwork:
    """Read a checkpoint of either kind: an official ``.pkl`` file or our safetensors directory."""
    path = Path(path)
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent  # a file inside our checkpoint directory names the directory
    if path.is_dir():
        return _read_dir(path)
    if not path.exists():
        raise CheckpointError("no such checkpoint (pass an EG3D .pkl or an innout checkpoint directory)", path)
    return read_official_pickle(path)


# ----------------------------------------------------------------------------------------------------------------
# Building a generator.


def _fmt_shape(shape: Any) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _build_generator(init_kwargs: dict, rendering_kwargs: dict, neural_rendering_resolution: int) -> Any:
    """The architecture for a checkpoint: ``generator.generator_from_kwargs`` (imported late: torch modules load
    only when a generator is built)."""
    from innout_core.eg3d.generator import generator_from_kwargs

    return generator_from_kwargs(init_kwargs, rendering_kwargs, neural_rendering_resolution)


def _generator_from_network(net: OfficialNetwork, path: Path) -> "TriPlaneGenerator":
    try:
        generator = _build_generator(copy.deepcopy(net.init_kwargs), copy.deepcopy(net.rendering_kwargs),
                                     net.neural_rendering_resolution)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"unsupported generator configuration ({_first_line(err)})", path) from None
    expected = generator.state_dict()
    missing = [k for k in expected if k not in net.state_dict and k not in OPTIONAL_TENSORS]
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensor(s) the model needs (first: {missing[0]})",
                              path)
    unexpected = [k for k in net.state_dict if k not in expected]
    if unexpected:
        raise CheckpointError(f"checkpoint has {len(unexpected)} tensor(s) the model does not know "
                              f"(first: {unexpected[0]})", path)
    for name, want in expected.items():
        got = net.state_dict.get(name, want)
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"tensor {name} has shape {_fmt_shape(got.shape)} in the checkpoint but the "
                                  f"model expects {_fmt_shape(want.shape)}", path)
    state = OrderedDict((k, net.state_dict.get(k, v)) for k, v in expected.items())  # defaults for OPTIONAL_TENSORS
    generator.load_state_dict(state, strict=True)
    return generator.eval().requires_grad_(False)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> "TriPlaneGenerator":
    """Build a :class:`TriPlaneGenerator` from an official ``.pkl`` (read safely) or our checkpoint directory.

    Like the official loader, the result is in eval mode with ``requires_grad=False`` on every parameter
    (call ``requires_grad_(True)`` to fine-tune, e.g. PTI).

    Raises:
        CheckpointError: one line naming the file and the problem (unsafe/broken file, missing tensors, or
            ``tensor <name> has shape [..] in the checkpoint but the model expects [..]``).
    """
    path = Path(path)
    return _generator_from_network(read_network(path), path).to(device)


def convert_checkpoint(pkl: str | Path, out_dir: str | Path) -> Path:
    """Convert an official EG3D ``.pkl`` into our format; the network is rebuilt once to validate it first.

    Returns:
        ``out_dir`` (holding ``model.safetensors`` and ``config.json``).
    """
    pkl = Path(pkl)
    net = read_official_pickle(pkl)
    _generator_from_network(net, pkl)  # fails here, before writing anything, if our architecture cannot hold it
    return save_network(net, out_dir, source={"file": pkl.name, "sha256": hash_file(pkl)})


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
    ``module_src`` is ``module_src`` (a placeholder: no official source is shipped), so the file reads with
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
