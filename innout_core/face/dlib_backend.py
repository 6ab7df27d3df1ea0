"""dlib backend (fully offline): HOG frontal-face detector, 68-point shape predictor and the ResNet face descriptor
shipped by the `face_recognition_models` package."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np

from innout_core.errors import MissingWeightsError

from .backends import Detection, FaceBackend, check_frame

__all__ = ["DlibBackend", "dlib_model_paths"]


def dlib_model_paths() -> tuple[Path, Path]:
    """(68-point shape predictor, face descriptor) model files from `face_recognition_models`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package imports the deprecated pkg_resources
            import face_recognition_models as frm
    except ImportError as exc:
        raise MissingWeightsError("dlib backend needs the `face-recognition-models` package: pip install "
                                  "face-recognition-models") from exc
    paths = (Path(frm.pose_predictor_model_location()), Path(frm.face_recognition_model_location()))
    for p in paths:
        if not p.is_file():
            raise MissingWeightsError("dlib model file missing; reinstall face-recognition-models", p)
    return paths


class DlibBackend(FaceBackend):
    """dlib HOG detector + 68 landmarks + 128-d descriptor (same person when Euclidean distance <= 0.6, dlib's
    documented threshold).

    Args:
        upsample: times the frame is upsampled before detection (each doubles the smallest detectable face,
            ~80 px at 0, and costs ~4x time).
        score_threshold: minimum HOG detection margin (dlib `adjust_threshold`; 0 = dlib's default).
        descriptors: offer identity descriptors (computed lazily, only when tracking needs them: ~0.1-0.3 s per
            face on a CPU).
    """

    name = "dlib"
    identity_threshold = 0.6

    def __init__(self, upsample: int = 0, score_threshold: float = 0.0, descriptors: bool = True) -> None:
        import dlib

        predictor, recognizer = dlib_model_paths()
        self.upsample = int(upsample)
        self.score_threshold = float(score_threshold)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor))
        self._recognizer = dlib.face_recognition_model_v1(str(recognizer)) if descriptors else None

    def _shape(self, frame: np.ndarray, rect, score: float) -> Detection:
        shape = self._predictor(frame, rect)
        lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        describe = None
        if self._recognizer is not None:
            describe = partial(self._recognizer.compute_face_descriptor, frame, shape)
        box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)
        return Detection(box=box, score=score, landmarks=lm, describe=describe)

    def detect(self, frame: np.ndarray, index: int) -> list[Detection]:
        """All faces in an [H, W, 3] uint8 RGB frame, highest HOG margin first."""
        frame = check_frame(frame)
        rects, scores, _ = self._detector.run(frame, self.upsample, self.score_threshold)
        out = [self._shape(frame, rect, float(score)) for rect, score in zip(rects, scores)]
        return sorted(out, key=lambda d: -d.score)

    def landmarks_in_box(self, frame: np.ndarray, box: np.ndarray) -> Detection:
        """The 68-point shape predictor on a given (x0, y0, x1, y1) box (dlib's box convention: right/bottom
        exclusive), score NaN; the descriptor of that shape is offered lazily."""
        import dlib

        frame = check_frame(frame)
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        return self._shape(frame, dlib.rectangle(x0, y0, x1 - 1, y1 - 1), float("nan"))
