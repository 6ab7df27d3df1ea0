"""bench/child.py: the one ``--child`` harness (a script re-run in its own process, its JSON read back)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.child import ChildFailed, run_child  # noqa: E402

SCRIPT = '''
import json, os, sys
sys.path.insert(0, {repo!r})
from bench.child import reply
args = sys.argv[1:]
assert args[0] == "--child"
spec = json.loads(args[1])
if spec.get("fail"):
    sys.stderr.write("boom from the child\\n")
    raise SystemExit(3)
print("noise before the answer")
raise SystemExit(reply({{"pid": os.getpid(), "spec": spec, "extra": args[2:]}}))
'''


@pytest.fixture()
def script(tmp_path: Path) -> Path:
    p = tmp_path / "bench_script.py"
    p.write_text(SCRIPT.format(repo=str(REPO)))
    return p


def test_child_runs_in_its_own_process_and_its_last_line_is_read(script: Path) -> None:
    import os

    out = run_child(script, '{"a": 1}', "--threads", "2")
    assert out["spec"] == {"a": 1} and out["extra"] == ["--threads", "2"] and out["pid"] != os.getpid()


def test_failed_child_exits_with_its_name_and_stderr(script: Path, capsys) -> None:
    with pytest.raises(ChildFailed, match=r"exit 3\): tiny stage A") as err:
        run_child(script, '{"fail": true}', what="tiny stage A")
    assert isinstance(err.value, SystemExit)  # uncaught, the benchmark exits non-zero with the message
    assert "boom from the child" in capsys.readouterr().err
