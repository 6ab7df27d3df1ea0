"""Tracking through occlusion on clips of a real face (scikit-image's astronaut) with known affine motion, so the
true landmarks of every frame are known: occluders over the eyes / mouth / nose, a blanked stretch, a second
person. The dlib backend runs for real; nothing is mocked."""

from __future__ import annotations

import numpy as np
import pytest

from innout_core.face.dlib_backend import DlibBackend
from innout_core.face.preprocess import FaceConfig, preprocess_video, track_video
from innout_core.face.testclips import Event, astronaut, make_clip, nme

N = 30
OCC = (8, 12)  # frames 8..19 covered


@pytest.fixture(scope="module")
def backend():
    return DlibBackend()


@pytest.fixture(scope="module")
def reference(backend):
    return backend.detect(astronaut(), 0)[0].landmarks  # the still photograph, unoccluded: truth after the motion


def _run(clip, backend, **tracking):
    cfg = FaceConfig(backend="dlib", tracking=tracking, smoothing={"method": "none"})
    tr = track_video(clip.frames, backend, cfg)
    return tr, preprocess_video(clip.frames, backend, cfg, name=clip.name, tracked=tr)


@pytest.mark.parametrize("kind", ["eyes", "hand", "bar"])
def test_occluded_frames_are_tracked_within_the_nme_bound(kind, backend, reference):
    clip = make_clip(kind, reference, n=N, events=[Event(kind, *OCC)], seed=1)
    tr, res = _run(clip, backend)
    occ = clip.occluded
    assert occ.sum() == OCC[1] and res.crops.shape[0] == N  # no frame dropped, the video does not fail
    assert all(s in ("ok", "predicted") for s in np.array(res.status)[occ])  # never just interpolated
    assert all(s == "ok" for s in np.array(res.status)[~occ])
    err = nme(res.landmarks.numpy(), clip.truth)
    assert err[occ].mean() <= 0.05, err[occ]
    assert err[~occ].mean() < 0.03


def test_prediction_beats_interpolation_and_is_what_keeps_the_frames(backend, reference):
    clip = make_clip("hand", reference, n=N, events=[Event("hand", *OCC)], seed=2)
    tr, res = _run(clip, backend)
    _, interp = _run(clip, backend, predict=False)
    occ = clip.occluded
    pred = np.array(res.status)[occ] == "predicted"
    assert pred.sum() >= occ.sum() // 2  # the detector misses the covered face; the track keeps it
    assert set(np.array(interp.status)[occ][pred]) == {"filled"}
    e_pred = nme(res.landmarks.numpy(), clip.truth)[occ].mean()
    e_interp = nme(interp.landmarks.numpy(), clip.truth)[occ].mean()
    assert e_pred < 0.5 * e_interp, (e_pred, e_interp)


def test_blanked_stretch_is_filled_not_predicted(backend, reference):
    clip = make_clip("blank", reference, n=20, events=[Event("blank", 8, 5)], seed=3)
    tr, res = _run(clip, backend)
    assert [t for t, s in enumerate(tr.status) if s != "ok"] == list(range(8, 13))
    assert set(tr.status[8:13]) == {"no_face"}  # nothing of the face to follow: no landmarks invented there
    assert res.status[8:13] == ["filled"] * 5 and res.warnings  # interpolated (5 > max_gap 3: warned)


def test_second_face_is_never_tracked_even_while_the_target_is_covered(backend, reference):
    clip = make_clip("second", reference, n=N, events=[Event("second_face", 3, 25), Event("eyes", 10, 10)],
                     seed=4)
    tr, res = _run(clip, backend)
    assert sum(n >= 2 for n in tr.n_faces) >= 15  # the other person is detected in most frames
    lm = res.landmarks.numpy()
    err = nme(lm, clip.truth)
    assert err.max() < 0.1, err
    centre = lm.mean(1)
    box = clip.second_box
    inside = (centre[:, 0] > box[:, 0]) & (centre[:, 0] < box[:, 2]) & (centre[:, 1] > box[:, 1]) & \
             (centre[:, 1] < box[:, 3])
    assert not inside.any()
    # descriptors: the target's in frame 0, then the other person's only when the box overlap cannot decide (the
    # target not detected in the previous frame), and then at most once per recheck_every = 15 frames
    assert tr.n_descriptors <= 3 < sum(n >= 2 for n in tr.n_faces), tr.n_descriptors
