"""`given` backend: landmarks (and optionally cameras) supplied with the dataset instead of detected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from innout_core.errors import BadInputError

from .backends import Detection, FaceBackend, check_frame

__all__ = ["GivenBackend", "load_landmarks", "load_cameras"]


def load_landmarks(path: str | Path) -> np.ndarray:
    """Read per-frame landmarks from `.npy` ([T, 68|5, 2+] float; NaN rows = no face) or `.json` (a list of T
    entries, each a [K][2] list or null). Returns [T, K, 2] float64."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("landmarks file not found", path)
    try:
        if path.suffix == ".npy":
            arr = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        elif path.suffix == ".json":
            rows = json.loads(path.read_text())
            k = next((len(r) for r in rows if r is not None), 68)
            arr = np.stack([np.full((k, 2), np.nan) if r is None else np.asarray(r, np.float64)[:, :2] for r in rows])
        else:
            raise BadInputError("landmarks must be .npy or .json", path)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"unreadable landmarks ({exc})", path) from exc
    if arr.ndim != 3 or arr.shape[1] not in (5, 68) or arr.shape[2] < 2:
        raise BadInputError(f"landmarks must be [T, 68|5, 2], got {list(arr.shape)}", path)
    return arr[:, :, :2]


def load_cameras(path: str | Path) -> np.ndarray:
    """Read per-frame EG3D labels from `.npy` [T, 25] or an EG3D/In-N-Out `dataset.json` ({"labels": [[name, [25
    floats]], ...]}, matched to frames by position as the official loader does). Returns [T, 25] float32."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("cameras file not found", path)
    try:
        if path.suffix == ".npy":
            arr = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
        elif path.suffix == ".json":
            arr = np.asarray([lab for _, lab in json.loads(path.read_text())["labels"]], dtype=np.float32)
        else:
            raise BadInputError("cameras must be .npy or dataset.json", path)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise BadInputError(f"unreadable cameras ({exc})", path) from exc
    if arr.ndim != 2 or arr.shape[1] != 25:
        raise BadInputError(f"cameras must be [T, 25], got {list(arr.shape)}", path)
    return arr


class GivenBackend(FaceBackend):
    """Serves the given landmarks of frame `index` as a single detection (box = landmark bounding box, score 1).

    Args:
        landmarks: [T, 68|5, 2] frame pixel-index coords; a row containing NaN means no face in that frame.
        cameras: optional [T, 25] EG3D labels used instead of estimated cameras (`FaceConfig.camera='given'`).
        source: where the data came from (named in error messages).
    """

    name = "given"

    def __init__(self, landmarks: np.ndarray, cameras: np.ndarray | None = None, source: str | Path = "given") -> None:
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.ndim != 3 or lm.shape[1] not in (5, 68) or lm.shape[2] != 2:
            raise BadInputError(f"given landmarks must be [T, 68|5, 2], got {list(lm.shape)}", source)
        if cameras is not None:
            cameras = np.asarray(cameras, dtype=np.float32)
            if cameras.shape != (lm.shape[0], 25):
                raise BadInputError(f"given cameras must be [{lm.shape[0]}, 25] (one per landmark row), got "
                                    f"{list(cameras.shape)}", source)
        self.landmarks = lm
        self.cameras = cameras
        self.source = source

    @classmethod
    def from_files(cls, landmarks: str | Path, cameras: str | Path | None = None) -> "GivenBackend":
        """Build from files (see `load_landmarks`, `load_cameras`)."""
        return cls(load_landmarks(landmarks), None if cameras is None else load_cameras(cameras), landmarks)

    def detect(self, frame: np.ndarray, index: int) -> list[Detection]:
        """The given landmarks of frame `index` ([] when that row has NaN)."""
        check_frame(frame)
        if not 0 <= index < len(self.landmarks):
            raise BadInputError(f"frame {index} has no landmark row ({len(self.landmarks)} rows given)", self.source)
        lm = self.landmarks[index]
        if not np.isfinite(lm).all():
            return []
        box = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()])
        return [Detection(box=box, score=1.0, landmarks=lm.copy(), descriptor=None)]
