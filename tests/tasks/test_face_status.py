"""The face stage's per-frame status travels into metrics.parquet (``face_status``) and onto the report's per-frame
plots (frames not detected are shaded)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.patches import Rectangle

import reports.plots as plots
from innout_core import store

STATUS = ["ok", "predicted", "predicted", "filled", "ok", "no_face"]


def _rows(status: list[str | None]) -> list[dict]:
    return [dict(run="r", video="v", method="w+", variant="", mode="video", frame=10 + i, edit="", lpips=None,
                 ssim=0.5, psnr=20.0 + i, id_sim=None, id_sim_edit=None, seconds=1.0, reason=None, face_status=s)
            for i, s in enumerate(status)]


def test_face_status_column_round_trips_and_old_rows_read_null(tmp_path):
    path = store.write_metrics(tmp_path / "metrics.parquet", _rows(STATUS), {"psnr": "dB"})
    table, _ = store.read_metrics(path)
    assert table.column("face_status").to_pylist() == STATUS
    assert pq.read_schema(path).metadata[b"innout.schema_version"] == b"3"
    legacy = [{k: v for k, v in r.items() if k != "face_status"} for r in _rows(STATUS)]
    table, _ = store.read_metrics(store.write_metrics(tmp_path / "old.parquet", legacy, {"psnr": "dB"}))
    assert table.column("face_status").to_pylist() == [None] * len(STATUS)


def test_per_frame_plot_shades_frames_not_detected(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    df = pd.DataFrame(_rows(STATUS))
    assert plots.per_frame_plot(df, "v", tmp_path / "p.png") == tmp_path / "p.png"
    ax = figs[0].axes[0]
    spans = sorted(round(p.get_x() + p.get_width() / 2) for p in ax.patches if isinstance(p, Rectangle))
    assert spans == [11, 12, 13, 15]  # predicted, predicted, filled, no_face; ok frames 10 and 14 not shaded
    title = figs[0]._suptitle.get_text()
    assert "2 predicted" in title and "1 filled" in title and "1 no_face" in title
    labels = [t.get_text() for t in figs[0].axes[-1].get_legend().get_texts()]
    assert {"face predicted", "face filled", "face no_face"} <= set(labels)

    figs.clear()
    plots.per_frame_plot(pd.DataFrame(_rows([None] * 4)), "v", tmp_path / "q.png")  # runs before the column
    assert not figs[0].axes[0].patches and "without a detected face" not in figs[0]._suptitle.get_text()
    np.testing.assert_array_equal(figs[0].axes[0].lines[0].get_ydata(), [20.0, 21.0, 22.0, 23.0])


def test_ground_truth_columns_round_trip_and_rows_without_them_read_null(tmp_path):
    rows = [dict(r, psnr_clean=30.0 + i, occluded=i % 2 == 0) for i, r in enumerate(_rows(STATUS))]
    table, defs = store.read_metrics(store.write_metrics(tmp_path / "gt.parquet", rows, None))
    assert table.column("psnr_clean").to_pylist() == [30.0 + i for i in range(len(STATUS))]
    assert table.column("occluded").to_pylist() == [i % 2 == 0 for i in range(len(STATUS))]
    assert "clean frame" in defs["psnr_clean"] and "masks" in defs["occluded"]
    table, _ = store.read_metrics(store.write_metrics(tmp_path / "plain.parquet", _rows(STATUS), {"psnr": "dB"}))
    assert table.column("psnr_clean").to_pylist() == [None] * len(STATUS)
