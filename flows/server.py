"""One Prefect API for a run: ``PREFECT_API_URL`` when set, else a local ``prefect server start`` subprocess.

The server runs in its own process group with ``PREFECT_HOME`` in the given directory and analytics off; it is
stopped (its whole process group) when the context exits, also on Ctrl-C or SIGTERM, and dies with the command on
SIGKILL (:mod:`flows.server_guard`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from innout_core.errors import InnoutError

__all__ = ["GUARD", "exit_on_signal", "free_port", "prefect_api", "start_server", "stop_server"]

#: The guard script the server runs under (by path: it needs nothing of the project).
GUARD = Path(__file__).with_name("server_guard.py")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect_exe() -> str:
    exe = Path(sys.executable).with_name("prefect")
    return str(exe) if exe.exists() else "prefect"


def server_env(home: Path) -> dict[str, str]:
    """Environment for a local server / its clients: PREFECT_HOME, analytics off, long startup timeout."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    })
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)  # the server's console is its log file
    return env


def start_server(home: Path, timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start ``prefect server start`` on a free port; returns (process, api url) once /api/health answers.

    The process is :mod:`flows.server_guard` leading a new process group with the server in it: the server dies
    with this process (parent-death signal on Linux, a watchdog on our pid everywhere), also on SIGKILL.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(home / "server.log", "ab")
    cmd = [_prefect_exe(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, str(GUARD), str(os.getpid()), "--", *cmd],
        env=server_env(home), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()  # the server holds its own copy
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InnoutError(f"prefect server exited with code {proc.returncode}; see the log", path=home / "server.log")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        time.sleep(0.5)
    stop_server(proc)
    raise InnoutError(f"prefect server did not answer within {timeout_s:.0f}s; see the log", path=home / "server.log")


def stop_server(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _kill_children() -> None:
    """Kill this process's child processes (Dask nannies/workers), children first."""
    import psutil

    with contextlib.suppress(psutil.Error):
        kids = psutil.Process().children(recursive=True)
        for k in reversed(kids):
            with contextlib.suppress(psutil.Error):
                k.kill()


@contextlib.contextmanager
def exit_on_signal(server: subprocess.Popen | None) -> Iterator[None]:
    """While active, SIGINT / SIGTERM stop the server (its process group) and our worker processes, then exit
    with 130 / 143 at once: Prefect's engine and Dask would otherwise keep waiting on running futures."""
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        sys.stderr.write("\ninterrupted: stopping workers and the Prefect server\n")
        if server is not None:
            with contextlib.suppress(Exception):
                stop_server(server, grace_s=3)
        _kill_children()
        os._exit(128 + signum)

    for sig in old:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def prefect_api(home: Path) -> Iterator[str]:
    """Yield the API URL for this run: the configured one, or a local server's (stopped on exit, Ctrl-C, SIGTERM)."""
    if os.environ.get("PREFECT_API_URL"):
        with exit_on_signal(None):
            yield os.environ["PREFECT_API_URL"]
        return
    proc, url = start_server(home)
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    try:
        os.environ.update({"PREFECT_API_URL": url, "PREFECT_HOME": str(home),
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        # the environment reaches the processes started from here (Dask workers); this process's Prefect read its
        # settings when it was imported, so they are overridden too (else its flows start an ephemeral server)
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: home}), exit_on_signal(proc):
            yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with contextlib.suppress(Exception):  # send the logs still queued for the API while it still answers
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)
        stop_server(proc)
