"""Plots from the metrics table alone: per-method distributions over videos and per-frame curves (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import pandas as pd  # noqa: E402

from innout_core.io import atomic_path  # noqa: E402
from reports.labels import ABLATION_VARIANTS, method_label  # noqa: E402

__all__ = ["write_plots", "distribution_plot", "per_frame_plot"]

_METRICS = (("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("lpips", "LPIPS ↓"), ("id_sim", "ID similarity ↑"))


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _recon_videos(df: pd.DataFrame) -> pd.DataFrame:
    sub = df[(df["edit"].fillna("") == "") & (df["mode"] == "video")].copy()
    sub["label"] = [method_label(m, v or "") for m, v in zip(sub["method"], sub["variant"].fillna(""))]
    return sub


def distribution_plot(df: pd.DataFrame, path: Path) -> Path | None:
    """Box plots of per-video means of each reconstruction metric, one box per method. None if no data."""
    sub = _recon_videos(df)
    metrics = [(m, t) for m, t in _METRICS if sub[m].notna().any()]
    if sub.empty or not metrics:
        return None
    per_video = sub.groupby(["label", "video"])[[m for m, _ in metrics]].mean().reset_index()
    labels = sorted(per_video["label"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, (metric, title) in zip(axes[0], metrics):
        data = [per_video.loc[per_video["label"] == lab, metric].dropna().to_numpy() for lab in labels]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.suptitle("Per-video reconstruction metrics")
    return _save(fig, path)


def per_frame_plot(df: pd.DataFrame, video: str, path: Path) -> Path | None:
    """PSNR and LPIPS per source frame for one video, one line per method. None if no data."""
    sub = _recon_videos(df)
    sub = sub[(sub["video"] == video) & ~sub["variant"].isin(ABLATION_VARIANTS)]
    metrics = [(m, t) for m, t in _METRICS[:1] + _METRICS[2:3] if sub[m].notna().any()]
    if sub.empty or not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.4), squeeze=False)
    face = _face_status(sub)
    for ax, (metric, title) in zip(axes[0], metrics):
        for frame, status in face.items():  # frames whose face was not detected: shaded, one colour per status
            ax.axvspan(frame - 0.5, frame + 0.5, color=_STATUS_SHADE[status], alpha=0.25, lw=0)
        for label, g in sub.groupby("label"):
            g = g.sort_values("frame")
            ax.plot(g["frame"], g[metric], marker="o", ms=3, label=label)
        ax.set_xlabel("source frame")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, _ = axes[0][-1].get_legend_handles_labels()
    handles += [Patch(color=_STATUS_SHADE[s], alpha=0.25, label=f"face {s}") for s in sorted(set(face.values()))]
    axes[0][-1].legend(handles=handles, fontsize=7)
    counts = ", ".join(f"{n} {s}" for s, n in pd.Series(list(face.values()), dtype=object).value_counts().items())
    fig.suptitle(f"{video}: per-frame reconstruction" + (f" (frames without a detected face: {counts})"
                                                          if counts else ""))
    return _save(fig, path)


#: per-frame plot shading of frames whose face-stage status is not 'ok'
_STATUS_SHADE = {"predicted": "tab:olive", "filled": "tab:orange", "no_face": "tab:red"}


def _face_status(sub: pd.DataFrame) -> dict[int, str]:
    """Source frame -> face-stage status for the frames that were not detected (none when the column is absent)."""
    if "face_status" not in sub:
        return {}
    st = sub.dropna(subset=["face_status"]).drop_duplicates("frame").set_index("frame")["face_status"]
    return {int(f): str(s) for f, s in st.items() if s in _STATUS_SHADE}


def write_plots(df: pd.DataFrame | None, out_dir: Path) -> dict[str, Path]:
    """All plots into ``out_dir/plots``; returns name -> path. Every other PNG there (an earlier build's plot of a
    video now left out or gone) is removed; ``df`` None writes nothing and clears the folder."""
    written: dict[str, Path] = {}
    if df is not None and not df.empty:
        p = distribution_plot(df, out_dir / "plots" / "distributions.png")
        if p:
            written["plots/distributions.png"] = p
        for video in sorted(df["video"].unique()):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(video))
            p = per_frame_plot(df, video, out_dir / "plots" / f"per_frame_{safe}.png")
            if p:
                written[f"plots/per_frame_{safe}.png"] = p
    keep = {path.resolve() for path in written.values()}
    for stale in sorted((out_dir / "plots").glob("*.png")) if (out_dir / "plots").is_dir() else []:
        if stale.resolve() not in keep:
            stale.unlink(missing_ok=True)
    return written
