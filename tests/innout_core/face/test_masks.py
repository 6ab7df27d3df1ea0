"""User masks into the face crops: the warp must put every mask pixel where the official crop puts the frame's
pixel (checked against `align_crop` of the mask painted into an image, an independent resampling path)."""

from __future__ import annotations

import numpy as np
import pytest

from innout_core.errors import BadInputError
from innout_core.face.align import align_crop, official_crop_params
from innout_core.face.masks import crop_matrix, warp_masks

LM5 = np.array([[196.0, 112.0], [252.0, 110.0], [224.0, 140.0], [203.0, 165.0], [246.0, 164.0]])


def _mask(h: int = 480, w: int = 640) -> np.ndarray:
    m = np.ones((h, w), np.uint8)
    m[95:135, 180:230] = 0  # an occluder over the eyes
    m[150:170, 240:300] = 0
    return m


@pytest.mark.parametrize("size", [512, 128])
def test_warped_mask_matches_the_crop_of_the_painted_mask(size):
    params = official_crop_params(LM5, 640, 480)
    m = _mask()
    warped = warp_masks(m[None, None], [params], size)
    assert warped.shape == (1, 1, size, size) and set(np.unique(warped)) <= {0.0, 1.0}
    painted = np.repeat((m * 255)[..., None], 3, axis=2).astype(np.uint8)
    ref = align_crop(painted, params)[..., 0].astype(float)  # bicubic + Lanczos of the same window
    if size != 512:
        ref = ref.reshape(size, 512 // size, size, 512 // size).mean((1, 3))
    hole_ref, hole = ref < 127.5, warped[0, 0] < 0.5
    iou = (hole & hole_ref).sum() / (hole | hole_ref).sum()
    assert iou > 0.9, iou


def test_crop_beyond_the_frame_is_not_face():
    params = official_crop_params(LM5 - [150.0, 90.0], 640, 480)  # face near the top-left corner: padded crop
    warped = warp_masks(np.ones((1, 480, 640), bool), [params], 512)[0, 0]
    inside = align_crop(np.full((480, 640, 3), 255, np.uint8), params)[..., 0] > 127  # padding is black
    assert (~inside).sum() > 10000  # the crop does reach past the frame
    assert ((warped > 0.5) == inside).mean() > 0.99


def test_crop_matrix_maps_output_pixels_to_frame_pixels():
    params = official_crop_params(LM5, 640, 480)
    mat = crop_matrix(params, 512)
    pts = np.array([[10.0, 20.0], [300.0, 400.0]])
    np.testing.assert_allclose(pts @ mat[:, :2].T + mat[:, 2], params.to_frame(pts), atol=1e-9)


def test_bad_masks_are_named():
    params = official_crop_params(LM5, 640, 480)
    with pytest.raises(BadInputError, match="m.npz: mask 0 is 320x240, the frames are 640x480"):
        warp_masks(np.ones((1, 1, 240, 320)), [params], 64, source="m.npz")
    with pytest.raises(BadInputError, match="2 masks for 1 frames"):
        warp_masks(np.ones((2, 480, 640)), [params], 64, source="m.npz")
