"""The run report: built from the run directory alone, rendered in headless Chromium without errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from innout_core.store import StageFailure, StageRecord, write_metrics, write_record
from reports.html import PAGE_SIZE, collect_videos, write_report
from reports.tables import write_tables

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DEFS = {"psnr": "PSNR, data range 2 on [-1,1] images", "lpips": "LPIPS alex v0.1, 512x512, [-1,1]"}


def _rows(video: str, rng: np.random.Generator) -> list[dict]:
    rows = []
    for method, variant in (("innout", "no-masks"), ("w+", ""), ("pti", "")):
        for frame in range(3):
            rows.append(dict(run="demo", video=video, method=method, variant=variant, mode="video", frame=frame,
                             edit="", lpips=float(rng.uniform(0.1, 0.4)), ssim=float(rng.uniform(0.5, 0.9)),
                             psnr=float(rng.uniform(15, 30)), id_sim=None, id_sim_edit=None, seconds=12.5,
                             reason="id_sim: insightface model pack not found"))
    return rows


def _make_run(root: Path, n_videos: int, with_media: bool = True) -> Path:
    run = root / "demo"
    rng = np.random.default_rng(1)
    (run).mkdir(parents=True)
    (run / "run.yaml").write_text("code_version: test\npipeline:\n  preset: tiny-demo\n  device: cpu\n"
                                  "  innout_variants: [no-masks, w/o L_b]\n")
    for i in range(n_videos):
        name = f"vid{i:03d}"
        write_metrics(run / "videos" / name / "metrics.parquet", _rows(name, rng), definitions=DEFS)
        rec = StageRecord(stage="frames", video=name, status="done", seconds=1.5)
        write_record(run / "videos" / name / "frames", rec)
        if with_media and i < 2:
            media = run / "videos" / name / "encode"
            media.mkdir()
            for stem in ("compare-methods", "wo-Lb", "no-masks", "no-masks-smile", "no-masks-remove_ood",
                         "blend-wo-Lb", "blend-no-masks", "truth-mask"):
                subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5",
                                "-t", "1", "-pix_fmt", "yuv420p", str(media / f"{stem}.mp4")], check=True)
    bad = run / "videos" / "broken"
    write_record(bad / "frames", StageRecord(stage="frames", video="broken", status="failed", error=StageFailure(
        file="broken.mp4", stage="frames", message="zero-byte file")))
    return run


def test_collect_videos_reads_status_media_and_errors(tmp_path):
    run = _make_run(tmp_path, 2)
    entries = {e.name: e for e in collect_videos(run, run / "report")}
    assert entries["broken"].status == "failed" and "zero-byte file" in entries["broken"].errors[0]
    assert entries["vid000"].status == "done"
    captions = [c for c, _, _ in entries["vid000"].media]
    assert captions == ["input | W+ | PTI | In-N-Out | removal (| clean truth)", "In-N-Out (no-masks) reconstruction", "edit: smile",
                        "OOD removed", "OOD blend weight (white = OOD)", "true occluder mask"]
    assert sorted(c for c, _, _ in entries["vid000"].more_media) == ["blend · wo · Lb", "wo · Lb"]
    media = entries["vid000"].media + entries["vid000"].more_media
    assert all((run / "report" / rel).resolve().exists() for _, _, rel in media)


def test_face_stage_warnings_reach_the_report(tmp_path):
    """Frames without a face at the ends (trimmed/held) are warned in the report, per video and in a run list."""
    run = _make_run(tmp_path, 2, with_media=False)
    warning = "frames 0-4 have no face: trimmed (face.ends='trim')"
    write_record(run / "videos" / "vid001" / "face", StageRecord(
        stage="face", video="vid001", status="done", info={"n_frames": 3, "warnings": [warning]}))
    entries = {e.name: e for e in collect_videos(run, run / "report")}
    assert entries["vid001"].warnings == [f"face: {warning}"] and entries["vid000"].warnings == []
    page = write_report(run).read_text()
    warned = page.split("id='warnings'>", 1)[1].split("</ul>", 1)[0]
    assert "vid001" in warned and "vid000" not in warned and "trimmed (face.ends=&#x27;trim&#x27;)" in warned


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is installed by setup.sh; absent only off-setup")
def test_report_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    run = _make_run(tmp_path, 3)
    write_tables(run)
    # the report must come from the run directory alone: Parquet + media (+ records); nothing else is needed
    index = write_report(run)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.goto(index.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
        srcs = page.eval_on_selector_all("img, video", "els => els.map(e => e.getAttribute('src'))")
        cells = page.eval_on_selector_all(
            "#table1 tbody tr", "rows => rows.map(r => [r.querySelector('th').textContent,"
            " Array.from(r.querySelectorAll('td')).map(td => td.getAttribute('data-value'))])")
        failures = page.inner_text("#failures")
        # videos of an open section play (H.264 decodes in Chromium); those of closed sections stay unloaded
        page.wait_for_function("() => { const v = document.querySelector('details[open] .media video');"
                               " return v && !v.paused && v.readyState >= 2 && !v.error; }", timeout=15000)
        closed = page.eval_on_selector_all("details.more video", "vs => vs.map(v => v.readyState)")
        browser.close()
    assert problems == []
    assert closed and all(state == 0 for state in closed)
    assert (tmp_path / "shot.png").stat().st_size > 1000
    assert srcs and all((index.parent / s).resolve().is_file() for s in srcs)
    assert "zero-byte file" in failures
    # table numbers equal an independent aggregation of the Parquet values (mean over frames, then videos)
    import pandas as pd

    df = pd.concat(pd.read_parquet(p) for p in sorted(run.glob("videos/*/metrics.parquet")))
    by_label = dict(cells)
    for label, method in (("In-N-Out (no-masks)", "innout"), ("W+", "w+"), ("PTI", "pti")):
        expected = df[df.method == method].groupby("video").psnr.mean().mean()
        psnr_cell = by_label[label][7]  # Videos group: LPIPS, SSIM, PSNR -> 5 image columns + 2
        assert float(psnr_cell) == pytest.approx(expected, rel=1e-12)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is installed by setup.sh; absent only off-setup")
def test_large_run_is_paged(tmp_path):
    from playwright.sync_api import sync_playwright

    run = _make_run(tmp_path, 105, with_media=False)
    index = write_report(run)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(index.as_uri())
        visible = page.eval_on_selector_all(".video-entry", "els => els.filter(e => e.style.display !== 'none').length")
        buttons = page.eval_on_selector_all("#pager button", "els => els.length")
        browser.close()
    assert visible == PAGE_SIZE
    assert buttons == -(-106 // PAGE_SIZE)
