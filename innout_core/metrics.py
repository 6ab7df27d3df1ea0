"""Reconstruction and identity metrics, per frame, each with the definition it was computed under.

Functional core (torchmetrics' ``functional/`` style): every function takes frame batches ``[T, 3, H, W]`` float in
[-1, 1] (RGB) and returns a per-frame ``Tensor [T]`` (float32, CPU). Aggregates are :class:`MetricValue` with the
definition string; a metric that cannot be computed (missing weights) is ``MetricValue(None, definition, reason)``,
never a made-up number.

- PSNR: ``10 log10(data_range^2 / MSE)`` per frame over all pixels and channels, data_range 2 for [-1, 1]
  (identical to PSNR on [0, 255] images); identical frames give +inf.
- SSIM: torchmetrics functional SSIM map, Gaussian window 11x11, sigma 1.5, k1 0.01, k2 0.03, data_range 2,
  averaged over channels and the valid area (5-pixel border dropped, where the window would leave the image;
  torchmetrics' own mean would include reflection-padded borders) — the same as scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2)``.
- LPIPS: the ``lpips`` package v0.1 (0.1.4), AlexNet trunk by default (the common choice for inversion metrics; the
  paper does not say which backbone its tables used, the official losses use VGG), inputs in [-1, 1] at the given
  resolution, spatial mean.
- Identity similarity: cosine of face embeddings. Default ArcFace = insightface's ``w600k_r50.onnx`` (buffalo_l pack,
  ResNet-50 trained on WebFace600K, 512-d) run with onnxruntime on 112x112 RGB crops normalised as insightface does
  ((x - 127.5) / 127.5, i.e. the [-1, 1] frame itself); the paper used an ArcFace (the release's id_loss holds
  PTI's IR-SE50), so values are close to, but not the same as, the paper's. Crops: with 5 landmarks the insightface
  ``norm_crop`` alignment, otherwise the release's id_loss crop of an already aligned frame (resize to 256, centre
  crop 191, resize to 112). The dlib alternative (ResNet 128-d descriptor, cosine) is labelled ``dlib`` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from innout_core.errors import BadInputError, MissingWeightsError

__all__ = [
    "MetricValue",
    "FrameMetrics",
    "FaceEmbedder",
    "ArcFaceEmbedder",
    "DlibFaceEmbedder",
    "METRIC_DEFINITIONS",
    "metric_definitions",
    "psnr",
    "ssim",
    "lpips",
    "identity_similarity",
    "identity_after_edit",
    "summarize",
    "reconstruction_metrics",
    "load_embedder",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
ARCFACE_SIZE = 112
PTI_RESIZE = 256
PTI_CROP = 191

_LPIPS_DEF = ("LPIPS v0.1 (lpips 0.1.4), {net} trunk (torchvision ImageNet weights) + v0.1 linear heads, RGB in "
              "[-1, 1] at the evaluated resolution, spatial mean per frame; lower is better")
_ID_DEF = {
    "arcface": ("cosine similarity of ArcFace embeddings: insightface buffalo_l w600k_r50.onnx (ResNet-50, "
                "WebFace600K, 512-d) via onnxruntime, 112x112 RGB normalised (x-127.5)/127.5; crop = insightface "
                "norm_crop from 5 landmarks when given, else resize 256 -> centre crop 191 -> resize 112 (release "
                "id_loss); in [-1, 1], higher is better"),
    "dlib": ("cosine similarity of dlib face descriptors (dlib_face_recognition_resnet_model_v1, 128-d) on 150x150 "
             "chips from the 5-point shape predictor; dlib backend, NOT ArcFace: not comparable to the paper; "
             "in [-1, 1], higher is better"),
}


def metric_definitions(lpips_net: str = "alex", identity: str = "arcface") -> dict[str, str]:
    """Definitions of every metric column (Parquet metadata) for an LPIPS network and an identity backend."""
    if identity not in _ID_DEF:
        raise ValueError(f"unknown identity backend {identity!r}; choose from {sorted(_ID_DEF)}")
    return {
        "psnr": "PSNR = 10 log10(2^2 / MSE) per frame, MSE over all pixels and RGB channels of frames in [-1, 1] "
                "(equal to PSNR on [0, 255]); dB, higher is better; identical frames give inf",
        "ssim": f"SSIM (torchmetrics functional), Gaussian window {SSIM_WINDOW}x{SSIM_WINDOW}, sigma {SSIM_SIGMA}, "
                "k1 0.01, k2 0.03, data_range 2 on RGB in [-1, 1], mean over channels and the unpadded area "
                "(= skimage structural_similarity gaussian_weights, use_sample_covariance=False); higher is better",
        "lpips": _LPIPS_DEF.format(net={"alex": "AlexNet", "vgg": "VGG16", "squeeze": "SqueezeNet1.1"}[lpips_net]),
        "id_sim": "reconstruction vs input frame: " + _ID_DEF[identity],
        "id_sim_edit": "inverted (reconstructed) vs edited frame, as the paper's Table 2: " + _ID_DEF[identity],
        "psnr_clean": "PSNR (as psnr) of the reconstruction, or of the OOD removal (edit 'remove_ood'), against the "
                      "clean frame without the occluder; only for ground-truth videos (manifest 'clean:'), else null",
        "occluded": "the frame has an occluder: at least 1 % of its crop is 0 in the manifest's masks (null without "
                    "masks)",
    }


METRIC_DEFINITIONS: dict[str, str] = metric_definitions()


@dataclass(frozen=True)
class MetricValue:
    """One metric result with its definition; ``value`` is None exactly when ``reason`` says why."""

    value: float | None
    definition: str
    reason: str | None = None


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise BadInputError(f"frames must be [T, 3, H, W] in [-1, 1], got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise BadInputError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def psnr(pred: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """Per-frame PSNR in dB. pred, target: ``[T, 3, H, W]`` in [-1, 1]. Returns float32 ``[T]`` (inf if equal)."""
    _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float().cpu()


def ssim(pred: Tensor, target: Tensor, data_range: float = 2.0, kernel_size: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> Tensor:
    """Per-frame SSIM (Gaussian window ``kernel_size``, ``sigma``). pred, target ``[T, 3, H, W]`` in [-1, 1].

    Returns float32 ``[T]`` on CPU, mean of the SSIM map over channels and the valid area.
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < kernel_size:
        raise BadInputError(f"frames {tuple(pred.shape[-2:])} are smaller than the SSIM window {kernel_size}")
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, full = structural_similarity_index_measure(
        pred.double(), target.double(), gaussian_kernel=True, sigma=sigma, kernel_size=kernel_size,
        reduction="none", data_range=data_range, return_full_image=True,
    )
    # torchmetrics averages over the whole image, borders computed from reflection padding; average over the valid
    # area instead (the window fully inside the image), as scikit-image and the original SSIM do.
    pad = (kernel_size - 1) // 2
    return full[..., pad:-pad, pad:-pad].flatten(1).mean(1).float().cpu()


@torch.no_grad()
def lpips(pred: Tensor, target: Tensor, model: nn.Module, batch_size: int = 16) -> Tensor:
    """Per-frame LPIPS with a model from :func:`innout_core.weights.load_lpips_model` (spatial or not).

    pred, target: ``[T, 3, H, W]`` in [-1, 1]; moved to the model's device in chunks of ``batch_size``. Returns
    float32 ``[T]`` on CPU (spatial mean of the distance map).
    """
    _check_pair(pred, target)
    dev = next(model.parameters()).device
    out = []
    for i in range(0, pred.shape[0], batch_size):
        d = model(pred[i : i + batch_size].to(dev).float(), target[i : i + batch_size].to(dev).float())
        out.append(d.flatten(1).mean(1).float().cpu())
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ identity


@runtime_checkable
class FaceEmbedder(Protocol):
    """Maps face frames to identity embeddings."""

    backend: str  # "arcface" | "dlib"

    def __call__(self, frames: Tensor, landmarks5: Tensor | None = None) -> Tensor:
        """frames ``[T, 3, H, W]`` in [-1, 1], optional 5 landmarks ``[T, 5, 2]`` (x, y pixels) -> ``[T, D]``."""
        ...


def _to_uint8_hwc(frames: Tensor) -> np.ndarray:
    x = ((frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


class ArcFaceEmbedder:
    """ArcFace recognition ONNX model (insightface pack) run with onnxruntime directly."""

    backend = "arcface"

    def __init__(self, model_path: str | Path, device: str | torch.device = "cpu") -> None:
        import onnx
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise MissingWeightsError("ArcFace ONNX model not found", self.model_path)
        try:
            graph = onnx.load(str(self.model_path), load_external_data=False).graph
        except Exception as exc:
            raise MissingWeightsError(f"not a readable ONNX model ({exc}): replace the file", self.model_path) from None
        names = [n.name for n in graph.node[:8]]
        # insightface's rule: mxnet exports normalise inside the graph (Sub + Mul among the first nodes).
        in_graph = any(n.startswith(("Sub", "_minus")) for n in names) and any(
            n.startswith(("Mul", "_mul")) for n in names)
        self.input_mean, self.input_std = (0.0, 1.0) if in_graph else (127.5, 127.5)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.model_path), providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        size = inp.shape[2:4]
        self.size = (int(size[0]), int(size[1])) if all(isinstance(s, int) for s in size) else (
            ARCFACE_SIZE, ARCFACE_SIZE)

    def preprocess(self, frames: Tensor, landmarks5: Tensor | None = None) -> Tensor:
        """Aligned crops ``[T, 3, 112, 112]`` in [-1, 1] (RGB) — before the model's normalisation."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise BadInputError(f"frames must be [T, 3, H, W] in [-1, 1], got {tuple(frames.shape)}")
        if landmarks5 is not None:
            from insightface.utils.face_align import norm_crop

            imgs = _to_uint8_hwc(frames)
            crops = [norm_crop(img, lm.detach().cpu().numpy().astype(np.float32), self.size[0])
                     for img, lm in zip(imgs, landmarks5)]
            return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        x = frames.detach().float().cpu().clamp(-1, 1)
        x = F.interpolate(x, size=(PTI_RESIZE, PTI_RESIZE), mode="bicubic", align_corners=False)
        top = (PTI_RESIZE - PTI_CROP) // 2
        x = x[:, :, top : top + PTI_CROP, top : top + PTI_CROP]
        return F.interpolate(x, size=self.size, mode="area").clamp(-1, 1)

    def __call__(self, frames: Tensor, landmarks5: Tensor | None = None) -> Tensor:
        """Embeddings ``[T, 512]`` float32 (not normalised; the cosine normalises)."""
        x = self.preprocess(frames, landmarks5)
        # [-1, 1] -> pixel values 0..255 -> insightface's (p - mean) / std.
        blob = (((x + 1) * 127.5 - self.input_mean) / self.input_std).numpy().astype(np.float32)
        step = self.fixed_batch or max(1, len(blob))
        outs = [self.session.run(None, {self.input_name: blob[i : i + step]})[0] for i in range(0, len(blob), step)]
        return torch.from_numpy(np.concatenate(outs)).float()


class DlibFaceEmbedder:
    """dlib ResNet face descriptor (128-d), from the face_recognition_models package; fully offline."""

    backend = "dlib"

    def __init__(self) -> None:
        import dlib

        from innout_core.weights import find_dlib_model

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(str(find_dlib_model("shape_predictor_5")))
        self.recognizer = dlib.face_recognition_model_v1(str(find_dlib_model("face_recognition")))

    def __call__(self, frames: Tensor, landmarks5: Tensor | None = None) -> Tensor:
        """Descriptors ``[T, 128]``: largest HOG detection (else the central half of the frame) -> 5 points -> chip."""
        dlib = self._dlib
        out = []
        for img in _to_uint8_hwc(frames):
            h, w = img.shape[:2]
            dets = self.detector(img, 0)
            if len(dets):
                rect = max(dets, key=lambda r: r.area())
            else:
                rect = dlib.rectangle(w // 4, h // 4, 3 * w // 4, 3 * h // 4)
            shape = self.shape_predictor(img, rect)
            # dlib's own chip extraction (150x150, padding 0.25) inside compute_face_descriptor.
            out.append(np.asarray(self.recognizer.compute_face_descriptor(img, shape), np.float32))
        return torch.from_numpy(np.stack(out))


@torch.no_grad()
def identity_similarity(a: Tensor, b: Tensor, embedder: FaceEmbedder, landmarks_a: Tensor | None = None,
                        landmarks_b: Tensor | None = None) -> Tensor:
    """Per-frame cosine similarity of face embeddings of ``a`` and ``b`` (``[T, 3, H, W]`` in [-1, 1]) -> ``[T]``."""
    _check_pair(a, b)
    ea, eb = embedder(a, landmarks_a), embedder(b, landmarks_b)
    return F.cosine_similarity(ea.double(), eb.double(), dim=1).float().cpu()


def identity_after_edit(inverted: Tensor, edited: Tensor, embedder: FaceEmbedder) -> Tensor:
    """Identity preservation of an edit (paper Table 2): cosine between inverted and edited frames -> ``[T]``."""
    return identity_similarity(inverted, edited, embedder)


# ------------------------------------------------------------------------------------------------ aggregation


def summarize(name: str, values: Tensor | None, definitions: dict[str, str] | None = None,
              reason: str | None = None) -> MetricValue:
    """Mean of per-frame values (over finite-or-inf frames) as a :class:`MetricValue`; None + reason if missing."""
    definition = (definitions or METRIC_DEFINITIONS)[name]
    if values is None:
        return MetricValue(None, definition, reason or "not computed")
    if values.numel() == 0:
        return MetricValue(None, definition, "no frames")
    return MetricValue(float(values.double().mean()), definition, None)


@dataclass
class FrameMetrics:
    """Per-frame reconstruction metrics of one frame sequence; a None tensor has its reason in ``reasons``."""

    psnr: Tensor
    ssim: Tensor
    lpips: Tensor | None
    id_sim: Tensor | None
    definitions: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, float | str | None]]:
        """One dict per frame with keys psnr, ssim, lpips, id_sim (None when missing) and reason (or None)."""
        reason = "; ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())) or None
        out = []
        for i in range(self.psnr.shape[0]):
            out.append({
                "psnr": float(self.psnr[i]),
                "ssim": float(self.ssim[i]),
                "lpips": None if self.lpips is None else float(self.lpips[i]),
                "id_sim": None if self.id_sim is None else float(self.id_sim[i]),
                "reason": reason,
            })
        return out

    def summary(self) -> dict[str, MetricValue]:
        """Frame means as :class:`MetricValue` per metric."""
        return {k: summarize(k, getattr(self, k), self.definitions, self.reasons.get(k))
                for k in ("psnr", "ssim", "lpips", "id_sim")}


def reconstruction_metrics(
    pred: Tensor,
    target: Tensor,
    lpips_model: nn.Module | None,
    embedder: FaceEmbedder | None,
    lpips_net: str = "alex",
    reasons: dict[str, str] | None = None,
) -> FrameMetrics:
    """PSNR, SSIM, LPIPS and identity similarity of ``pred`` vs ``target`` (``[T, 3, H, W]`` in [-1, 1]).

    A None ``lpips_model`` / ``embedder`` gives a None column; ``reasons`` (e.g. from :func:`load_embedder` or the
    ``MissingWeightsError`` of ``load_lpips_model``) says why.
    """
    reasons = dict(reasons or {})
    backend = embedder.backend if embedder is not None else "arcface"
    defs = metric_definitions(lpips_net, backend)
    lp = lpips(pred, target, lpips_model) if lpips_model is not None else None
    if lp is None:
        reasons.setdefault("lpips", "no LPIPS model")
    ids = identity_similarity(pred, target, embedder) if embedder is not None else None
    if ids is None:
        reasons.setdefault("id_sim", "no face embedder")
    return FrameMetrics(psnr(pred, target), ssim(pred, target), lp, ids, defs,
                        {k: v for k, v in reasons.items() if k in ("lpips", "id_sim")})


def load_embedder(backend: str = "arcface", pack: str = "buffalo_l",
                  device: str | torch.device = "cpu") -> FaceEmbedder:
    """The identity embedder for ``backend`` ('arcface' from the insightface pack, or 'dlib').

    Raises:
        MissingWeightsError: the model file is absent; the message names it and where to put it.
    """
    if backend == "arcface":
        from innout_core.weights import ARCFACE_MODEL, find_insightface_model

        return ArcFaceEmbedder(find_insightface_model(ARCFACE_MODEL, pack), device=device)
    if backend == "dlib":
        return DlibFaceEmbedder()
    raise ValueError(f"unknown identity backend {backend!r}; choose 'arcface' or 'dlib'")
