"""End-to-end fixtures: one local Prefect server for the session (throwaway PREFECT_HOME), tiny ground-truth
videos, a fast config, and a helper that runs the `innout` command in its own process group (always killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flows.server import server_env, start_server, stop_server
from innout_core.store import StageRecord, read_record

REPO = Path(__file__).resolve().parents[2]
INNOUT = [sys.executable, "-c", "from flows.cli import main; main()"]

#: Few steps of everything; identity off (no model pack here); the resume test raises the stage-A steps.
FAST_CONFIG = {
    "preset": "tiny-demo",
    "methods": ["w", "innout"],
    "innout_variants": ["no-masks"],
    "modes": ["video"],
    "retries": 0,
    "inversion": {"steps": 2, "init_samples": 2, "pti_steps": 1},
    "joint": {"steps": 2, "checkpoint_every": 1},
    "sr_tuning": {"epochs": 1},
    "dask": {"workers": 2},
    "metrics": {"identity": False},
}


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Environment for `innout` subprocesses: PREFECT_API_URL of a session-wide local server."""
    home = tmp_path_factory.mktemp("prefect-home")
    proc, url = start_server(home)
    env = server_env(home)
    env.update(PREFECT_API_URL=url, PYTHONPATH=str(REPO), INNOUT_THREADS="1", PREFECT_LOGGING_LEVEL="WARNING")
    try:
        yield env
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def gt_videos(tmp_path_factory) -> Path:
    """Two 2-frame ground-truth videos (the demo's generator) with cameras and masks, via flows.demo."""
    from flows.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("gt")
    build_demo_dataset(root, n_videos=2, n_frames=2)
    return root / "data"


def gt_ids(gt_videos: Path) -> list[str]:
    """The ids (= folder names) of the :func:`gt_videos` fixture's videos, in manifest order (they name the demo
    generator's occluders, e.g. ``gt00-hand``)."""
    return [v["id"] for v in yaml.safe_load((gt_videos / "demo.yaml").read_text())["videos"]]


def stage_records(run: Path) -> dict[tuple[str, str], StageRecord]:
    """Every stage record of a run directory, keyed by (video, stage)."""
    out = {}
    for d in (run / "videos").glob("*/*"):
        rec = read_record(d)
        if rec is not None:
            out[(d.parent.name, d.name)] = rec
    return out


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Innout:
    """Runs `innout ...` subprocesses in new sessions; kills their process groups at teardown."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd, self.procs = env, cwd, []

    def start(self, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([*INNOUT, "--quiet", *args], env=self.env, cwd=self.cwd, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        return p

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        p = self.start(*args)
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)


@pytest.fixture
def innout(prefect_env, tmp_path) -> Iterator[Innout]:
    runner = Innout(prefect_env, tmp_path)
    try:
        yield runner
    finally:
        runner.kill_all()
