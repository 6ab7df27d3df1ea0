"""Face preprocessing: detection/landmark backends, tracking through occlusion, smoothing, 68→5, official
align-crop, cameras, user masks into the crops."""

from .align import CropParams, align_crop, official_crop_params, pos_fit
from .backends import Detection, FaceBackend, box_iou
from .dlib_backend import DlibBackend
from .given import GivenBackend, load_cameras, load_landmarks
from .insightface_backend import InsightfaceBackend, resolve_insightface_pack
from .landmarks import landmarks68_to_5
from .masks import crop_matrix, warp_masks
from .motion import BoxModel, KeyframeFlow, extrapolate_landmarks, interocular
from .pose import HeadPose, estimate_head_pose, estimate_labels, label_from_angle_trans, mean_face_68, \
    yaw_pitch_from_label
from .preprocess import FaceConfig, PreprocessResult, TrackResult, fill_gaps, gap_runs, make_backend, \
    preprocess_video, track_video
from .smoothing import SmoothingConfig, box_smooth, gaussian_smooth, one_euro_smooth, savgol_smooth, \
    smooth_landmarks
from .track import Tracker, TrackingConfig, TrackStep, track_target

__all__ = [
    "CropParams", "align_crop", "official_crop_params", "pos_fit",
    "Detection", "FaceBackend", "box_iou", "DlibBackend",
    "GivenBackend", "load_cameras", "load_landmarks",
    "InsightfaceBackend", "resolve_insightface_pack",
    "landmarks68_to_5",
    "crop_matrix", "warp_masks",
    "BoxModel", "KeyframeFlow", "extrapolate_landmarks", "interocular",
    "HeadPose", "estimate_head_pose", "estimate_labels", "label_from_angle_trans", "mean_face_68",
    "yaw_pitch_from_label",
    "FaceConfig", "PreprocessResult", "TrackResult", "fill_gaps", "gap_runs", "make_backend", "preprocess_video",
    "track_video",
    "SmoothingConfig", "box_smooth", "gaussian_smooth", "one_euro_smooth", "savgol_smooth", "smooth_landmarks",
    "Tracker", "TrackingConfig", "TrackStep", "track_target",
]
