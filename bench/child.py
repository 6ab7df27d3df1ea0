"""The ``--child`` harness of the benchmarks: run a script again in a fresh process and read the JSON it prints.

A measurement in its own process has its own peak RSS and no state left by the previous one. The parent calls
:func:`run_child`; the script's ``main`` answers ``--child <arg>`` with :func:`reply` (one JSON line on stdout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ChildFailed", "reply", "run_child"]


class ChildFailed(SystemExit):
    """A child exited non-zero (its stderr tail was written to ours); uncaught, the parent exits with the message."""


def run_child(script: str | Path, arg: str, *extra: str, what: str | None = None) -> Any:
    """Run ``python <script> --child <arg> <extra...>`` and return the JSON of the last line it printed.

    Args:
        script: the benchmark script (usually ``__file__``).
        arg: the ``--child`` value (a name, or a JSON spec).
        extra: further command-line arguments for the child.
        what: how a failure names the measurement (default: ``arg``).
    Raises:
        ChildFailed: the child exited non-zero; the last 4000 characters of its stderr go to our stderr.
    """
    proc = subprocess.run([sys.executable, str(script), "--child", arg, *extra], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise ChildFailed(f"child failed (exit {proc.returncode}): {what or arg}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reply(result: Any) -> int:
    """The child's side: print ``result`` as one JSON line (what :func:`run_child` reads); returns exit status 0."""
    print(json.dumps(result))
    return 0
