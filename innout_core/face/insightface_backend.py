"""insightface backend: SCRFD detector, the 68-point 3D landmark model `1k3d68.onnx` and ArcFace from a model pack
(e.g. `buffalo_l`) that the user puts in a configured directory. Never downloads: insightface's model classes are
built directly from explicit file paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from innout_core.errors import CheckpointError, MissingWeightsError

from .backends import Detection, FaceBackend, check_frame

__all__ = [
    "INSIGHTFACE_ROOT_ENV",
    "PACK_FILES",
    "InsightfacePack",
    "insightface_search_dirs",
    "resolve_insightface_pack",
    "InsightfaceBackend",
]

INSIGHTFACE_ROOT_ENV = "INNOUT_INSIGHTFACE_ROOT"
#: files of each known pack: (detector, 68-point landmarks, recognition)
PACK_FILES: dict[str, tuple[str, str, str]] = {
    "buffalo_l": ("det_10g.onnx", "1k3d68.onnx", "w600k_r50.onnx"),
    "buffalo_m": ("det_2.5g.onnx", "1k3d68.onnx", "w600k_r50.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "1k3d68.onnx", "glintr100.onnx"),
}


@dataclass(frozen=True)
class InsightfacePack:
    """Resolved model files of one pack."""

    directory: Path
    detector: Path
    landmarks: Path
    recognition: Path


def insightface_search_dirs(root: str | Path | None, pack: str) -> list[Path]:
    """Directories searched for `pack`, in order: `<root>/<pack>`, `<root>/models/<pack>`, `<root>` itself when it
    is named `pack`; root = the argument, else $INNOUT_INSIGHTFACE_ROOT, else ~/.insightface/models."""
    if root is None:
        root = os.environ.get(INSIGHTFACE_ROOT_ENV) or Path.home() / ".insightface" / "models"
    root = Path(root).expanduser()
    dirs = [root / pack, root / "models" / pack]
    if root.name == pack:
        dirs.insert(0, root)
    return dirs


def resolve_insightface_pack(root: str | Path | None = None, pack: str = "buffalo_l") -> InsightfacePack:
    """Find the pack's three ONNX files.

    Raises:
        MissingWeightsError: naming every expected file and every directory searched, and how to fix it.
    """
    if pack not in PACK_FILES:
        raise MissingWeightsError(f"unknown insightface pack {pack!r}; known packs: {', '.join(PACK_FILES)}")
    names = PACK_FILES[pack]
    dirs = insightface_search_dirs(root, pack)
    for d in dirs:
        if all((d / n).is_file() for n in names):
            return InsightfacePack(d, *(d / n for n in names))
    found = next((d for d in dirs if d.is_dir()), None)
    where = found if found is not None else dirs[0]
    missing = [n for n in names if not (where / n).is_file()]
    raise MissingWeightsError(
        f"insightface pack {pack!r} incomplete: missing {', '.join(missing)} (expected {', '.join(names)}; searched "
        f"{', '.join(str(d) for d in dirs)}); unpack {pack}.zip there, set ${INSIGHTFACE_ROOT_ENV} or "
        f"face.insightface_root, or use face.backend=dlib", where)


class InsightfaceBackend(FaceBackend):
    """SCRFD boxes, 68 landmarks from `1k3d68.onnx` (x, y of its 3D output) and L2-normalised ArcFace embeddings
    (same person when the Euclidean distance of unit embeddings <= 1.1, i.e. cosine similarity >= ~0.4).

    Args:
        root: directory holding the pack (see `insightface_search_dirs`).
        pack: pack name (`buffalo_l` by default).
        det_threshold: minimum SCRFD score.
        det_size: detector input size in pixels (square).
        descriptors: compute ArcFace embeddings.
        providers: onnxruntime execution providers (default: CUDA when available, else CPU).
    """

    name = "insightface"
    identity_threshold = 1.1

    def __init__(self, root: str | Path | None = None, pack: str = "buffalo_l", det_threshold: float = 0.5,
                 det_size: int = 640, descriptors: bool = True, providers: list[str] | None = None) -> None:
        self.pack = resolve_insightface_pack(root, pack)
        try:
            import onnxruntime
            from insightface.model_zoo.arcface_onnx import ArcFaceONNX
            from insightface.model_zoo.landmark import Landmark
            from insightface.model_zoo.scrfd import SCRFD
        except ImportError as exc:
            raise MissingWeightsError(f"insightface backend needs the insightface and onnxruntime packages ({exc})")
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]

        def session(path: Path):
            try:
                return onnxruntime.InferenceSession(str(path), providers=providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
                raise CheckpointError(f"not a loadable ONNX model ({exc.__class__.__name__}); re-download the "
                                      f"pack", path) from exc

        self.det_size = int(det_size)
        self._detector = SCRFD(model_file=str(self.pack.detector), session=session(self.pack.detector))
        self._detector.prepare(0, input_size=(self.det_size, self.det_size), det_thresh=float(det_threshold))
        self._landmark = Landmark(model_file=str(self.pack.landmarks), session=session(self.pack.landmarks))
        if (self._landmark.lmk_num, self._landmark.lmk_dim) != (68, 3):
            raise CheckpointError(f"expected the 68-point 3D landmark model (1k3d68), got "
                                  f"{self._landmark.lmk_num} points in {self._landmark.lmk_dim}D", self.pack.landmarks)
        self._arcface = None
        if descriptors:
            self._arcface = ArcFaceONNX(model_file=str(self.pack.recognition), session=session(self.pack.recognition))

    def detect(self, frame: np.ndarray, index: int) -> list[Detection]:
        """All faces in an [H, W, 3] uint8 RGB frame, highest score first."""
        from insightface.app.common import Face

        bgr = cv2.cvtColor(check_frame(frame), cv2.COLOR_RGB2BGR)
        boxes, kps = self._detector.detect(bgr, input_size=(self.det_size, self.det_size))
        out = []
        for i in range(boxes.shape[0]):
            face = Face(bbox=boxes[i, :4], kps=None if kps is None else kps[i], det_score=float(boxes[i, 4]))
            lm = np.asarray(self._landmark.get(bgr, face), dtype=np.float64)[:, :2]
            desc = None
            if self._arcface is not None and face.kps is not None:
                emb = np.asarray(self._arcface.get(bgr, face), dtype=np.float32)
                desc = emb / max(float(np.linalg.norm(emb)), 1e-12)
            out.append(Detection(box=np.asarray(boxes[i, :4], np.float64), score=float(boxes[i, 4]),
                                 landmarks=lm, descriptor=desc))
        return sorted(out, key=lambda d: -d.score)

    def landmarks_in_box(self, frame: np.ndarray, box: np.ndarray) -> Detection:
        """`1k3d68` on a given (x0, y0, x1, y1) box (it crops around the box itself), score NaN; the ArcFace
        embedding uses the 5 points of the 68 (68→5 rule) in place of SCRFD's keypoints."""
        from insightface.app.common import Face

        from .landmarks import landmarks68_to_5

        bgr = cv2.cvtColor(check_frame(frame), cv2.COLOR_RGB2BGR)
        face = Face(bbox=np.asarray(box, np.float32), kps=None, det_score=float("nan"))
        lm = np.asarray(self._landmark.get(bgr, face), dtype=np.float64)[:, :2]
        desc = None
        if self._arcface is not None:
            face.kps = landmarks68_to_5(lm).astype(np.float32)
            emb = np.asarray(self._arcface.get(bgr, face), dtype=np.float32)
            desc = emb / max(float(np.linalg.norm(emb)), 1e-12)
        return Detection(box=np.asarray(box, np.float64), score=float("nan"), landmarks=lm, descriptor=desc)
