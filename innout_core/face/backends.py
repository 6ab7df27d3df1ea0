"""The face-backend interface: one `detect` call per frame returning every face found."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Detection", "FaceBackend", "box_iou", "check_frame"]


@dataclass
class Detection:
    """One face in one frame (frame pixel-index coords: x right, y down, pixel centres at integers).

    Attributes:
        box: [4] float64 (x0, y0, x1, y1).
        score: detector confidence (backend-specific scale; dlib HOG margin, insightface probability).
        landmarks: [68, 2] or [5, 2] float64 (5-point order: eye image-left, eye image-right, nose, mouth
            image-left, mouth image-right).
        descriptor: [D] float32 identity descriptor, or None when the backend has none or has not computed it yet.
        describe: computes the descriptor on demand (backends with costly descriptors set this instead of
            `descriptor`; use `get_descriptor()`).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    descriptor: np.ndarray | None = None
    describe: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def get_descriptor(self) -> np.ndarray | None:
        """The identity descriptor, computed (once) on first use; None when the backend has none."""
        if self.descriptor is None and self.describe is not None:
            self.descriptor = np.asarray(self.describe(), dtype=np.float32)
            self.describe = None
        return self.descriptor

    @property
    def area(self) -> float:
        """Box area in pixels²."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceBackend(ABC):
    """Detector + landmarks (+ identity descriptor). Subclasses hold loaded models only; no global state."""

    name: str = "base"
    #: largest `identity_distance` between two descriptors of the same person (backend-specific metric)
    identity_threshold: float = 0.0

    @abstractmethod
    def detect(self, frame: np.ndarray, index: int) -> list[Detection]:
        """All faces in one frame, sorted by decreasing score.

        Args:
            frame: [H, W, 3] uint8 RGB.
            index: the frame's position in the video (used by the `given` backend).
        """

    def landmarks_in_box(self, frame: np.ndarray, box: np.ndarray) -> Detection | None:
        """Run the landmark model on a given box (no detector): the track's predicted box when the detector missed.

        Args:
            frame: [H, W, 3] uint8 RGB.
            box: [4] (x0, y0, x1, y1) frame pixels.
        Returns:
            a Detection (score NaN; descriptor computed lazily when the backend has one), or None when the backend
            has no landmark model of its own (e.g. `given`).
        """
        return None

    def identity_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Distance between two descriptors (Euclidean by default); same person when <= `identity_threshold`."""
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 when either is empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Validate a frame at the backend boundary: [H, W, 3] uint8 RGB, returned C-contiguous."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"face backend: expected an [H, W, 3] uint8 RGB frame, got {desc}")
    return np.ascontiguousarray(frame)
