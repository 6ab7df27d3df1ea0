"""Stage ``face`` on a real-face clip stored with a rotation display matrix: frames decoded upright, the face
followed through an occluder, faceless frames at the start trimmed, and user masks drawn on the original frames
landing where the frames' own pixels say (a green square painted in the frames and drawn in the masks)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.errors import StageError
from innout_core.face.dlib_backend import DlibBackend
from innout_core.face.motion import interocular
from innout_core.synthetic.testclips import Event, astronaut, make_clip, write_rotated_mp4
from innout_core.store import read_record
from tasks.common import VideoJob, load_tensors
from tasks.face import output_resolution, run_face
from tasks.frames import run_frames

N = 14
SELECT = (2, 12)  # source frames 2..11; 2, 3 blanked (trimmed), 6..9 eyes covered


def _square(t: int, lm: np.ndarray) -> tuple[int, int, int]:
    """(x0, y0, side) of the green square of frame t: on the forehead, 16 px further right every frame (three
    positions in turn), so a mask row used for the wrong frame misses it."""
    iod = interocular(lm)
    side = int(0.45 * iod)
    x0 = int(lm[19, 0] + 16 * (t % 3 - 1) - side / 2)
    y0 = int(lm[19, 1] - 0.75 * iod)
    return x0, y0, side


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("face_task")
    ref = DlibBackend(descriptors=False).detect(astronaut(), 0)[0].landmarks
    clip = make_clip("task", ref, n=N, events=[Event("blank", 2, 2), Event("eyes", 6, 4)], seed=3)
    masks = np.ones((N, 1, 480, 640), np.uint8)
    frames = []
    for t, f in enumerate(clip.frames):
        f = f.copy()
        x0, y0, s = _square(t, clip.truth[t])
        f[y0:y0 + s, x0:x0 + s] = (0, 255, 0)
        masks[t, 0, y0:y0 + s, x0:x0 + s] = 0  # the square is not face
        frames.append(f)
    video = write_rotated_mp4(frames, d / "rot.mp4", rotate=90)
    np.savez(d / "masks.npz", masks=masks)
    return d, video, d / "masks.npz", frames


def _job(run: Path, video: Path, masks: Path | None, **face) -> VideoJob:
    cfg = PipelineConfig.from_preset("tiny-demo", face={"backend": "dlib", **face})
    return VideoJob(run, "run", ManifestVideo(id="v", path=video, frame_range=SELECT, masks=masks), cfg)


def test_rotated_clip_upright_tracked_trimmed_and_masks_aligned(clip_files, tmp_path):
    d, video, masks, frames = clip_files
    job = _job(tmp_path / "run", video, masks, ends="trim")
    run_frames(job)
    png = sorted((job.stage_dir("frames") / "png").glob("*.png"))
    assert len(png) == 10
    first = cv2.cvtColor(cv2.imread(str(png[0])), cv2.COLOR_BGR2RGB)
    assert first.shape == (480, 640, 3)  # upright: the display matrix was applied
    assert np.abs(first.astype(float) - frames[SELECT[0]]).mean() < 6.0  # only the encoding's loss

    rec = run_face(job)
    st = json.loads((job.stage_dir("face") / "status.json").read_text())
    assert st["indices"] == list(range(4, 12))  # 2, 3 blanked at the start: trimmed
    assert set(st["status"]) <= {"ok", "predicted"} and len(st["status"]) == 8
    assert st["warnings"] == ["no face in frames 2-3 at the start of the video: trimmed"]
    assert rec.info["trimmed"] == 2 and rec.info["resolution"] == 128 and rec.info["warnings"] == st["warnings"]

    t = load_tensors(job.stage_dir("face") / "face.safetensors")
    crops, m = t["crops"], t["masks"]
    assert crops.shape == (8, 3, 128, 128) and m.shape == (8, 1, 128, 128)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    rgb = ((crops.permute(0, 2, 3, 1).numpy() + 1) * 127.5)
    green = (rgb[..., 1] > 150) & (rgb[..., 0] < 110) & (rgb[..., 2] < 110)
    holes = m[:, 0].numpy() < 0.5

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / max((a | b).sum(), 1))

    for i in range(8):  # the square in the masks sits where the square is in the crop (known true position)
        assert holes[i].sum() > 20 and iou(holes[i], green[i]) > 0.6, (i, iou(holes[i], green[i]))
        for j in (i - 1, i + 1):  # and not where a neighbour's square is: rows aligned frame by frame
            if 0 <= j < 8:
                assert iou(holes[j], green[i]) < 0.5 * iou(holes[i], green[i])


def test_face_stage_reads_resolution_from_config_and_fails_only_without_any_face(clip_files, tmp_path):
    d, video, _, _ = clip_files
    assert output_resolution("tiny", None) == 128 and output_resolution("ffhq512-128", None) == 512
    conv = tmp_path / "conv"
    conv.mkdir()
    (conv / "config.json").write_text(json.dumps({"init_kwargs": {"img_resolution": 256}}))
    assert output_resolution("tiny", conv) == 256

    job = _job(tmp_path / "run", video, None)
    run_frames(job)
    run_face(job)
    st = json.loads((job.stage_dir("face") / "status.json").read_text())
    assert st["indices"] == list(range(2, 12)) and st["status"][:2] == ["no_face", "no_face"]  # held (default)

    blank = make_clip("blank", np.zeros((68, 2)) + [[223.0, 127.0]], n=4, events=[Event("blank", 0, 4)])
    empty = [np.full_like(f, 90) for f in blank.frames]
    write_rotated_mp4(empty, tmp_path / "empty.mp4")
    job2 = VideoJob(tmp_path / "run2", "run", ManifestVideo(id="e", path=tmp_path / "empty.mp4"),
                    PipelineConfig.from_preset("tiny-demo", face={"backend": "dlib"}))
    run_frames(job2)
    with pytest.raises(StageError, match="no face found in any of its 4 frames"):
        run_face(job2)
    assert read_record(job2.stage_dir("face")).error.kind == "BadInputError"


def test_masks_of_the_wrong_size_are_refused_naming_the_file(clip_files, tmp_path):
    d, video, _, _ = clip_files
    bad = tmp_path / "bad.npz"
    np.savez(bad, masks=np.ones((N, 1, 240, 320), np.uint8))
    job = _job(tmp_path / "run", video, bad)
    run_frames(job)
    with pytest.raises(StageError, match="320x240, the frames are 640x480"):
        run_face(job)
    assert read_record(job.stage_dir("face")).error.file == str(bad)
