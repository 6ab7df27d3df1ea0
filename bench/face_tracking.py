"""Faces through occlusion: landmark error (NME), the false-start clip and face-stage CPU seconds per frame on clips
with known truth, for several face-stage settings measured in the same run (the defaults, the settings before
issue 21, and one switch at a time).

Clips (``innout_core.synthetic.testclips``): scikit-image's astronaut moved by a known smooth affine motion in a 640x480
frame with per-frame sensor noise (detector jitter); true landmarks = dlib's predictor on the unoccluded photograph
mapped by the motion. Two row sets:

- ``today``: the earlier benchmark's clips (one loop every 60 frames, ±70 x ±35 px, roll ±8°, scale ±8.7 %,
  occluders 5-30 frames that drift over the face, a blanked stretch, a second larger person, a rotated mp4).
- ``hard``: twice as fast (one loop every 30 frames = 1.2 s at 25 fps), roll ±10°, scale ±10 %; occluders up to
  20 frames (eyes, a skin-coloured ellipse over nose/mouth/chin, a bar, a palm that moves with the head), a head
  turning away (yaw up to 75°), a blanked stretch, a false face-sized detection on the clothing in the first frames
  (scored above the real face), the same with the real face's eyes covered at the start (the detector misses it,
  so the track must start on the false face, move, and re-track the first frames backwards), and the issue's own
  path (±40 x ±25 px, ±8°, ±8 %).

NME = mean landmark distance / inter-ocular distance (outer eye corners) of the truth, on all 68 points, of the
landmarks the face stage outputs (after its smoothing). Raw = the same tracker without smoothing.

Usage: ``python bench/face_tracking.py [--quick] [--rows today,hard] [--variants default,before]``. Prints tables and
writes ``bench/results/face_tracking.json`` (machine, load, versions, every figure).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info  # noqa: E402
from innout_core.face.backends import FaceBackend  # noqa: E402
from innout_core.face.dlib_backend import DlibBackend  # noqa: E402
from innout_core.face.preprocess import FaceConfig, output_landmarks, preprocess_video, track_video  # noqa: E402
from innout_core.synthetic.testclips import (  # noqa: E402
    OCCLUDERS, Clip, Event, FalseDetections, Motion, astronaut, make_clip, nme, write_rotated_mp4)
from innout_core.store import atomic_write_json  # noqa: E402

#: face-stage settings compared in one run (FaceConfig overrides on top of backend=dlib, the `fast` preset):
#: the defaults, the settings before issue 21 (the same code paths: keyframe flow, per-point constant velocity,
#: 0.06 jump gate, largest box first, straight-line fill, 3-tap box), and one switch of the defaults at a time
BEFORE = {"tracking": {"select": "largest", "flow": "keyframe", "motion": "points", "history": 2, "max_jump": 0.06,
                       "refine": False, "anchor": False}, "fill": "linear", "smoothing": {"method": "box"}}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "before": BEFORE,
    "replenish off": {"tracking": {"replenish": 0.0}},
    "flow keyframe": {"tracking": {"flow": "keyframe"}},
    "gate 0.06": {"tracking": {"max_jump": 0.06}},
    "motion points": {"tracking": {"motion": "points"}},
    "history 3": {"tracking": {"history": 3}},
    "anchor on": {"tracking": {"anchor": True}},
    "refine on": {"tracking": {"refine": True}},
    "fill linear": {"fill": "linear"},
    "select largest": {"tracking": {"select": "largest"}},
    "select score": {"tracking": {"select": "score"}},
}
#: variants whose switch only matters on some clips (the rest run everywhere on the hard rows; today's rows run
#: default and before only)
ONLY_ON = {"fill linear": lambda c: bool((c.blanked | c.turned).any()),
           "select largest": lambda c: bool(np.isfinite(c.false_box).any()),
           "select score": lambda c: bool(np.isfinite(c.false_box).any())}

#: smoothers measured on the default tracker's output (clean-frame NME vs raw, jitter)
SMOOTHERS: dict[str, dict[str, Any]] = {
    "none": {"method": "none"},
    "kalman 0.1/0.02": {"method": "kalman", "accel": 0.1, "noise": 0.02},
    "kalman 0.05/0.02": {"method": "kalman", "accel": 0.05, "noise": 0.02},
    "box 3-tap": {"method": "box"},
    "savgol 11/3": {"method": "savgol", "window": 11, "polyorder": 3},
    "one_euro": {"method": "one_euro"},
}

FALSE_SCORE = 3.0  # the false detection's HOG margin: above the real face's (0.5-1.6 on these clips)


def _today(ref: np.ndarray, n: int, tmp: Path) -> list[tuple[Clip, FaceBackend | None]]:
    q = n / 60  # event timings scale with the clip length
    ev = lambda kind, a, b: Event(kind, int(a * q), max(int(b * q), 5))  # noqa: E731
    clips = [
        make_clip("clean", ref, n, [], seed=10),
        make_clip("clean, slow motion", ref, n, [], seed=18, amplitude=0.3),
        make_clip("eyes 20f", ref, n, [ev("eyes", 15, 20)], seed=11),
        make_clip("hand 25f", ref, n, [ev("hand", 20, 25)], seed=12),
        make_clip("bar 30f", ref, n, [ev("bar", 10, 30)], seed=13),
        make_clip("eyes 5f + hand 8f", ref, n, [ev("eyes", 12, 5), ev("hand", 35, 8)], seed=14),
        make_clip("blank 10f", ref, n, [ev("blank", 20, 10)], seed=15),
        make_clip("second face + eyes 15f", ref, n, [ev("second_face", 5, 50), ev("eyes", 20, 15)], seed=16),
    ]
    rot = make_clip("rotated mp4 + hand 15f", ref, n, [ev("hand", 25, 15)], seed=17)
    from innout_core.video import iter_frames

    path = write_rotated_mp4(rot.frames, tmp / "rotated.mp4")
    rot.frames = [f.copy() for _, f in iter_frames(path)]  # as the pipeline reads them: upright, via H.264
    clips.append(rot)
    return [(c, None) for c in clips]


HARD = Motion(shift=(70.0, 35.0), roll=10.0, zoom=0.1)
ISSUE = Motion(shift=(40.0, 25.0), roll=8.0, zoom=0.08)


def _hard(ref: np.ndarray, n: int, backend: FaceBackend) -> list[tuple[Clip, FaceBackend | None]]:
    q = n / 60
    ev = lambda kind, a, b: Event(kind, int(a * q), max(int(b * q), 4))  # noqa: E731
    mk = lambda name, events, seed, path=HARD: make_clip(name, ref, n, events, seed=seed, period=30,  # noqa: E731
                                                          path=path, yaw=75.0)
    out: list[tuple[Clip, FaceBackend | None]] = [
        (mk("fast clean", [], 30), None),
        (mk("fast eyes 20f", [ev("eyes", 20, 20)], 31), None),
        (mk("fast lower face 15f", [ev("lower", 12, 15)], 32), None),
        (mk("fast lower face 20f", [ev("lower", 33, 20)], 33), None),
        (mk("fast bar 20f", [ev("bar", 15, 20)], 34), None),
        (mk("fast palm with head 20f", [ev("palm", 25, 20)], 35), None),
        (mk("fast eyes 8f + lower 12f", [ev("eyes", 8, 8), ev("lower", 35, 12)], 36), None),
        (mk("issue path: eyes 11f", [ev("eyes", 20, 11)], 37, ISSUE), None),
        (mk("issue path: lower 15f", [ev("lower", 20, 15)], 38, ISSUE), None),
        (mk("issue path: bar 8f", [ev("bar", 20, 8)], 39, ISSUE), None),
        (mk("fast yaw 8f", [ev("yaw", 25, 8)], 40), None),
        (mk("fast blank 10f", [ev("blank", 24, 10)], 41), None),
    ]
    fs = mk("false start", [ev("false_face", 0, 6)], 42)
    out.append((fs, FalseDetections(backend, fs.false_box, FALSE_SCORE)))
    fh = mk("false start, eyes covered 5f", [ev("false_face", 0, 10), ev("eyes", 0, 5)], 43)
    out.append((fh, FalseDetections(backend, fh.false_box, FALSE_SCORE)))
    return out


def _wrong_frames(lm: np.ndarray, clip: Clip) -> int:
    """Frames whose landmarks are not on the target: NME > 0.5 or centroid inside the false box."""
    e = nme(lm, clip.truth)
    c = lm.mean(1)
    b = clip.false_box
    with np.errstate(invalid="ignore"):
        inside = (c[:, 0] > b[:, 0]) & (c[:, 0] < b[:, 2]) & (c[:, 1] > b[:, 1]) & (c[:, 1] < b[:, 3])
    return int(((e > 0.5) | inside).sum())


def _stats(e: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    if not mask.any():
        return {"mean": None, "p95": None, "max": None}
    return {"mean": float(e[mask].mean()), "p95": float(np.percentile(e[mask], 95)), "max": float(e[mask].max())}


def _jitter(lm: np.ndarray, clip: Clip, clean: np.ndarray) -> float:
    """Mean over consecutive clean frames of |change of the error| / inter-ocular distance (temporal noise)."""
    iod = np.linalg.norm(clip.truth[:, 36] - clip.truth[:, 45], axis=-1)
    step = np.linalg.norm(np.diff(lm - clip.truth, axis=0), axis=-1).mean(-1) / iod[1:]
    return float(step[clean[:-1] & clean[1:]].mean())


def _run(clip: Clip, backend: FaceBackend, overrides: dict[str, Any], smoothers: bool) -> dict[str, Any]:
    cfg = FaceConfig(backend="dlib", **overrides)
    n = len(clip.frames)
    c0, w0 = time.process_time(), time.perf_counter()
    tr = track_video(clip.frames, backend, cfg)
    res = preprocess_video(clip.frames, backend, cfg, name=clip.name, tracked=tr)
    cpu, wall = (time.process_time() - c0) / n, (time.perf_counter() - w0) / n
    lm = res.landmarks.numpy().astype(np.float64)
    smoothed = lambda sm: output_landmarks(  # noqa: E731
        tr, cfg.model_copy(update={"smoothing": type(cfg.smoothing)(**sm)}), clip.name)[1]
    raw = smoothed({"method": "none"})
    occ, hidden = clip.occluded, clip.blanked | clip.turned
    clean = ~occ & ~hidden
    e, e_raw = nme(lm, clip.truth), nme(raw, clip.truth)
    out = {"status": {s: res.status.count(s) for s in ("ok", "predicted", "filled", "no_face")},
           "occluded": _stats(e, occ), "hidden": _stats(e, hidden), "clean": _stats(e, clean),
           "raw_clean": float(e_raw[clean].mean()), "clean_over_raw": float(e[clean].mean() / e_raw[clean].mean()),
           "max": float(e.max()), "frames_over_0.5": int((e > 0.5).sum()), "wrong_frames": _wrong_frames(lm, clip),
           "jitter": _jitter(lm, clip, clean), "raw_jitter": _jitter(raw, clip, clean),
           "warnings": list(res.warnings), "switches": [[w.frame, w.since] for w in tr.switches],
           "cpu_s_per_frame": cpu, "wall_s_per_frame": wall}
    if smoothers:
        out["smoothers"] = {}
        for name, sm in SMOOTHERS.items():
            s_lm = smoothed(sm)
            s_e = nme(s_lm, clip.truth)
            out["smoothers"][name] = {"clean": float(s_e[clean].mean()), "occluded": _stats(s_e, occ)["mean"],
                                      "clean_over_raw": float(s_e[clean].mean() / e_raw[clean].mean()),
                                      "jitter": _jitter(s_lm, clip, clean)}
    return out


def _fmt(x: float | None, d: int = 3) -> str:
    return "—" if x is None else f"{x:.{d}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 frames per clip")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rows", default="today,hard", help="row sets: today, hard")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"settings to compare: {', '.join(VARIANTS)}")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "face_tracking.json"))
    a = ap.parse_args()
    n = 30 if a.quick else a.frames
    rows, variants = a.rows.split(","), a.variants.split(",")
    info = machine_info()
    backend = DlibBackend()
    ref = backend.detect(astronaut(), 0)[0].landmarks
    clips: dict[str, list[tuple[Clip, FaceBackend | None]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "today" in rows:
            clips["today"] = _today(ref, n, Path(tmp))
        if "hard" in rows:
            clips["hard"] = _hard(ref, n, backend)
    results: dict[str, dict[str, Any]] = {}
    for rowset, items in clips.items():
        results[rowset] = {}
        for clip, be in items:
            r = {"frames": n, "occluded_frames": int(clip.occluded.sum()),
                 "hidden_frames": int((clip.blanked | clip.turned).sum()), "variants": {}}
            for v in variants:
                if rowset == "today" and v not in ("default", "before"):
                    continue
                if v in ONLY_ON and not ONLY_ON[v](clip):
                    continue
                r["variants"][v] = _run(clip, be or backend, VARIANTS[v], smoothers=v == "default")
            results[rowset][clip.name] = r
            print(f"  done {rowset} / {clip.name}", flush=True)

    for rowset, res in results.items():
        print(f"\n[{rowset}] NME of the face stage's landmarks, {n} frames per clip at 640x480, dlib backend")
        print(f"{'clip':30s} {'variant':14s} {'statuses':28s} {'occl mean':>9s} {'p95':>6s} {'max':>6s} "
              f"{'hidden':>6s} {'clean/raw':>9s} {'jit/raw':>7s} {'wrong':>5s} {'CPU s/f':>7s}")
        for name, r in res.items():
            for v, x in r["variants"].items():
                st = ", ".join(f"{k} {c}" for k, c in x["status"].items() if c)
                print(f"{name:30s} {v:14s} {st:28s} {_fmt(x['occluded']['mean']):>9s} {_fmt(x['occluded']['p95']):>6s}"
                      f" {_fmt(x['max']):>6s} {_fmt(x['hidden']['mean']):>6s} {_fmt(x['clean_over_raw'], 2):>9s} "
                      f"{_fmt(x['jitter'] / x['raw_jitter'], 2):>7s} {x['wrong_frames']:>5d} "
                      f"{_fmt(x['cpu_s_per_frame']):>7s}")
        print(f"\n[{rowset}] smoothing on the default tracker: clean NME / clean ÷ raw / jitter")
        print(f"{'clip':30s} " + " ".join(f"{k:>22s}" for k in SMOOTHERS))
        for name, r in res.items():
            sm = r["variants"].get("default", {}).get("smoothers", {})
            print(f"{name:30s} " + " ".join(f"{_fmt(s['clean'])}/{_fmt(s['clean_over_raw'], 2)}/{_fmt(s['jitter'])}"
                                            .rjust(22) for s in sm.values()))
    load_end = os.getloadavg()
    print(f"\nload average (1 min) at start / end: {info['load_average_at_start'][0]:.1f} / {load_end[0]:.1f} on "
          f"{os.cpu_count()} cores")

    import cv2
    import dlib

    payload = {
        "benchmark": "face_tracking", "machine": {**info, "load_average_at_end": load_end},
        "versions": {"dlib": dlib.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
        "config": {"frames": n, "size": [640, 480], "noise_grey_levels": 6.0, "backend": "dlib",
                   "hard_motion": vars(HARD), "issue_motion": vars(ISSUE), "hard_period_frames": 30,
                   "false_detection_score": FALSE_SCORE, "occluder_kinds": list(OCCLUDERS),
                   "default_face_config": FaceConfig(backend="dlib").model_dump(mode="json"),
                   "variants": VARIANTS, "smoothers": SMOOTHERS},
        "definitions": {
            "nme": "mean over 68 points of the point error / inter-ocular distance (outer eye corners, truth), of "
                   "the face stage's output landmarks (smoothed)",
            "clean_over_raw": "mean NME on clean frames (no occluder, not blanked, not turned away) / the same "
                              "tracker's unsmoothed landmarks",
            "jitter": "mean over consecutive clean frames of the 68-point mean |change of the error| / inter-ocular "
                      "distance",
            "wrong_frames": "frames with NME > 0.5 or the landmarks' centroid inside the false detection's box",
            "hidden": "blanked or turned-away (yaw) frames",
            "cpu_s_per_frame": "track_video + preprocess_video (detect + track + fill + smooth + crop + camera) per "
                               "frame, time.process_time"},
        "rows": results,
    }
    atomic_write_json(a.out, payload)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
