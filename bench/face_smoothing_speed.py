"""Smoothers against head speed: lag on the exact true track and NME ÷ raw on that track plus landmark noise, for
loops of 60 (today's `face_tracking` clips), 30 (its hard rows), 20 and 15 frames (±70 x ±35 px, roll ±10°, scale
±10 %); no detector, so every speed runs in a second. Picks a smoother setting that still does not lag at speeds the
face benchmark does not contain.

Usage: ``python bench/face_smoothing_speed.py``. Prints a table and writes ``bench/results/face_smoothing_speed.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info  # noqa: E402
from innout_core.face.smoothing import SmoothingConfig, smooth_landmarks  # noqa: E402
from innout_core.synthetic.testclips import Motion, motion, nme  # noqa: E402
from innout_core.store import atomic_write_json  # noqa: E402

SMOOTHERS = {
    "box 3-tap": {"method": "box"},
    "savgol 11/3": {"method": "savgol"},
    "one_euro": {"method": "one_euro"},
    "kalman 0.05/0.02": {"method": "kalman", "accel": 0.05, "noise": 0.02},
    "kalman 0.1/0.02 (default)": {"method": "kalman", "accel": 0.1, "noise": 0.02},
    "kalman 0.2/0.02": {"method": "kalman", "accel": 0.2, "noise": 0.02},
}
PERIODS = (60, 30, 20, 15)
NOISE_IOD = 0.01  # landmark noise per coordinate, inter-ocular distances (raw dlib NME on the clips is ~0.011)


def main() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(180, 270, size=(68, 2))
    ref[36], ref[45] = [185.0, 120.0], [260.0, 120.0]
    path = Motion(shift=(70.0, 35.0), roll=10.0, zoom=0.1)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for period in PERIODS:
        truth = np.stack([ref @ m[:, :2].T + m[:, 2] for m in (motion(t, period, path=path) for t in range(60))])
        iod = float(np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1).mean())
        noisy = truth + rng.normal(scale=NOISE_IOD * iod, size=truth.shape)
        raw = float(nme(noisy, truth).mean())
        out[str(period)] = {}
        for name, sm in SMOOTHERS.items():
            cfg = SmoothingConfig(**sm)
            out[str(period)][name] = {"lag_nme": float(nme(smooth_landmarks(truth, cfg), truth).mean()),
                                      "noisy_over_raw": float(nme(smooth_landmarks(noisy, cfg), truth).mean() / raw)}
    print("lag on the exact track (NME) / NME ÷ raw with noise, per loop length in frames")
    print(f"{'smoother':28s} " + " ".join(f"{p:>16d}" for p in PERIODS))
    for name in SMOOTHERS:
        print(f"{name:28s} " + " ".join(f"{out[str(p)][name]['lag_nme']:.4f} / {out[str(p)][name]['noisy_over_raw']:.2f}"
                                        .rjust(16) for p in PERIODS))
    dest = Path(__file__).parent / "results" / "face_smoothing_speed.json"
    atomic_write_json(dest, {"benchmark": "face_smoothing_speed", "machine": machine_info(),
                             "config": {"periods": PERIODS, "noise_iod": NOISE_IOD, "frames": 60,
                                        "motion": vars(path), "smoothers": SMOOTHERS}, "results": out})
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
