"""A short run of the embedded demo (ground-truth videos of the `tiny-face` generator, the `tiny-demo` preset with
fewer optimisation steps) through the real command, Prefect, Dask and Parquet, and its metric values as a plain
table: what `test_demo_values.py` compares against the values the code made before a refactor.

Writing the reference (on the code whose behaviour is the reference; it uses only the command line and the demo
data maker, so an older checkout runs it too)::

    PYTHONPATH=<checkout> python tests/flows/demo_reference.py tests/data/demo-values/reference.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

#: The demo's preset with short fits: every stage and every branch of the demo runs, in about a minute.
SHORT_DEMO_CONFIG = """\
preset: tiny-demo
inversion: {steps: 4, init_samples: 2, pti_steps: 2}
joint: {steps: 4, checkpoint_every: 2}
edit: {novel_view: {n_frames: 2}}
video: {encode: false}
"""
VIDEOS, FRAMES = 2, 2
#: Columns that measure the machine, not the method.
MACHINE_COLUMNS = ("run", "seconds")


def build_short_demo(work: Path) -> tuple[Path, Path]:
    """The demo's ground-truth videos and manifest under ``work``, and the short config: (manifest, config)."""
    from flows.demo import build_demo_dataset

    work.mkdir(parents=True, exist_ok=True)
    manifest = build_demo_dataset(work / "data-run", n_videos=VIDEOS, n_frames=FRAMES)
    config = work / "short-demo.yaml"
    config.write_text(SHORT_DEMO_CONFIG)
    return manifest, config


def run_command(work: Path, manifest: Path, config: Path) -> int:
    """``innout run`` of the short demo into ``work/run``, in this process; its exit code."""
    from flows.cli import main

    return main(["--quiet", "run", str(manifest), "--config", str(config), "--run-dir", str(work / "run")])


def read_values(work: Path) -> pd.DataFrame:
    """Every video's metrics rows of the run in ``work``, sorted by their keys, without :data:`MACHINE_COLUMNS`."""
    frames = [pd.read_parquet(p) for p in sorted((work / "run" / "videos").glob("*/metrics.parquet"))]
    df = pd.concat(frames, ignore_index=True).drop(columns=list(MACHINE_COLUMNS))
    keys = ["video", "method", "variant", "mode", "edit", "frame"]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def run_short_demo(work: Path) -> pd.DataFrame:
    """Build, run and read the short demo under ``work`` (:func:`build_short_demo`, :func:`run_command`,
    :func:`read_values`)."""
    code = run_command(work, *build_short_demo(work))
    if code != 0:
        raise RuntimeError(f"the short demo exited {code}")
    return read_values(work)


def to_records(df: pd.DataFrame) -> list[dict]:
    """The rows as JSON-ready dicts (NaN as None)."""
    return json.loads(df.to_json(orient="records"))


if __name__ == "__main__":
    import tempfile

    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        records = to_records(run_short_demo(Path(tmp)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": SHORT_DEMO_CONFIG, "videos": VIDEOS, "frames": FRAMES, "rows": records},
                              indent=1) + "\n")
    print(f"wrote {len(records)} rows to {out}")
