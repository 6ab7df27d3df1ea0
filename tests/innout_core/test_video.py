"""Video in/out: round trips through real ffmpeg on videos the tests build, frame-index integrity, error messages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from innout_core.errors import BadInputError, StageError
from innout_core.video import (
    EncodeConfig,
    FrameSelection,
    encode_side_by_side,
    encode_video,
    extract_frames,
    ffmpeg_exe,
    frame_name,
    iter_frames,
    list_frames,
    probe,
    read_frames,
    select_indices,
    side_by_side,
    write_frames,
)

W, H, T, FPS = 67, 45, 20, 25
BITS = 5
BAND = W // BITS  # 13-px wide bands, one per bit of the frame index


def _pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame ``i``: bit b of i as a black/white band in the top half; the bottom half a grey ramp of i."""
    img = np.zeros((h, w, 3), np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            img[: h // 2, b * BAND : (b + 1) * BAND] = 255
    img[h // 2 :, :, 0] = 10 * i
    img[h // 2 :, :, 1] = 128
    return img


def _decode_index(rgb: np.ndarray) -> int:
    """Read the index back from the bands (robust to H.264 loss: threshold the band's mean)."""
    h = rgb.shape[0]
    bits = [rgb[2 : h // 2 - 2, b * BAND + 2 : (b + 1) * BAND - 2].mean() > 128 for b in range(BITS)]
    return sum(int(v) << b for b, v in enumerate(bits))


def _ffmpeg_from_frames(frames: list[np.ndarray], out: Path, *extra: str) -> Path:
    """Independent writer: raw RGB piped to the ffmpeg CLI (yuv444p: odd sizes allowed)."""
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r",
           str(FPS), "-i", "pipe:", *extra, "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv444p", str(out)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("src")
    return _ffmpeg_from_frames([_pattern(i) for i in range(T)], d / "odd.mp4")


def test_probe_odd_size(source: Path) -> None:
    info = probe(source)
    assert (info.width, info.height, info.frame_count) == (W, H, T)
    assert info.fps == FPS and info.fps_fraction == "25/1"
    assert info.rotation == 0 and not info.variable_frame_rate and not info.has_audio
    assert np.allclose(info.frame_times, np.arange(T) / FPS)


def test_round_trip_keeps_count_order_and_size(source: Path, tmp_path: Path) -> None:
    frames = extract_frames(source, tmp_path / "frames")
    assert [f.index for f in frames] == list(range(T))
    assert [p for _, p in list_frames(tmp_path / "frames")] == [f.path for f in frames]
    x = read_frames([f.path for f in frames])
    assert x.shape == (T, 3, H, W) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    decoded = ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert [_decode_index(f) for f in decoded] == list(range(T))

    out = encode_video(x, tmp_path / "out.mp4", probe(source).fps_fraction)
    info = probe(out)
    # Odd sizes are padded to even by replicating the last column/row (right/bottom): 67x45 -> 68x46.
    assert (info.width, info.height, info.frame_count, info.fps) == (W + 1, H + 1, T, FPS)
    assert info.pix_fmt == "yuv420p" and info.codec == "h264"
    back = np.stack([f for _, f in iter_frames(out)])
    assert [_decode_index(f) for f in back] == list(range(T))
    # Content check vs the lossless PNGs: H.264 at crf 18 on flat blocks; chroma subsampling smears the band
    # edges, so compare the mean error (< 4 grey levels) rather than the max.
    err = np.abs(back[:, :H, :W].astype(int) - decoded.astype(int)).mean()
    assert err < 4.0, err
    assert np.abs(back[:, :H, W].astype(int) - back[:, :H, W - 1].astype(int)).mean() < 4.0  # replicated column

    cropped = probe(encode_video([f.path for f in frames], tmp_path / "crop.mp4", FPS, EncodeConfig(even="crop")))
    assert (cropped.width, cropped.height, cropped.frame_count) == (W - 1, H - 1, T)


def test_selection_keeps_source_indices(source: Path, tmp_path: Path) -> None:
    sel = FrameSelection(start=3, end=17, fps=FPS / 4, max_frames=3)
    frames = extract_frames(source, tmp_path, sel)
    assert [f.index for f in frames] == [3, 7, 11]
    assert [f.path.name for f in frames] == ["frame_000003.png", "frame_000007.png", "frame_000011.png"]
    x = read_frames([f.path for f in frames])
    got = [_decode_index(((im + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()) for im in x]
    assert got == [3, 7, 11]
    assert frame_name(1234567) == "frame_1234567.png"  # no digit limit


def test_write_frames_uint8_round_trip(tmp_path: Path) -> None:
    frames = np.stack([_pattern(i) for i in range(3)])
    paths = write_frames(frames, tmp_path, indices=[5, 1000000, 7])
    assert [i for i, _ in list_frames(tmp_path)] == [5, 7, 1000000]
    back = read_frames(paths)
    assert torch.equal(((back + 1) * 127.5).round().byte().permute(0, 2, 3, 1), torch.from_numpy(frames))
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_variable_frame_rate_and_fps_selection(tmp_path: Path) -> None:
    frames = [_pattern(i, 64, 48) for i in range(12)]
    vfr = _ffmpeg_from_frames(frames, tmp_path / "vfr.mp4", "-vf", "setpts='N/25/TB+if(gte(N,5),0.1/TB,0)'",
                              "-fps_mode", "vfr")
    info = probe(vfr)
    assert info.variable_frame_rate and info.frame_count == 12
    gaps = np.diff(info.frame_times)
    assert gaps[4] > 2.5 * gaps[0] and np.allclose(np.delete(gaps, 4), 0.04, atol=1e-3)
    # 10 fps slots from t=0: frames at 0, .04, .08 | .12, .16 | .28 | .32, .36 | .40, .44, .48 | .52
    assert select_indices(info, FrameSelection(fps=10)) == [0, 3, 5, 6, 8, 11]
    assert [f.index for f in extract_frames(vfr, tmp_path / "f", FrameSelection(fps=10))] == [0, 3, 5, 6, 8, 11]


def test_rotation_applied_on_decode(source: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rot.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-c", "copy", "-metadata:s:v:0",
                    "rotate=90", str(rotated)], check=True)
    info = probe(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (H, W)
    plain = next(iter_frames(source))[1]
    turned = next(iter_frames(rotated))[1]
    # rotation is clockwise degrees; np.rot90 turns counter-clockwise.
    assert np.array_equal(turned, np.rot90(plain, k=(360 - info.rotation) // 90))


def test_side_by_side_with_labels(tmp_path: Path) -> None:
    a = torch.linspace(-1, 1, 2 * 3 * 32 * 40).reshape(2, 3, 32, 40)
    b = np.full((2, 64, 64, 3), 200, np.uint8)  # taller column: resized to 32 px high, 32 wide
    grid = side_by_side([a, b], labels=["input", "edit"])
    assert grid.shape == (2, 16 + 32, 40 + 32, 3)
    # white (anti-aliased) text drawn in each column's header strip; the images below are untouched
    assert grid[:, :16, :40].max() > 200 and grid[:, :16, 40:].max() > 200
    assert np.array_equal(grid[:, 16:, :40], np.asarray(side_by_side([a]))) and grid[:, 16:, 40:].min() == 200
    out = encode_side_by_side([a, b, a], tmp_path / "cmp.mp4", "30000/1001", labels=["in", "rec", "edit"])
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (112, 48, 2)
    assert info.fps == pytest.approx(30000 / 1001)
    with pytest.raises(BadInputError, match=r"frame 1 has shape \(8, 9, 3\), frame 0 has \(8, 8, 3\)"):
        encode_video([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], tmp_path / "x.mp4", 25)
    with pytest.raises(BadInputError, match="column 1 has 3 frames"):
        side_by_side([a, np.zeros((3, 8, 8, 3), np.uint8)])


def test_failed_encode_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "res.mp4"
    with pytest.raises(StageError, match=r"res\.mp4: ffmpeg failed to encode"):
        encode_video(np.zeros((2, 8, 8, 3), np.uint8), out, 25, EncodeConfig(preset="no-such-preset"))
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"previous")
    with pytest.raises(StageError):
        encode_video(np.zeros((2, 8, 8, 3), np.uint8), out, 25, EncodeConfig(preset="no-such-preset"))
    assert out.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


def test_bad_inputs_name_the_file_and_problem(source: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    audio = tmp_path / "voice.m4a"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.3", str(audio)],
                   check=True)
    cases = {
        tmp_path / "missing.mp4": "file not found",
        tmp_path: "is a directory",
        empty: r"file is empty \(0 bytes\)",
        corrupt: "ffprobe cannot read it as a video .*corrupt or not a media file",
        text: "ffprobe cannot read it as a video .*corrupt or not a media file",
        truncated: "corrupt",
        audio: r"has no video stream \(audio only: audio \(aac\)\)",
    }
    for path, message in cases.items():
        with pytest.raises(BadInputError, match=message) as err:
            extract_frames(path, tmp_path / "out")
        assert str(err.value).startswith(f"{path}: ") and err.value.exit_code == 2
    with pytest.raises(BadInputError, match="cannot be decoded as an image"):
        read_frames([text])
