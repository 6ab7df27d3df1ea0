"""Our generator checkpoint format, and converting an official EG3D pickle into it.

A directory holding ``model.safetensors`` and ``config.json`` (init_kwargs, rendering_kwargs,
neural_rendering_resolution, the state-dict key order, the format version and the sha256 of the weights file).
Official pickles are read by :mod:`innout_core.eg3d.pickle_reader` (re-exported here), which never runs their code.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from innout_core.eg3d.pickle_reader import (  # re-exported: the checkpoint API has always offered them
    EasyDictRecord,
    ModuleRecord,
    OfficialNetwork,
    PersistentRecord,
    _first_line,
    _plain,
    read_official_pickle,
)
from innout_core.errors import CheckpointError
from innout_core.io import hash_file

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
]

FORMAT_NAME = "innout-eg3d-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Tensors of our TriPlaneGenerator that a checkpoint may lack: the official training loop registers
# `dataset_label_std` on the generator (label statistics, unused at inference); the official class does not, so a
# generator built directly from it has no such buffer. A missing one keeps the model's default.
OPTIONAL_TENSORS = frozenset({"dataset_label_std"})


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
