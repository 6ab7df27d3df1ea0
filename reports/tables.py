"""The paper's Tables 1–3, rebuilt from the per-video Parquet files alone.

Input: ``runs/<run>/videos/*/metrics.parquet`` (schema in :mod:`innout_core.store`): one row per
(method, variant, mode, frame, edit), and the metrics stage records only to tell a missing file. Every readable
video is tabulated; videos left out (file missing or unreadable, :mod:`reports.runmetrics`) are named in the notes.

Aggregation follows the paper: the mean over a video's frames, then the mean over videos.

* **Table 1** (reconstruction): LPIPS, SSIM, PSNR, identity similarity and time per method, for single images
  (``mode == "image"``, the first frame) and for videos. Ablation variants are left out (they are Table 3).
* **Table 2** (identity after editing): ArcFace cosine between the inverted and the edited frame (``id_sim_edit``)
  per semantic edit, plus the average over edits, for images and videos (OOD removal and novel views are not
  semantic edits and are left out).
* **Table 3** (ablation): for In-N-Out variants, reconstruction L2 and LPIPS and the editing identity average.
  L2 is the mean squared error of images in [0, 1], derived exactly from each frame's PSNR
  (``psnr`` uses data range 1 on [0, 1] images, so ``mse = 10 ** (-psnr / 10)``).

* **Ground truth** (``table_gt``, only when the run has ground-truth videos, manifest ``clean:``): PSNR against
  the clean frames without the occluder (``psnr_clean``) of every method's reconstruction and of In-N-Out's OOD
  removal, on occluded frames (``occluded``) and on all frames -- the figure a user of occluder removal cares
  about; not a column of the paper.

Each table is written as Markdown (best value in bold), CSV (plain numbers) and LaTeX (best value in \\textbf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from innout_core.errors import BadInputError
from reports.labels import ABLATION_VARIANTS, METHOD_LABELS, METHOD_ORDER, NON_SEMANTIC_EDITS, method_label
from reports.runmetrics import RunMetrics, collect_metrics

__all__ = [
    "ABLATION_VARIANTS",
    "METHOD_LABELS",
    "NON_SEMANTIC_EDITS",
    "TABLE_FILES",
    "Table",
    "build_tables",
    "load_metrics",
    "write_tables",
    "method_label",
]

_RECON_METRICS = [("lpips", "LPIPS", "min"), ("ssim", "SSIM", "max"), ("psnr", "PSNR", "max"), ("id_sim", "ID", "max")]


@dataclass
class Table:
    """One table: a frame of numbers (rows = methods) plus, per column, which direction is better.

    ``columns`` is a list of (group, metric) pairs; ``better[col]`` is ``"min"``, ``"max"`` or ``None`` (no best
    marking, e.g. a count).
    """

    name: str
    title: str
    data: pd.DataFrame
    better: dict[tuple[str, str], str | None]
    notes: list[str] = field(default_factory=list)

    def best(self) -> dict[tuple[str, str], str | None]:
        """The row label holding the best value of each column (None for empty columns)."""
        out: dict[tuple[str, str], str | None] = {}
        for col, how in self.better.items():
            values = self.data[col].dropna() if col in self.data else pd.Series(dtype=float)
            if how is None or values.empty:
                out[col] = None
            else:
                out[col] = values.idxmin() if how == "min" else values.idxmax()
        return out


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The rows of every readable ``videos/*/metrics.parquet`` of a run as one frame (see :func:`collect_metrics`
    for the videos left out). Raises BadInputError when no file could be read."""
    metrics = collect_metrics(run_dir)
    if metrics.frame is None:
        raise BadInputError(_nothing_to_tabulate(metrics), Path(run_dir))
    return metrics.frame


def _nothing_to_tabulate(metrics: RunMetrics) -> str:
    if not metrics.left_out:
        return "no videos/*/metrics.parquet found: has the run finished any video?"
    return "no readable metrics: " + "; ".join(v.note() for v in metrics.left_out)


def _per_video(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Mean over frames within each video, then mean over videos, per ``keys``."""
    per_video = df.groupby(keys + ["video"], dropna=False)[values].mean()
    return per_video.groupby(level=list(range(len(keys))), dropna=False).mean()


def _order_rows(labels: list[tuple[str, str]]) -> list[tuple[str, str]]:
    def key(mv: tuple[str, str]) -> tuple[int, str]:
        m, v = mv
        return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), v)

    return sorted(labels, key=key)


def _table1(df: pd.DataFrame) -> Table:
    recon = df[(df["edit"] == "") & ~df["variant"].isin(ABLATION_VARIANTS)]
    values = [m for m, _, _ in _RECON_METRICS] + ["seconds"]
    rows = _order_rows(sorted({(m, v) for m, v in zip(recon["method"], recon["variant"])}))
    cols: list[tuple[str, str]] = []
    better: dict[tuple[str, str], str | None] = {}
    data: dict[tuple[str, str], list[float]] = {}
    for mode, group in (("image", "Images"), ("video", "Videos")):
        sub = recon[recon["mode"] == mode]
        agg = _per_video(sub, ["method", "variant"], values) if not sub.empty else None
        for metric, label, how in _RECON_METRICS + [("seconds", "Time (s)", "min")]:
            col = (group, label)
            cols.append(col)
            better[col] = how
            data[col] = [
                float(agg.loc[(m, v), metric]) if agg is not None and (m, v) in agg.index else math.nan for m, v in rows
            ]
    frame = pd.DataFrame(data, index=[method_label(m, v) for m, v in rows], columns=pd.MultiIndex.from_tuples(cols))
    notes = [
        "Mean over frames per video, then over videos. Images = first frame only; Videos = all frames.",
        "Time = wall seconds of the method per video (inversion and, for In-N-Out, stages A and B).",
    ]
    return Table("table1", "Table 1. Reconstruction quality", frame, better, notes)


def _table2(df: pd.DataFrame) -> Table:
    edits_df = df[(df["edit"] != "") & ~df["edit"].isin(NON_SEMANTIC_EDITS) & ~df["variant"].isin(ABLATION_VARIANTS)]
    edits = sorted(e for e in edits_df["edit"].unique() if e)
    rows = _order_rows(sorted({(m, v) for m, v in zip(edits_df["method"], edits_df["variant"])}))
    cols: list[tuple[str, str]] = []
    better: dict[tuple[str, str], str | None] = {}
    data: dict[tuple[str, str], list[float]] = {}
    for mode, group in (("image", "Images"), ("video", "Videos")):
        sub = edits_df[edits_df["mode"] == mode]
        agg = _per_video(sub, ["method", "variant", "edit"], ["id_sim_edit"]) if not sub.empty else None
        per_edit: dict[str, list[float]] = {}
        for edit in edits:
            col = (group, edit)
            cols.append(col)
            better[col] = "max"
            per_edit[edit] = [
                float(agg.loc[(m, v, edit), "id_sim_edit"])
                if agg is not None and (m, v, edit) in agg.index
                else math.nan
                for m, v in rows
            ]
            data[col] = per_edit[edit]
        col = (group, "average")
        cols.append(col)
        better[col] = "max"
        data[col] = [_nanmean([per_edit[e][i] for e in edits]) for i in range(len(rows))]
    frame = pd.DataFrame(data, index=[method_label(m, v) for m, v in rows], columns=pd.MultiIndex.from_tuples(cols))
    notes = ["Identity similarity (ArcFace cosine) between the inverted and the edited frame; higher is better."]
    return Table("table2", "Table 2. Identity preservation after editing", frame, better, notes)


def _table3(df: pd.DataFrame) -> Table:
    ours = df[df["method"] == "innout"].copy()
    ours["l2"] = np.power(10.0, -ours["psnr"].astype(float) / 10.0)
    variants = sorted(ours["variant"].unique(), key=lambda v: (v not in ABLATION_VARIANTS, v))
    recon = ours[ours["edit"] == ""]
    edits = ours[(ours["edit"] != "") & ~ours["edit"].isin(NON_SEMANTIC_EDITS)]
    vids = recon[recon["mode"] == "video"]
    agg_r = _per_video(vids, ["variant"], ["l2", "lpips"]) if not vids.empty else None
    ed = edits[edits["mode"] == "video"]
    agg_e = _per_video(ed, ["variant", "edit"], ["id_sim_edit"]) if not ed.empty else None
    cols = [("Inversion", "L2"), ("Inversion", "LPIPS"), ("Editing", "ID similarity")]
    better = {cols[0]: "min", cols[1]: "min", cols[2]: "max"}
    data: dict[tuple[str, str], list[float]] = {c: [] for c in cols}
    for v in variants:
        data[cols[0]].append(float(agg_r.loc[v, "l2"]) if agg_r is not None and v in agg_r.index else math.nan)
        data[cols[1]].append(float(agg_r.loc[v, "lpips"]) if agg_r is not None and v in agg_r.index else math.nan)
        if agg_e is not None and v in agg_e.index.get_level_values(0):
            data[cols[2]].append(float(agg_e.loc[v, "id_sim_edit"].mean()))
        else:
            data[cols[2]].append(math.nan)
    labels = [v if v in ABLATION_VARIANTS else f"Full method ({v})" if v else "Full method" for v in variants]
    frame = pd.DataFrame(data, index=labels, columns=pd.MultiIndex.from_tuples(cols))
    notes = [
        "Videos only. L2 = mean squared error on [0, 1] images, from each frame's PSNR (mse = 10^(-PSNR/10)).",
        "Editing = identity similarity averaged over the edits.",
    ]
    return Table("table3", "Table 3. Ablation", frame, better, notes)


def _table_ground_truth(df: pd.DataFrame) -> Table | None:
    """PSNR vs the clean truth (videos): reconstruction of every method, OOD removal of every In-N-Out variant, on
    occluded and on all frames. None when no row has ``psnr_clean`` (no ground-truth video)."""
    if "psnr_clean" not in df or df["psnr_clean"].isna().all():
        return None
    gt = df[(df["mode"] == "video") & df["psnr_clean"].notna()].copy()
    gt["occluded"] = gt["occluded"].astype("boolean").fillna(False) if "occluded" in gt else False
    kinds = {"": "PSNR reconstruction", "remove_ood": "PSNR removal"}
    gt = gt[gt["edit"].isin(list(kinds))]
    rows = _order_rows(sorted({(m, v) for m, v in zip(gt["method"], gt["variant"])}))
    cols = [(group, kind) for group in ("Occluded frames", "All frames") for kind in kinds.values()]
    data: dict[tuple[str, str], list[float]] = {c: [] for c in cols}
    for group in ("Occluded frames", "All frames"):
        sub = gt[gt["occluded"]] if group == "Occluded frames" else gt
        agg = _per_video(sub, ["method", "variant", "edit"], ["psnr_clean"]) if not sub.empty else None
        for edit, kind in kinds.items():
            data[(group, kind)] = [float(agg.loc[(m, v, edit), "psnr_clean"])
                                   if agg is not None and (m, v, edit) in agg.index else math.nan for m, v in rows]
    frame = pd.DataFrame(data, index=[method_label(m, v) for m, v in rows], columns=pd.MultiIndex.from_tuples(cols))
    notes = ["PSNR (dB) against the clean frames without the occluder; only for ground-truth videos (manifest "
             "'clean:'), not a figure of the paper. Occluded = the manifest's masks cover >= 1 % of the crop.",
             "Removal = In-N-Out's OOD removal (user masks: the release's rule; otherwise the OOD field off every "
             "ray); W / W+ / PTI have no removal, so their reconstruction is what they show of the face."]
    return Table("table_gt", "Ground truth. PSNR against the clean frames", frame,
                 {c: "max" for c in cols}, notes)


def _nanmean(xs: list[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return float(np.mean(vals)) if vals else math.nan


def _null_reasons(df: pd.DataFrame) -> list[str]:
    if "reason" not in df:
        return []
    reasons = sorted({r for r in df["reason"].dropna().unique() if r})
    return [f"Empty cells: {r}" for r in reasons]


def build_tables(df: pd.DataFrame) -> list[Table]:
    """Tables 1–3 from a metrics frame (the concatenated Parquet rows of a run), and the ground-truth table when
    the run has ground-truth videos."""
    required = {"video", "method", "variant", "mode", "frame", "edit", "lpips", "ssim", "psnr", "id_sim", "seconds"}
    missing = required - set(df.columns)
    if missing:
        raise BadInputError(f"metrics table lacks columns {sorted(missing)}")
    df = df.copy()
    df["variant"] = df["variant"].fillna("")
    df["edit"] = df["edit"].fillna("")
    if "id_sim_edit" not in df:
        df["id_sim_edit"] = np.nan
    for col in ("lpips", "ssim", "psnr", "id_sim", "id_sim_edit", "seconds"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "psnr_clean" in df:
        df["psnr_clean"] = pd.to_numeric(df["psnr_clean"], errors="coerce").astype(float)
    tables = [_table1(df), _table2(df), _table3(df)]
    gt = _table_ground_truth(df)
    if gt is not None:
        tables.append(gt)
    reasons = _null_reasons(df)
    for t in tables:
        t.notes.extend(reasons)
    return tables


def _fmt(x: float, metric: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if metric.startswith("Time"):
        return f"{x:.1f}"
    if metric.startswith("PSNR"):
        return f"{x:.2f}"
    return f"{x:.4f}"


def to_markdown(table: Table) -> str:
    """GitHub Markdown with a two-level header flattened to ``group / metric``; best values in bold."""
    best = table.best()
    cols = list(table.data.columns)
    head = "| method | " + " | ".join(f"{g} {m}" for g, m in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    lines = [f"### {table.title}", "", head, sep]
    for label, row in table.data.iterrows():
        cells = []
        for col in cols:
            s = _fmt(row[col], col[1])
            cells.append(f"**{s}**" if best.get(col) == label and s != "–" else s)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {n}" for n in table.notes)
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")


def to_latex(table: Table) -> str:
    """A booktabs tabular with the best value of each column in \\textbf."""
    best = table.best()
    cols = list(table.data.columns)
    groups: list[tuple[str, int]] = []
    for g, _ in cols:
        if groups and groups[-1][0] == g:
            groups[-1] = (g, groups[-1][1] + 1)
        else:
            groups.append((g, 1))
    lines = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule"]
    lines.append(" & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{_tex_escape(g)}}}" for g, n in groups) + r" \\")
    lines.append("Method & " + " & ".join(_tex_escape(m) for _, m in cols) + r" \\")
    lines.append(r"\midrule")
    for label, row in table.data.iterrows():
        cells = []
        for col in cols:
            s = _fmt(row[col], col[1]).replace("–", "--")
            cells.append(rf"\textbf{{{s}}}" if best.get(col) == label and s != "--" else s)
        lines.append(_tex_escape(str(label)) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Plain numbers, one header row ``group/metric``."""
    flat = table.data.copy()
    flat.columns = [f"{g}/{m}" for g, m in flat.columns]
    flat.index.name = "method"
    return flat.to_csv(float_format="%.6g")


#: Every file :func:`write_tables` may write into ``tables/`` (besides ``plots/``).
TABLE_FILES = tuple(f"table{i}.{ext}" for i in ("1", "2", "3", "_gt") for ext in ("md", "csv", "tex")) + ("tables.md",)


def write_tables(run_dir: str | Path, metrics: RunMetrics | None = None) -> dict[str, Path]:
    """Write Tables 1–3 (md, csv, tex) and the plots into ``run_dir/tables``; returns name -> path.

    Reads only ``run_dir/videos/*/metrics.parquet`` (and the metrics stage records, to tell a missing file), or
    takes ``metrics`` already collected. Every readable video is tabulated; the videos left out are listed in every
    table's notes. Files of an earlier build that this one does not write (plots of videos gone, tables when no
    video is readable) are removed. Raises BadInputError when the run has no metrics at all.
    """
    from innout_core.store import atomic_write_text  # the run store owns atomic writes

    from reports.plots import write_plots

    run_dir = Path(run_dir)
    metrics = metrics if metrics is not None else collect_metrics(run_dir)
    if metrics.frame is None and not metrics.left_out:
        raise BadInputError(_nothing_to_tabulate(metrics), run_dir)
    out_dir = run_dir / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if metrics.frame is not None:
        tables = build_tables(metrics.frame)
        for t in tables:
            t.notes.extend(metrics.notes())
            for ext, text in (("md", to_markdown(t)), ("csv", to_csv(t)), ("tex", to_latex(t))):
                path = out_dir / f"{t.name}.{ext}"
                atomic_write_text(path, text)
                written[f"{t.name}.{ext}"] = path
        summary = "\n".join(to_markdown(t) for t in tables)
    else:
        summary = "### No tables: no video's metrics could be read\n\n" + "".join(
            f"- {n}\n" for n in metrics.notes())
    atomic_write_text(out_dir / "tables.md", summary)
    written["tables.md"] = out_dir / "tables.md"
    written.update(write_plots(metrics.frame, out_dir))
    for name in TABLE_FILES:
        if name not in written:
            (out_dir / name).unlink(missing_ok=True)
    return written
