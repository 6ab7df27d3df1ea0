"""One command per run directory, and no orphans: the run lock (flows.lock) and the server guard
(flows.server_guard). The fast tests hold the lock / guard a `sleep` from helper processes; the slow one SIGKILLs a
real `innout run` whose Prefect server is up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from flows.lock import LOCK_NAME, RunLockedError, holder, run_lock
from flows.server import GUARD
from innout_core.synthetic.heads import frontal_camera
from tests.flows.inprocess import isolated_cli

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom flows.lock import run_lock\n"
        "with run_lock(sys.argv[1], command='innout run held.yaml'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n")


def _start_holder(run: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def _cmd(p: psutil.Process) -> str:
    """The process's command line, or '' once it is a zombie or gone (a short-lived child may exit while listed)."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes of ``procs`` still running (zombies count as gone) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    return alive


def test_second_holder_is_refused_with_pid_command_and_start_until_the_holder_is_killed(tmp_path):
    run = tmp_path / "run"
    p = _start_holder(run)
    try:
        info = holder(run / LOCK_NAME)
        assert info["pid"] == p.pid and info["command"] == "innout run held.yaml" and info["started"]
        with pytest.raises(RunLockedError, match=rf"in use by pid {p.pid} \(`innout run held.yaml`, started "
                                                 r"\d{4}-\d\d-\d\dT") as err:
            with run_lock(run):
                pass
        assert err.value.exit_code == 2 and str(err.value).startswith(f"{run.resolve()}: ")
    finally:
        p.kill()  # SIGKILL: no cleanup code runs in the holder
        p.wait()
    with run_lock(run) as path:  # the kernel released it
        assert path == run.resolve() / LOCK_NAME and holder(path)["pid"] == os.getpid()
    assert holder(run / LOCK_NAME) == {}  # cleared on release


def test_lock_is_reentrant_within_a_process(tmp_path):
    with run_lock(tmp_path / "r"):
        with run_lock(tmp_path / "r"):  # the command, then the dataset flow it calls
            pass
        assert holder(tmp_path / "r" / LOCK_NAME)["pid"] == os.getpid()  # still held by the outer block


def test_commands_refuse_a_held_run_but_status_and_tables_read_it(tmp_path, capsys):
    from flows.cli import main

    man = tmp_path / "m.yaml"
    man.write_text(yaml.safe_dump({"name": "m", "videos": [{"id": "a", "path": "gone.mp4"}]}))
    run = tmp_path / "run"
    with isolated_cli():
        assert main(["--quiet", "run", str(man), "--run-dir", str(run)]) == 2  # bad input: a run.yaml, no server
        capsys.readouterr()
        p = _start_holder(run)
        try:
            for argv in (["run", str(man), "--run-dir", str(run)], ["retry", str(run)],
                         ["demo", "--run-dir", str(run)]):
                assert main(argv) == 2, argv
                err = capsys.readouterr().err
                assert f"in use by pid {p.pid}" in err and "\n" not in err.strip(), (argv, err)
            assert main(["status", str(run)]) == 1  # reads while the run is held
            main(["tables", str(run)])
            assert "in use" not in capsys.readouterr().err
        finally:
            p.kill()
            p.wait()


@pytest.mark.parametrize("deathsig", [True, False], ids=["parent-death-signal", "watchdog"])
def test_guarded_command_dies_with_its_parent(deathsig):
    """SIGKILL the process that started the guard: the guarded command is gone within seconds, by the kernel's
    parent-death signal or (without it) by the guard's watchdog on the parent pid."""
    flag = [] if deathsig else ["--no-deathsig"]
    code = ("import os, subprocess, sys, time\n"
            f"g = subprocess.Popen([sys.executable, {str(GUARD)!r}, str(os.getpid()), *{flag!r}, '--', 'sleep', '600'],"
            " start_new_session=True)\nprint(g.pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    guard = psutil.Process(int(parent.stdout.readline()))
    procs = [guard]
    try:
        deadline = time.monotonic() + 30
        while not guard.children() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs += guard.children()
        assert [c.name() for c in procs[1:]] == ["sleep"]
        parent.kill()
        parent.wait()
        alive = _gone(procs, 10)
        assert not alive, alive
    finally:
        for q in procs:
            _kill(q)


def _kill(p: psutil.Process) -> None:
    try:
        p.kill()
    except psutil.Error:
        pass


def test_guard_exits_with_the_commands_code():
    out = subprocess.run([sys.executable, str(GUARD), str(os.getpid()), "--", "sh", "-c", "exit 3"], timeout=60)
    assert out.returncode == 3


@pytest.mark.slow
def test_sigkilled_run_leaves_no_server_and_frees_the_lock(tmp_path):
    """A real `innout run` (its own Prefect server): a second run on the directory is refused naming it, `status`
    reads, and after SIGKILL its server (and every other process it started) is gone within seconds."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.2:r=25",
                    "-pix_fmt", "yuv420p", str(tmp_path / "ok.mp4")], check=True)
    # true cameras for the `given` face backend, so the run goes on into the inversions and is still alive while
    # the test checks it (without them the face stage fails at once and the run may end before the checks)
    np.save(tmp_path / "cams.npy", frontal_camera().numpy().repeat(5, axis=0))
    man = tmp_path / "m.yaml"
    man.write_text(yaml.safe_dump({"name": "m", "videos": [{"id": "a", "path": "ok.mp4", "cameras": "cams.npy"}]}))
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "home"), INNOUT_THREADS="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    cmd = [sys.executable, "-c", "from flows.cli import main; main()", "--quiet"]
    cli = subprocess.Popen([*cmd, "run", str(man), "--run-dir", str(run)], env=env, cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        server = None
        deadline = time.monotonic() + 240
        while server is None and time.monotonic() < deadline and cli.poll() is None:
            kids = psutil.Process(cli.pid).children(recursive=True)
            server = next((k for k in kids if " server start" in _cmd(k)), None)
            time.sleep(0.5)
        assert server is not None, "no Prefect server was started"
        port = server.cmdline()[server.cmdline().index("--port") + 1]
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        second = subprocess.run([*cmd, "run", str(man), "--run-dir", str(run)], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=240)
        assert second.returncode == 2 and re.search(rf"in use by pid {cli.pid} \(`.*run .*m\.yaml", second.stderr), \
            second.stderr
        status = subprocess.run([*cmd, "status", str(run)], env=env, capture_output=True, text=True, timeout=240)
        assert status.returncode in (0, 1) and "in use" not in status.stderr and " a " in status.stdout, status
        while time.monotonic() < deadline:  # wait for the flow's Dask workers
            family = psutil.Process(cli.pid).children(recursive=True)
            if sum("multiprocessing" in _cmd(p) for p in family) >= 2:
                break
            time.sleep(0.5)
        assert server in family and len(family) >= 4, [_cmd(p) for p in family]
        # the command's flow talks to the run's server: no ephemeral Prefect server of its own
        assert not any("uvicorn" in _cmd(p) for p in family), [_cmd(p) for p in family]
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(30)
        alive = _gone(family, 15)
        assert not alive, [(p.pid, _cmd(p)) for p in alive]
        with run_lock(run):  # released with the killed command
            pass
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait(30)
        for p in family:
            _kill(p)
