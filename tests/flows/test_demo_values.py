"""Behaviour kept through refactors: a short demo run (every stage and branch of the embedded default, real
command, Prefect, Dask and Parquet) gives the metric values the code gave before (``tests/data/demo-values``,
written by ``tests/flows/demo_reference.py``; first on the code before the configuration and structure refactor,
rewritten when the demo's behaviour changed on purpose: the mask-supervised OOD share and the automatic masks'
refinement round in ``tiny-demo``), and one command parses its manifest and config once and prepares the run
directory once."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

import flows.dataset
import flows.precheck
import innout_core.config
from tests.flows.demo_reference import (FRAMES, SHORT_DEMO_CONFIG, VIDEOS, build_short_demo, read_values,
                                        run_command, to_records)
from tests.flows.inprocess import isolated_cli

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "demo-values" / "reference.json"
#: Float tolerance: the same machine gives the same bits; another CPU's vector width may move the last digits of
#: a few-step optimisation (measured between AVX2 and AVX-512 renders: a few ulps).
ATOL = 1e-4
#: Columns compared loosely: a null metric's reason names where this machine looks for weights (its home).
MACHINE_TEXT = ("reason",)


def _differences(got: list[dict], want: list[dict]) -> list[str]:
    if len(got) != len(want):
        return [f"{len(got)} rows, the reference has {len(want)}"]
    out = []
    for i, (g, w) in enumerate(zip(got, want)):
        if set(g) != set(w):
            out.append(f"row {i}: columns {sorted(set(g) ^ set(w))} differ")
            continue
        where = f"row {i} ({g['video']} {g['method']} {g['variant']} {g['edit']} frame {g['frame']})"
        for k, wv in w.items():
            gv = g[k]
            if k in MACHINE_TEXT:
                if (gv is None) != (wv is None):
                    out.append(f"{where}: {k} {gv!r} != {wv!r}")
            elif isinstance(wv, float) and isinstance(gv, (int, float)):
                if not math.isclose(gv, wv, rel_tol=0, abs_tol=ATOL):
                    out.append(f"{where}: {k} {gv!r} != {wv!r}")
            elif gv != wv:
                out.append(f"{where}: {k} {gv!r} != {wv!r}")
    return out


def test_differences_are_found():
    row = {"video": "v", "method": "innout", "variant": "user-masks", "edit": "", "frame": 0, "psnr": 30.0,
           "reason": ""}
    assert _differences([row], [row]) == []
    assert _differences([{**row, "psnr": 30.0 + 2 * ATOL}], [row]) == [
        "row 0 (v innout user-masks  frame 0): psnr 30.0002 != 30.0"]
    assert _differences([{**row, "reason": None}], [row]) and _differences([{**row, "method": "w+"}], [row])
    assert _differences([], [row]) == ["0 rows, the reference has 1"]


@pytest.mark.slow
def test_short_demo_gives_the_reference_values(tmp_path, monkeypatch):
    ref = json.loads(REFERENCE.read_text())
    assert (ref["config"], ref["videos"], ref["frames"]) == (SHORT_DEMO_CONFIG, VIDEOS, FRAMES)
    manifest, config = build_short_demo(tmp_path)
    calls: Counter[str] = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for module in (innout_core.config, flows.dataset, flows.precheck):
        for name in ("load_manifest", "load_config", "prepare_run"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    with isolated_cli():
        assert run_command(tmp_path, manifest, config) == 0
    assert calls == {"load_manifest": 1, "load_config": 1, "prepare_run": 1}, calls
    got = to_records(read_values(tmp_path))
    assert any(r["method"] == "innout" and r["variant"] == "user-masks" for r in got)  # every branch ran
    problems = _differences(got, ref["rows"])
    assert not problems, "\n".join(problems[:20])
