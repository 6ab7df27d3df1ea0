"""The metrics of a run as the tables and the report see them: every readable ``videos/*/metrics.parquet``, and
the videos left out with why (a Parquet file that is missing though the video's metrics stage is done, or one that
cannot be read). One damaged video never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from innout_core.errors import InnoutError
from innout_core.store import read_metrics, read_record

__all__ = ["METRICS_STAGE", "RUN_NOTE_KEYS", "LeftOut", "RunMetrics", "collect_metrics"]

#: The stage that writes ``metrics.parquet`` (``tasks.metrics.STAGE``; reports may not import tasks).
METRICS_STAGE = "metrics"
#: Metric-definition keys that are caveats of the run rather than definitions: each becomes a line of the tables'
#: notes naming its videos (``tasks/metrics.py`` records L_D's when the paper's depth loss had no depth map).
RUN_NOTE_KEYS = ("L_D (single image)",)


@dataclass(frozen=True)
class LeftOut:
    """A video whose metrics could not be tabulated."""

    video: str
    file: str  # the Parquet path relative to the run directory
    problem: str  # "missing" | "unreadable"
    reason: str  # one line

    def note(self) -> str:
        """One line for the tables' notes and the report."""
        return f"Left out: video {self.video}: {self.reason}"


@dataclass
class RunMetrics:
    """The readable rows of a run (``frame`` is None when no file could be read) and the videos left out."""

    run_dir: Path
    frame: pd.DataFrame | None
    files: dict[str, Path] = field(default_factory=dict)  # video -> its readable metrics.parquet
    left_out: list[LeftOut] = field(default_factory=list)
    caveats: dict[str, list[str]] = field(default_factory=dict)  # "key: text" -> the videos it applies to

    def notes(self) -> list[str]:
        """Lines for the tables: the run's caveats (e.g. L_D without depth maps) with their videos, then how many
        videos are tabulated and one line per video left out."""
        lines = [f"{caveat} (videos: {', '.join(videos)})" for caveat, videos in self.caveats.items()]
        if not self.left_out:
            return lines
        head = (f"{len(self.files)} video(s) tabulated; {len(self.left_out)} left out "
                f"({', '.join(v.video for v in self.left_out)}):")
        return lines + [head] + [v.note() for v in self.left_out]


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    try:
        table, definitions = read_metrics(path)
    except InnoutError:
        raise
    except Exception as err:  # pyarrow raises several types for a damaged file (ArrowInvalid, OSError, ...)
        raise InnoutError(f"not a readable metrics Parquet file ({type(err).__name__}: {err})", path=path) from err
    return table.to_pandas(), definitions


def collect_metrics(run_dir: str | Path) -> RunMetrics:
    """Read every ``videos/<video>/metrics.parquet`` of ``run_dir``; never raises for one bad video.

    A video is left out when its file exists but cannot be read (damaged, or another schema version), or when
    its ``metrics`` stage record says done but the file is gone. Videos whose metrics stage has not finished are
    not listed (they are pending or failed, which ``innout status`` reports).
    """
    run_dir = Path(run_dir)
    frames: list[pd.DataFrame] = []
    out = RunMetrics(run_dir, None)
    vdirs = sorted(p for p in (run_dir / "videos").glob("*") if p.is_dir()) if (run_dir / "videos").is_dir() else []
    for vdir in vdirs:
        path = vdir / "metrics.parquet"
        rel = path.relative_to(run_dir).as_posix()
        if path.exists():
            try:
                frame, definitions = _read(path)
            except InnoutError as err:
                message = " ".join(err.message.split())
                out.left_out.append(LeftOut(vdir.name, rel, "unreadable", (
                    f"{rel} is unreadable ({message}); delete it and re-run `innout run` on the run's manifest to "
                    "recompute it")))
                continue
            frames.append(frame)
            out.files[vdir.name] = path
            for key in RUN_NOTE_KEYS:
                if key in definitions:
                    out.caveats.setdefault(f"{key}: {definitions[key]}", []).append(vdir.name)
            continue
        rec = read_record(vdir / METRICS_STAGE)
        if rec is not None and rec.status == "done":
            out.left_out.append(LeftOut(vdir.name, rel, "missing", (
                f"its metrics stage is done but {rel} is missing; re-run `innout run` on the run's manifest to "
                "recompute it")))
    if frames:
        out.frame = pd.concat(frames, ignore_index=True)
    return out
