"""dlib on skimage's astronaut and the official crop geometry (docs/method.md §1.7, §9), checked against an independent
computation written here from its constants."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from innout_core.face.align import LM3D_STD, align_crop, official_crop_params
from innout_core.face.dlib_backend import DlibBackend
from innout_core.face.landmarks import landmarks68_to_5


@pytest.fixture(scope="module")
def astronaut_detection():
    img = skimage.data.astronaut()
    dets = DlibBackend().detect(img, 0)
    return img, dets


def _independent_crop_geometry(lm5: np.ndarray, h: int, w: int):
    """docs/method.md §1.7: y' = H-1-y; POS lstsq; sigma = 300/s; truncated 1024 box; 700 centre crop at 162; 512."""
    xp = np.stack([lm5[:, 0], h - 1 - lm5[:, 1]], 1)
    rows, rhs = [], []
    for (x, y), p in zip(xp, LM3D_STD):
        rows.append(np.r_[p, 1, 0, 0, 0, 0]); rhs.append(x)
        rows.append(np.r_[0, 0, 0, 0, p, 1]); rhs.append(y)
    k = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    s = (np.linalg.norm(k[:3]) + np.linalg.norm(k[4:7])) / 2
    sigma = 300.0 / s
    ws, hs = int(w * sigma), int(h * sigma)
    left = int(ws / 2 - 512 + (k[3] - w / 2) * sigma)
    up = int(hs / 2 - 512 + (h / 2 - k[7]) * sigma)
    return ws / w, hs / h, left, up


def test_dlib_finds_one_face_with_68_landmarks(astronaut_detection):
    img, dets = astronaut_detection
    assert len(dets) == 1
    d = dets[0]
    assert d.landmarks.shape == (68, 2) and d.get_descriptor().shape == (128,)
    # landmarks inside the box; image-left eye left of image-right eye, nose between eyes and mouth
    x0, y0, x1, y1 = d.box
    assert (d.landmarks[:, 0] > x0 - 10).all() and (d.landmarks[:, 0] < x1 + 10).all()
    lm5 = landmarks68_to_5(d.landmarks)
    assert lm5[0, 0] < lm5[1, 0] and lm5[0, 1] < lm5[2, 1] < lm5[3, 1]


def test_crop_puts_eyes_where_official_geometry_does(astronaut_detection):
    img, dets = astronaut_detection
    h, w = img.shape[:2]
    lm5 = landmarks68_to_5(dets[0].landmarks)
    params = official_crop_params(lm5, w, h)
    sx, sy, left, up = _independent_crop_geometry(lm5, h, w)
    assert (params.left, params.up) == (left, up)
    # eye centres in the 512 crop (PIL continuous coords: pixel centre at index + 0.5)
    eyes = lm5[:2]
    u = ((eyes[:, 0] + 0.5) * sx - left - 162) * 512 / 700 - 0.5
    v = ((eyes[:, 1] + 0.5) * sy - up - 162) * 512 / 700 - 0.5
    np.testing.assert_allclose(params.to_crop(eyes), np.stack([u, v], 1), atol=1e-9)
    np.testing.assert_allclose(params.to_frame(params.to_crop(eyes)), eyes, atol=1e-9)
    # FFHQ-like framing: eyes level-ish, in the upper-middle of the crop, roughly symmetric about the centre
    assert 150 < u[0] < 230 and 280 < u[1] < 360 and 170 < v.mean() < 250

    crop = align_crop(img, params)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    # the pixels: an independent resampling of the same window with OpenCV (different filters, so compare
    # coarsely: mean absolute difference of a few grey levels on the face region)
    a = 700 / 512
    m = np.array([[a / sx, 0, (left + 162 + 0.5 * a) / sx - 0.5], [0, a / sy, (up + 162 + 0.5 * a) / sy - 0.5]])
    ref = cv2.warpAffine(img, m, (512, 512), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT)
    diff = np.abs(crop.astype(float) - ref.astype(float))[128:384, 128:384].mean()
    assert diff < 4.0, diff
    # detecting on the crop finds the eyes where the geometry says they are (within a few pixels)
    re = DlibBackend(descriptors=False).detect(crop, 0)
    assert len(re) == 1
    np.testing.assert_allclose(landmarks68_to_5(re[0].landmarks)[:2], params.to_crop(eyes), atol=8.0)


def test_quad_is_the_crop_square_in_frame_pixels(astronaut_detection):
    img, dets = astronaut_detection
    params = official_crop_params(landmarks68_to_5(dets[0].landmarks), 512, 512)
    q = params.quad()
    side = 700 / (params.scaled_w / 512)
    np.testing.assert_allclose(q[1, 0] - q[0, 0], side, rtol=1e-9)
    np.testing.assert_allclose(q[2, 1] - q[1, 1], side, rtol=1e-9)
    # equivalent statement of docs/method.md §1.7: side ≈ (7/3) s, centred near the projection of the BFM origin
    np.testing.assert_allclose(side, 7 / 3 * params.s, rtol=0.01)
    centre = q.mean(0)
    np.testing.assert_allclose(centre, [params.t[0], 511 - params.t[1]], atol=2.0)
