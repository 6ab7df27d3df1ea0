"""Run a command (the local Prefect server) that dies with the process that started it.

Usage: ``python server_guard.py PARENT_PID [--no-deathsig] -- COMMAND...`` (started by :func:`flows.server.start_server`
in a new session, so the guard leads the process group that ``stop_server`` signals). The guard

- asks the kernel (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``) to signal it when its parent dies, and starts
  COMMAND with the same request towards the guard, so a SIGKILLed ``innout run`` takes the server down at once;
- also polls its parent pid every ``POLL_S`` (the fallback where there is no parent-death signal, or when the
  parent dies before the request is made): when the parent is gone it stops COMMAND;
- stops COMMAND with SIGTERM, then SIGKILL after ``GRACE_S``, on SIGTERM / SIGINT / SIGHUP;
- exits with COMMAND's exit code when COMMAND ends by itself.

Standard library only, and run by path: it must start without the project on ``sys.path``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys

POLL_S = 0.5
GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(prctl=_prctl()) -> bool:
    """Ask for SIGTERM when the parent dies (Linux); False where that is not available."""
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0


def _stop(child: subprocess.Popen) -> int:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    parent = int(opts[0])
    deathsig = "--no-deathsig" not in opts
    if deathsig:
        die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return 0
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGHUP, lambda *_: stopping.append(1))
    prctl = _prctl() if deathsig else None
    # preexec_fn is safe here: this process has one thread
    child = subprocess.Popen(cmd, preexec_fn=(lambda: die_with_parent(prctl)) if prctl is not None else None)
    while True:
        try:
            rc = child.wait(POLL_S)
            return rc if rc >= 0 else 128 - rc
        except subprocess.TimeoutExpired:
            pass
        if stopping or os.getppid() != parent:
            _stop(child)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
