"""Face preprocessing: detection/landmark backends, tracking, smoothing, 68→5, official align-crop, cameras."""

from .align import CropParams, align_crop, official_crop_params, pos_fit
from .backends import Detection, FaceBackend, box_iou
from .dlib_backend import DlibBackend
from .given import GivenBackend, load_cameras, load_landmarks
from .insightface_backend import InsightfaceBackend, resolve_insightface_pack
from .landmarks import landmarks68_to_5
from .pose import HeadPose, estimate_head_pose, estimate_labels, label_from_angle_trans, mean_face_68, \
    yaw_pitch_from_label
from .preprocess import FaceConfig, PreprocessResult, TrackResult, fill_gaps, make_backend, preprocess_video, \
    track_video
from .smoothing import SmoothingConfig, box_smooth, gaussian_smooth, smooth_landmarks
from .track import TrackingConfig, track_target

__all__ = [
    "CropParams", "align_crop", "official_crop_params", "pos_fit",
    "Detection", "FaceBackend", "box_iou", "DlibBackend",
    "GivenBackend", "load_cameras", "load_landmarks",
    "InsightfaceBackend", "resolve_insightface_pack",
    "landmarks68_to_5",
    "HeadPose", "estimate_head_pose", "estimate_labels", "label_from_angle_trans", "mean_face_68",
    "yaw_pitch_from_label",
    "FaceConfig", "PreprocessResult", "TrackResult", "fill_gaps", "make_backend", "preprocess_video", "track_video",
    "SmoothingConfig", "box_smooth", "gaussian_smooth", "smooth_landmarks",
    "TrackingConfig", "track_target",
]
