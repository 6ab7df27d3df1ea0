"""Tables 1–3 from metrics rows: values against hand-computed means, best marking, formats."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from reports.tables import build_tables, to_csv, to_latex, to_markdown


def _rows() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for video, n_frames in (("a", 3), ("b", 5)):  # unequal frame counts: mean of means != pooled mean
        for method, variant, base in (("innout", "no-masks", 30.0), ("w+", "", 20.0), ("innout", "w/o L_b", 31.0)):
            for mode, frames in (("video", range(n_frames)), ("image", [0])):
                for f in frames:
                    psnr = base + rng.normal()
                    rows.append(
                        dict(run="r", video=video, method=method, variant=variant, mode=mode, frame=f, edit="",
                             lpips=0.1 + 0.01 * f, ssim=0.8, psnr=psnr, id_sim=0.9, id_sim_edit=np.nan,
                             seconds=10.0 if method == "w+" else 100.0, reason=None)
                    )
                    for edit, sim in (("smile", 0.95), ("younger", 0.85), ("remove_ood", 0.1)):
                        rows.append(
                            dict(run="r", video=video, method=method, variant=variant, mode=mode, frame=f,
                                 edit=edit, lpips=np.nan, ssim=np.nan, psnr=np.nan, id_sim=np.nan,
                                 id_sim_edit=sim - (0.1 if method == "w+" else 0.0),
                                 seconds=10.0, reason=None)
                        )
    return pd.DataFrame(rows)


def test_table1_mean_of_video_means_and_best():
    df = _rows()
    t1, _, _ = build_tables(df)
    sub = df[(df.method == "innout") & (df.variant == "no-masks") & (df["mode"] == "video") & (df.edit == "")]
    expected = sub.groupby("video")["psnr"].mean().mean()
    assert t1.data.loc["In-N-Out (no-masks)", ("Videos", "PSNR")] == pytest.approx(expected, abs=1e-12)
    pooled = sub["psnr"].mean()
    assert not math.isclose(expected, pooled, abs_tol=1e-9)  # the test distinguishes the two aggregations
    assert "In-N-Out (w/o L_b)" not in t1.data.index  # ablations live in Table 3
    best = t1.best()
    assert best[("Videos", "PSNR")] == "In-N-Out (no-masks)"
    assert best[("Videos", "Time (s)")] == "W+"
    assert t1.data.index[0].startswith("In-N-Out")  # paper order: ours first


def test_table2_average_over_edits():
    _, t2, _ = build_tables(_rows())
    assert t2.data.loc["W+", ("Videos", "average")] == pytest.approx(0.8, abs=1e-12)  # remove_ood not averaged
    assert ("Videos", "remove_ood") not in t2.data.columns
    assert t2.data.loc["In-N-Out (no-masks)", ("Images", "smile")] == pytest.approx(0.95)
    assert t2.best()[("Videos", "average")] == "In-N-Out (no-masks)"


def test_table3_l2_from_psnr():
    df = _rows()
    _, _, t3 = build_tables(df)
    sub = df[(df.variant == "w/o L_b") & (df["mode"] == "video") & (df.edit == "")].copy()
    sub["mse"] = 10 ** (-sub.psnr / 10)
    assert t3.data.loc["w/o L_b", ("Inversion", "L2")] == pytest.approx(sub.groupby("video").mse.mean().mean())
    assert list(t3.data.index) == ["w/o L_b", "Full method (no-masks)"]


def test_formats_agree_with_numbers():
    t1, _, _ = build_tables(_rows())
    csv = pd.read_csv(io.StringIO(to_csv(t1)), index_col=0)
    assert csv.loc["W+", "Videos/PSNR"] == pytest.approx(t1.data.loc["W+", ("Videos", "PSNR")], rel=1e-5)
    md = to_markdown(t1)
    best = t1.data.loc["In-N-Out (no-masks)", ("Videos", "PSNR")]
    assert f"**{best:.2f}**" in md
    tex = to_latex(t1)
    assert rf"\textbf{{{best:.2f}}}" in tex and tex.count(r"\\") == 2 + len(t1.data)


def test_missing_metric_is_dash_with_reason():
    df = _rows()
    df["id_sim"] = np.nan
    df["reason"] = "id_sim: insightface model pack not found"
    t1, _, _ = build_tables(df)
    md = to_markdown(t1)
    assert "| – |" in md or " – " in md
    assert any("insightface model pack not found" in n for n in t1.notes)


def test_missing_columns_is_clear():
    from innout_core.errors import BadInputError

    with pytest.raises(BadInputError, match="lacks columns"):
        build_tables(pd.DataFrame({"video": ["a"]}))


def test_ground_truth_table_only_with_clean_frames_and_hand_computed():
    df = _rows()
    assert len(build_tables(df)) == 3  # no psnr_clean column: no ground-truth table
    df["psnr_clean"], df["occluded"] = np.nan, None
    assert len(build_tables(df)) == 3  # the column but no value (no ground-truth video): none either
    rng = np.random.default_rng(1)
    df["occluded"] = df["frame"] % 2 == 0
    mask = (df["mode"] == "video") & ((df["edit"] == "") | ((df["edit"] == "remove_ood") & (df["method"] == "innout")))
    df.loc[mask, "psnr_clean"] = 20 + rng.uniform(0, 10, int(mask.sum()))
    gt = build_tables(df)[3]
    assert gt.name == "table_gt"
    sel = df[mask & df["occluded"] & (df["method"] == "innout") & (df["variant"] == "no-masks")
             & (df["edit"] == "remove_ood")]
    want = sel.groupby("video")["psnr_clean"].mean().mean()  # mean over frames per video, then over videos
    from reports.labels import method_label

    assert gt.data.loc[method_label("innout", "no-masks"), ("Occluded frames", "PSNR removal")] == pytest.approx(want)
    every = df[mask & (df["method"] == "w+") & (df["edit"] == "")].groupby("video")["psnr_clean"].mean().mean()
    assert gt.data.loc["W+", ("All frames", "PSNR reconstruction")] == pytest.approx(every)
    assert math.isnan(gt.data.loc["W+", ("All frames", "PSNR removal")])  # W+ has no removal
    assert "PSNR" in to_markdown(gt) and "| W+ |" in to_markdown(gt)
