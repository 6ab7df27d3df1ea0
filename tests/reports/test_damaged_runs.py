"""Tables and report from a damaged run: every readable video tabulated, missing and unreadable files named,
stale plots and tables of an earlier build removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from innout_core.errors import BadInputError
from innout_core.store import StageRecord, write_metrics, write_record
from reports.html import collect_videos, write_report
from reports.runmetrics import METRICS_STAGE, collect_metrics
from reports.tables import TABLE_FILES, write_tables

VIDEOS = ("a", "b", "c", "d")


def _rows(video: str, rng: np.random.Generator) -> list[dict]:
    rows = []
    for method, variant in (("innout", "no-masks"), ("w+", "")):
        for frame in range(2 + VIDEOS.index(video)):  # unequal frame counts: mean of video means != pooled mean
            rows.append(dict(run="r", video=video, method=method, variant=variant, mode="video", frame=frame,
                             edit="", lpips=float(rng.uniform(0.1, 0.4)), ssim=float(rng.uniform(0.5, 0.9)),
                             psnr=float(rng.uniform(15, 30)), id_sim=None, id_sim_edit=None, seconds=3.0,
                             reason=None))
    return rows


def _make_run(root: Path) -> Path:
    """A finished run of four videos (metrics stage done, Parquet written) with tables built once."""
    run = root / "run"
    rng = np.random.default_rng(7)
    for v in VIDEOS:
        write_metrics(run / "videos" / v / "metrics.parquet", _rows(v, rng), definitions={"psnr": "PSNR"})
        write_record(run / "videos" / v / METRICS_STAGE, StageRecord(stage=METRICS_STAGE, video=v, status="done"))
    write_tables(run)
    write_report(run)
    return run


def _damage(run: Path) -> None:
    """b: Parquet deleted (its metrics stage still says done); c: Parquet truncated to garbage."""
    (run / "videos" / "b" / "metrics.parquet").unlink()
    data = (run / "videos" / "c" / "metrics.parquet").read_bytes()
    (run / "videos" / "c" / "metrics.parquet").write_bytes(data[: len(data) // 3])


def test_collect_metrics_reads_the_rest_and_names_the_damaged(tmp_path):
    run = _make_run(tmp_path)
    _damage(run)
    (run / "videos" / "e" / "frames").mkdir(parents=True)  # a video still running: not left out, just unfinished
    m = collect_metrics(run)
    assert sorted(m.files) == ["a", "d"]
    assert sorted(m.frame["video"].unique()) == ["a", "d"]
    assert [(v.video, v.problem, v.file) for v in m.left_out] == [
        ("b", "missing", "videos/b/metrics.parquet"), ("c", "unreadable", "videos/c/metrics.parquet")]
    assert "metrics stage is done" in m.left_out[0].reason and "\n" not in m.left_out[1].reason
    assert m.notes()[0] == "2 video(s) tabulated; 2 left out (b, c):"


def test_tables_from_a_damaged_run(tmp_path):
    run = _make_run(tmp_path)
    plots = run / "tables" / "plots"
    assert {p.name for p in plots.glob("per_frame_*.png")} == {f"per_frame_{v}.png" for v in VIDEOS}
    _damage(run)
    written = write_tables(run)
    # the readable videos' numbers: mean over frames per video, then over the videos a and d only
    df = pd.concat(pd.read_parquet(run / "videos" / v / "metrics.parquet") for v in ("a", "d"))
    expected = df[df.method == "w+"].groupby("video").psnr.mean().mean()
    csv = pd.read_csv(written["table1.csv"], index_col="method")
    assert csv.loc["W+", "Videos/PSNR"] == pytest.approx(expected, rel=1e-5)
    md = (run / "tables" / "table1.md").read_text()
    assert "- Left out: video b: its metrics stage is done but videos/b/metrics.parquet is missing" in md
    assert "- Left out: video c: videos/c/metrics.parquet is unreadable" in md
    # the plots of videos left out are gone, those of the tabulated ones rewritten
    assert {p.name for p in plots.glob("*.png")} == {"distributions.png", "per_frame_a.png", "per_frame_d.png"}
    assert all(k in written for k in ("plots/per_frame_a.png", "plots/per_frame_d.png"))


def test_report_lists_left_out_videos_and_no_stale_plots(tmp_path):
    run = _make_run(tmp_path)
    _damage(run)
    write_tables(run)
    page = write_report(run).read_text()
    left_out = page[page.index("<ul id='left-out'>"):]
    left_out = left_out[: left_out.index("</ul>")]
    assert "<b>b</b>" in left_out and "<b>c</b>" in left_out and "<b>a</b>" not in left_out
    assert "per_frame_b.png" not in page and "per_frame_a.png" in page
    assert "2 left out of the tables" in page
    statuses = {e.name: e.status for e in collect_videos(run, run / "report")}
    assert statuses["b"] == "done"  # its stages are done; the missing file is what the report names


def test_every_video_unreadable_clears_old_tables(tmp_path):
    run = _make_run(tmp_path)
    for v in VIDEOS:
        (run / "videos" / v / "metrics.parquet").write_bytes(b"PAR1 not really parquet")
    written = write_tables(run)
    assert list(written) == ["tables.md"]
    assert sorted(p.name for p in (run / "tables").iterdir() if p.is_file()) == ["tables.md"]
    assert not list((run / "tables" / "plots").glob("*.png"))
    text = (run / "tables" / "tables.md").read_text()
    assert text.startswith("### No tables") and all(f"Left out: video {v}:" in text for v in VIDEOS)
    assert set(TABLE_FILES) - {"tables.md"} == {f"table{i}.{e}" for i in ("1", "2", "3", "_gt") for e in ("md", "csv", "tex")}
    page = write_report(run).read_text()
    assert "<h2>Tables</h2>" not in page and page.count("<li><b>") >= len(VIDEOS)


def test_other_schema_version_is_unreadable_not_fatal(tmp_path):
    run = _make_run(tmp_path)
    pd.DataFrame({"video": ["d"], "psnr": [20.0]}).to_parquet(run / "videos" / "d" / "metrics.parquet")
    m = collect_metrics(run)
    assert sorted(m.files) == ["a", "b", "c"]
    assert [v.video for v in m.left_out] == ["d"] and "schema version" in m.left_out[0].reason


def test_run_without_metrics_is_bad_input(tmp_path):
    (tmp_path / "run" / "videos" / "a" / "frames").mkdir(parents=True)
    with pytest.raises(BadInputError, match="no videos/\\*/metrics.parquet found"):
        write_tables(tmp_path / "run")


def test_metrics_stage_name_matches_the_task():
    from tasks.metrics import STAGE

    assert METRICS_STAGE == STAGE


def test_run_caveats_from_metric_definitions_are_table_notes(tmp_path):
    """L_D without a depth map (recorded by the metrics stage in the Parquet definitions) is a note of every table,
    naming exactly the videos it applies to; videos without it add no note."""
    run = tmp_path / "run"
    rng = np.random.default_rng(3)
    caveat = "L_D configured (lambda_D 0.1) but no depth map was given: not applied"
    for v in VIDEOS:
        defs = {"psnr": "PSNR", **({"L_D (single image)": caveat} if v in ("a", "c") else {})}
        write_metrics(run / "videos" / v / "metrics.parquet", _rows(v, rng), definitions=defs)
    metrics = collect_metrics(run)
    assert metrics.caveats == {f"L_D (single image): {caveat}": ["a", "c"]}
    write_tables(run)
    note = f"L_D (single image): {caveat} (videos: a, c)"
    for name in ("table1.md", "table2.md", "tables.md"):  # notes go with the markdown (CSV/LaTeX: numbers only)
        assert note in (run / "tables" / name).read_text(), name
    assert note in write_report(run).read_text()
    write_metrics(run / "videos" / "a" / "metrics.parquet", _rows("a", rng), definitions={"psnr": "PSNR"})
    write_metrics(run / "videos" / "c" / "metrics.parquet", _rows("c", rng), definitions={"psnr": "PSNR"})
    write_tables(run)
    assert "L_D" not in (run / "tables" / "table1.md").read_text()
