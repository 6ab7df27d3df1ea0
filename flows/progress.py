"""Terminal progress for a run, drawn from the run directory: one bar per video (stages done / planned) and one
per running long stage (its ``progress.json``: step / total, losses). Works whichever worker or machine runs it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from innout_core.store import read_record, stage_dir
from tasks.stage import PROGRESS_NAME

__all__ = ["RunProgress"]


class RunProgress:
    """Context manager polling ``run_dir`` every ``interval_s`` seconds and updating rich progress bars.

    Args:
        run_dir: the run directory.
        plan: video id -> planned stage names.
        console: where to draw (stderr by default); nothing is drawn when ``enabled`` is False (``--quiet``).
    """

    def __init__(self, run_dir: Path, plan: dict[str, list[str]], console: Console | None = None,
                 enabled: bool = True, interval_s: float = 0.5) -> None:
        self.run_dir, self.plan, self.interval_s, self.enabled = Path(run_dir), plan, interval_s, enabled
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console or Console(stderr=True), transient=False,
        )
        self._videos: dict[str, int] = {}
        self._stages: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self.progress.start()
            for vid, stages in self.plan.items():
                self._videos[vid] = self.progress.add_task(f"[bold]{vid}", total=len(stages), info="")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join(5)
            self.poll()
            self.progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - drawing must never break the run
                pass

    def poll(self) -> None:
        """Read every planned stage's record / progress file once and update the bars."""
        for vid, stages in self.plan.items():
            done, running, failed = 0, [], 0
            for s in stages:
                d = stage_dir(self.run_dir, vid, s)
                rec = read_record(d)
                st = rec.status if rec else "pending"
                done += st == "done"
                failed += st == "failed"
                if st == "running":
                    running.append(s)
                self._stage_bar(vid, s, d, st)
            info = f"[red]{failed} failed[/]" if failed else (", ".join(running) or "")
            self.progress.update(self._videos[vid], completed=done, info=info)

    def _stage_bar(self, vid: str, stage: str, d: Path, status: str) -> None:
        key = (vid, stage)
        p = d / PROGRESS_NAME
        if status != "running" or not p.is_file():
            if key in self._stages and status in ("done", "failed"):
                self.progress.update(self._stages[key], visible=False)
            return
        try:
            info = json.loads(p.read_text("utf-8"))
        except (OSError, ValueError):
            return
        losses = " ".join(f"{k}={v:.4g}" for k, v in list(info.get("losses", {}).items())[:3])
        if key not in self._stages:
            self._stages[key] = self.progress.add_task(f"  {vid}/{stage}", total=info.get("total") or 1, info="")
        self.progress.update(self._stages[key], completed=info.get("step", 0), total=info.get("total") or 1,
                             info=losses, visible=True)
