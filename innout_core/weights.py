"""Where each weight file a user brings is looked for, and the offline LPIPS loader.

Nothing here downloads. Search places, in order (first hit wins):

=========================  ==========================================================================================
weight                     looked for at
=========================  ==========================================================================================
EG3D generator             ``$INNOUT_WEIGHTS/<name>`` then ``~/.cache/innout/weights/<name>``
                           (``ffhqrebalanced512-128.pkl`` official pickle, or ``.safetensors`` converted by
                           ``innout convert-checkpoint``)
insightface model pack     ``$INNOUT_INSIGHTFACE_ROOT/models/<pack>`` or ``$INNOUT_INSIGHTFACE_ROOT/<pack>``, then
                           ``~/.insightface/models/<pack>`` (insightface's own default); ``buffalo_l`` holds
                           ``det_10g.onnx`` (detector), ``2d106det.onnx``/``1k3d68.onnx`` (landmarks) and
                           ``w600k_r50.onnx`` (ArcFace recognition, used for identity similarity)
LPIPS backbones            torchvision's cache ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``):
                           ``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``, ``squeezenet1_1-b8a52dc0.pth``; the
                           LPIPS linear heads ship inside the ``lpips`` package (``lpips/weights/v0.1/<net>.pth``)
dlib models                the ``face_recognition_models`` package (installed from PyPI, fully offline)
InterfaceGAN boundaries    ``$INNOUT_WEIGHTS/interfacegan/<name>.npy``
StyleCLIP mappers          ``$INNOUT_WEIGHTS/styleclip/<name>.pt``
=========================  ==========================================================================================
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from innout_core.errors import MissingWeightsError

__all__ = [
    "EG3D_CHECKPOINT",
    "INSIGHTFACE_PACK",
    "ARCFACE_MODEL",
    "LPIPS_BACKBONES",
    "DLIB_MODELS",
    "WeightStatus",
    "weights_dirs",
    "torch_checkpoints_dir",
    "insightface_pack_dirs",
    "find_eg3d_checkpoint",
    "find_insightface_model",
    "find_lpips_backbone",
    "lpips_head_path",
    "find_dlib_model",
    "find_edit_direction",
    "load_lpips_model",
    "find_weights",
]

EG3D_CHECKPOINT = "ffhqrebalanced512-128.pkl"
INSIGHTFACE_PACK = "buffalo_l"
ARCFACE_MODEL = "w600k_r50.onnx"
INSIGHTFACE_FILES = ("det_10g.onnx", "2d106det.onnx", "1k3d68.onnx", "genderage.onnx", ARCFACE_MODEL)
LPIPS_BACKBONES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_LPIPS_URLS = "https://download.pytorch.org/models/"
DLIB_MODELS: dict[str, str] = {
    "shape_predictor_68": "shape_predictor_68_face_landmarks.dat",
    "shape_predictor_5": "shape_predictor_5_face_landmarks.dat",
    "face_recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_face_detector": "mmod_human_face_detector.dat",
}


@dataclass(frozen=True)
class WeightStatus:
    """One weight file: where it was found (or every place searched), what needs it and what happens without it."""

    name: str
    found: Path | None
    searched: tuple[Path, ...]
    needed_for: str
    without: str
    how: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the file was found."""
        return self.found is not None


def _first(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def weights_dirs() -> list[Path]:
    """Folders searched for innout weights: ``$INNOUT_WEIGHTS`` (if set) then ``~/.cache/innout/weights``."""
    dirs = []
    env = os.environ.get("INNOUT_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    dirs.append(cache / "innout" / "weights")
    return dirs


def torch_checkpoints_dir() -> Path:
    """torchvision's weight cache: ``torch.hub.get_dir()/checkpoints`` (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def insightface_pack_dirs(pack: str = INSIGHTFACE_PACK) -> list[Path]:
    """Folders searched for an insightface model pack, in order."""
    dirs = []
    env = os.environ.get("INNOUT_INSIGHTFACE_ROOT")
    if env:
        root = Path(env).expanduser()
        dirs += [root / "models" / pack, root / pack]
    dirs.append(Path.home() / ".insightface" / "models" / pack)
    return dirs


def _missing(name: str, searched: list[Path], how: str) -> MissingWeightsError:
    where = ", ".join(str(p) for p in searched)
    return MissingWeightsError(f"{name} not found (looked in: {where}); {how}", searched[0] if searched else None)


def _eg3d_candidates(name: str) -> list[Path]:
    stem = Path(name).stem
    names = [name] if name.endswith(".safetensors") else [name, f"{stem}.safetensors"]
    return [d / n for d in weights_dirs() for n in names]


def find_eg3d_checkpoint(name: str = EG3D_CHECKPOINT) -> Path:
    """Path of the EG3D generator (official pickle or converted ``.safetensors``). Raises MissingWeightsError."""
    cands = _eg3d_candidates(name)
    hit = _first(cands)
    if hit is None:
        raise _missing(name, cands, f"put {name} (NVIDIA EG3D release) in $INNOUT_WEIGHTS or pass --checkpoint")
    return hit


def find_insightface_model(file: str = ARCFACE_MODEL, pack: str = INSIGHTFACE_PACK) -> Path:
    """Path of one ONNX file of an insightface model pack. Raises MissingWeightsError."""
    cands = [d / file for d in insightface_pack_dirs(pack)]
    hit = _first(cands)
    if hit is None:
        raise _missing(
            f"{pack}/{file}", cands,
            f"unpack the insightface '{pack}' model pack into $INNOUT_INSIGHTFACE_ROOT/models/{pack}/ "
            f"(or ~/.insightface/models/{pack}/)",
        )
    return hit


def find_lpips_backbone(net: str = "alex") -> Path:
    """Path of the torchvision ImageNet weights LPIPS needs for ``net`` in {'alex', 'vgg', 'squeeze'}."""
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS network {net!r}; choose from {sorted(LPIPS_BACKBONES)}")
    fname = LPIPS_BACKBONES[net]
    path = torch_checkpoints_dir() / fname
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS-{net} backbone {fname} not found: copy {_LPIPS_URLS}{fname} to {path} "
            "(or set TORCH_HOME to a folder whose hub/checkpoints/ holds it)",
            path,
        )
    return path


def lpips_head_path(net: str = "alex", version: str = "0.1") -> Path:
    """The LPIPS linear-head weights shipped inside the ``lpips`` package."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise MissingWeightsError("the lpips package is not installed: pip install lpips==0.1.4")
    path = Path(spec.origin).parent / "weights" / f"v{version}" / f"{net}.pth"
    if not path.is_file():
        raise MissingWeightsError("LPIPS linear heads missing from the lpips package: reinstall lpips==0.1.4", path)
    return path


def find_dlib_model(key: str) -> Path:
    """Path of a dlib model from the ``face_recognition_models`` package; ``key`` in :data:`DLIB_MODELS`."""
    fname = DLIB_MODELS[key]
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingWeightsError(f"dlib model {fname} needs the face_recognition_models package: "
                                  "pip install face-recognition-models")
    path = Path(spec.origin).parent / "models" / fname
    if not path.is_file():
        raise MissingWeightsError("dlib model missing: reinstall face-recognition-models", path)
    return path


def find_edit_direction(kind: str, name: str) -> Path:
    """InterfaceGAN boundary (``kind='interfacegan'``, ``<name>.npy``) or StyleCLIP mapper (``'styleclip'``, ``.pt``).

    Raises MissingWeightsError naming the file and the folders searched.
    """
    ext = {"interfacegan": ".npy", "styleclip": ".pt"}
    if kind not in ext:
        raise ValueError(f"unknown edit kind {kind!r}; choose 'interfacegan' or 'styleclip'")
    fname = name if name.endswith(ext[kind]) else name + ext[kind]
    cands = [d / kind / fname for d in weights_dirs()]
    hit = _first(cands)
    if hit is None:
        raise _missing(f"{kind} {fname}", cands, f"put {fname} in $INNOUT_WEIGHTS/{kind}/")
    return hit


def load_lpips_model(net: str = "alex", spatial: bool = False, device: torch.device | str = "cpu") -> nn.Module:
    """``lpips.LPIPS`` (v0.1) built offline: backbone architecture without weights, then the cached torchvision file.

    The ImageNet backbone comes from :func:`find_lpips_backbone` (never downloaded); the linear heads from the lpips
    package. Returned in eval mode, frozen, on ``device``. Call ``model(x, y)`` with x, y ``[N, 3, H, W]`` in
    [-1, 1]: returns ``[N, 1, 1, 1]`` (or ``[N, 1, H, W]`` with ``spatial=True``), lower = more similar.

    Raises:
        MissingWeightsError: the backbone file is absent; the message names the file and where to put it.
    """
    import lpips

    backbone = find_lpips_backbone(net)
    try:
        state = torch.load(backbone, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MissingWeightsError(f"cannot read LPIPS-{net} backbone ({exc}): replace it with a fresh copy of "
                                  f"{_LPIPS_URLS}{LPIPS_BACKBONES[net]}", backbone) from None
    lpips_head_path(net)  # fail clearly if the package lost its linear heads
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        # pnet_rand=True: random trunk, no download; pretrained=True: the package's own v0.1 linear heads.
        model = lpips.LPIPS(net=net, version="0.1", spatial=spatial, pnet_rand=True, pretrained=True, verbose=False)
    # lpips' trunk slices hold torchvision's `features` modules under their index there: features.<i>.<p> is
    # slice<k>.<i>.<p>. The classifier part of the file is not used by LPIPS.
    trunk = {}
    for slice_name, slice_ in model.net.named_children():
        for key, value in slice_.state_dict().items():
            trunk[f"features.{key}"] = (f"{slice_name}.{key}", value.shape)
    state = state if isinstance(state, dict) else {}
    bad = [k for k, (_, shape) in trunk.items() if k not in state or tuple(state[k].shape) != tuple(shape)]
    if bad:
        raise MissingWeightsError(f"not a torchvision {net} state dict (missing or misshaped {bad[0]}): replace it "
                                  f"with a fresh copy of {_LPIPS_URLS}{LPIPS_BACKBONES[net]}", backbone)
    model.net.load_state_dict({new: state[old] for old, (new, _) in trunk.items()}, strict=True)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def find_weights() -> list[WeightStatus]:
    """Every weight innout can use: found path or places searched, what needs it and what happens without it."""
    out: list[WeightStatus] = []
    cands = _eg3d_candidates(EG3D_CHECKPOINT)
    out.append(WeightStatus(
        name=f"EG3D {EG3D_CHECKPOINT}", found=_first(cands), searched=tuple(cands),
        needed_for="inverting real face videos with the official FFHQ generator",
        without="only the embedded 'tiny' generator runs (demo and synthetic data)",
        how="put it in $INNOUT_WEIGHTS",
    ))
    dirs = insightface_pack_dirs(INSIGHTFACE_PACK)
    for fname, need, without in (
        ("det_10g.onnx", "insightface face detection", "use the dlib face backend (--face-backend dlib)"),
        (ARCFACE_MODEL, "ArcFace identity similarity (paper's ID metric)",
         "id_sim uses the dlib descriptor if chosen, else it is null with a reason"),
    ):
        c = [d / fname for d in dirs]
        out.append(WeightStatus(name=f"insightface {INSIGHTFACE_PACK}/{fname}", found=_first(c), searched=tuple(c),
                                needed_for=need, without=without,
                                how=f"unpack {INSIGHTFACE_PACK} into $INNOUT_INSIGHTFACE_ROOT/models/"))
    for net, fname in LPIPS_BACKBONES.items():
        if net == "squeeze":
            continue
        p = torch_checkpoints_dir() / fname
        need = ("LPIPS metric (AlexNet, the default)" if net == "alex"
                else "LPIPS-VGG losses of inversion / stage A / stage B (as the official code)")
        without = ("lpips metric is null with a reason" if net == "alex"
                   else "optimisation stages that use LPIPS-VGG fail with a clear message")
        out.append(WeightStatus(name=f"LPIPS {net} backbone {fname}", found=p if p.is_file() else None,
                                searched=(p,), needed_for=need, without=without,
                                how=f"copy {_LPIPS_URLS}{fname} there"))
    for key, fname in DLIB_MODELS.items():
        try:
            found: Path | None = find_dlib_model(key)
            searched: tuple[Path, ...] = (found,)
        except MissingWeightsError as err:
            found, searched = None, ((err.path,) if err.path else ())
        out.append(WeightStatus(name=f"dlib {fname}", found=found, searched=searched,
                                needed_for="dlib face backend / dlib identity descriptor",
                                without="the dlib backend is unavailable", how="pip install face-recognition-models"))
    for kind, ext, need in (("interfacegan", ".npy", "InterfaceGAN edits (younger, smile)"),
                            ("styleclip", ".pt", "StyleCLIP mapper edits (eyeglasses, surprised, Elsa)")):
        dirs_k = [d / kind for d in weights_dirs()]
        files = sorted({p for d in dirs_k if d.is_dir() for p in d.glob(f"*{ext}")})
        out.append(WeightStatus(name=f"{kind} directions", found=files[0].parent if files else None,
                                searched=tuple(dirs_k), needed_for=need,
                                without="those edits are skipped with a reason",
                                how=f"put <edit>{ext} files in $INNOUT_WEIGHTS/{kind}/",
                                extra={"files": ", ".join(p.name for p in files)}))
    return out
