"""One static HTML page per run: tables, plots, side-by-side videos, failures.

Built from the run directory alone (``run.yaml``, stage records, ``metrics.parquet`` and media files); no server,
no network: the page references local files by relative path and carries its CSS/JS inline. Videos load lazily and
videos are paged, so a run of 100+ videos stays fast.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from reports.runmetrics import METRICS_STAGE, RunMetrics, collect_metrics
from reports.tables import Table, build_tables

__all__ = ["MEDIA_DIR", "VideoEntry", "collect_videos", "media_captions", "render_report", "write_report"]

#: Media written by the ``encode`` stage (``videos/<video>/encode/*.mp4``, see ``tasks/encode.py``).
MEDIA_DIR = "encode"
#: Strips of the automatic OOD masks (``tasks/masks.py``), shown with the video: (stage dir, caption).
MASK_STRIPS = (("masks-auto", "automatic OOD masks (red), from the residual against the W+ canonical render"),)
_MEDIA_EXT = {".mp4": "video", ".webm": "video", ".png": "image", ".jpg": "image", ".gif": "image"}
PAGE_SIZE = 20


@dataclass
class VideoEntry:
    """What the report shows for one video."""

    name: str
    status: str  # done | failed | running | pending
    media: list[tuple[str, str, str]] = field(default_factory=list)  # (caption, kind, path relative to report/)
    more_media: list[tuple[str, str, str]] = field(default_factory=list)  # every other branch, collapsed
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. the face stage's frames without a face
    stage_seconds: dict[str, float] = field(default_factory=dict)
    started: str | None = None  # earliest stage start (ISO-8601 UTC)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stage_seconds(record: dict) -> float | None:
    t = record.get("timings") or record.get("seconds")
    if isinstance(t, (int, float)):
        return float(t)
    if isinstance(t, dict):
        for key in ("seconds", "wall", "total", "duration"):
            if isinstance(t.get(key), (int, float)):
                return float(t[key])
        if isinstance(t.get("started"), (int, float)) and isinstance(t.get("finished"), (int, float)):
            return float(t["finished"] - t["started"])
    return None


def _error_text(stage: str, record: dict) -> str | None:
    err = record.get("error")
    if not err:
        return None
    if isinstance(err, dict):
        parts = [err.get("file") or "", err.get("message") or ""]
        return f"{err.get('stage') or stage}: " + ": ".join(p for p in parts if p)
    return f"{stage}: {err}"


def _stage_warnings(stage: str, record: dict) -> list[str]:
    """The warnings a stage recorded in its ``info`` (e.g. face: trimmed or held ends, long gaps), prefixed by stage."""
    info = record.get("info")
    warnings = info.get("warnings") if isinstance(info, dict) else None
    return [f"{stage}: {w}" for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []


def _norm(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def media_captions(stems: list[str], main_variant: str | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split media stems into the headline list and the rest, each as (stem, caption) in display order.

    Headline: input | W+ | PTI | In-N-Out, then the main In-N-Out branch (``main_variant``, default the first
    branch that has a blend map): reconstruction, each edit, OOD removal, blend map, novel view; then the ground
    truth (true occluder mask, clean frames).
    """
    stems = sorted(stems)
    blends = [s[len("blend-"):] for s in stems if s.startswith("blend-")]
    main = next((b for b in blends if main_variant and _norm(b) == _norm(main_variant)), blends[0] if blends else None)
    head: list[tuple[str, str]] = []
    if "compare-methods" in stems:
        head.append(("compare-methods", "input | W+ | PTI | In-N-Out | removal (| clean truth)"))
    if main is not None:
        if main in stems:
            head.append((main, f"In-N-Out ({main}) reconstruction"))
        edits = [s for s in stems if s.startswith(main + "-") and s not in (f"{main}-remove_ood", f"{main}-novel_view")]
        head += [(s, "edit: " + s[len(main) + 1:].replace("_", " ")) for s in edits]
        for stem, caption in ((f"{main}-remove_ood", "OOD removed"), (f"blend-{main}", "OOD blend weight (white = OOD)"),
                              (f"{main}-novel_view", "novel-view orbit")):
            if stem in stems:
                head.append((stem, caption))
    for stem, caption in (("truth-mask", "true occluder mask"), ("truth-clean", "clean frames (ground truth)")):
        if stem in stems:
            head.append((stem, caption))
    taken = {s for s, _ in head}
    rest = [(s, s.replace("compare-", "input | ").replace("-", " · ")) for s in stems if s not in taken]
    return head, rest


def collect_videos(run_dir: Path, report_dir: Path, main_variant: str | None = None) -> list[VideoEntry]:
    """One entry per ``videos/<video>/`` directory: status from its stage records, media from ``encode/``."""
    entries = []
    for vdir in sorted(p for p in (run_dir / "videos").glob("*") if p.is_dir()):
        records = {p.parent.name: _read_json(p) for p in sorted(vdir.glob("*/stage.json"))}
        statuses = [r.get("status") for r in records.values()]
        finished = (vdir / "metrics.parquet").exists() or records.get(METRICS_STAGE, {}).get("status") == "done"
        status = "failed" if "failed" in statuses else "done" if finished else (
            "running" if "running" in statuses else "pending"
        )
        entry = VideoEntry(vdir.name, status)
        for stage, rec in records.items():
            if (msg := _error_text(stage, rec)) is not None:
                entry.errors.append(msg)
            entry.warnings.extend(_stage_warnings(stage, rec))
            if (s := _stage_seconds(rec)) is not None:
                entry.stage_seconds[stage] = s
            if isinstance(rec.get("started"), str) and (entry.started is None or rec["started"] < entry.started):
                entry.started = rec["started"]
        media_dir = vdir / MEDIA_DIR
        files = {p.stem: p for p in media_dir.glob("*") if p.suffix.lower() in _MEDIA_EXT} if media_dir.is_dir() else {}
        head, rest = media_captions(list(files), main_variant)
        for target, items in ((entry.media, head), (entry.more_media, rest)):
            for stem, caption in items:
                rel = os.path.relpath(files[stem], report_dir).replace(os.sep, "/")
                target.append((caption, _MEDIA_EXT[files[stem].suffix.lower()], rel))
        for stage, caption in MASK_STRIPS:
            if (strip := vdir / stage / "masks.png").is_file():
                entry.media.append((caption, "image", os.path.relpath(strip, report_dir).replace(os.sep, "/")))
        entries.append(entry)
    return entries


def _metric_definitions(files: list[Path]) -> dict[str, str]:
    """Metric definitions from the metadata of the first readable metrics file."""
    for f in files:
        try:
            meta = pq.read_schema(f).metadata or {}
        except Exception:  # noqa: BLE001 - changed since it was read; the definitions are optional
            continue
        out = {}
        for k, v in meta.items():
            key = k.decode(errors="replace")
            if key in ("pandas", "ARROW:schema"):
                continue
            text = v.decode(errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            if isinstance(parsed, dict):
                out.update({str(a): str(b) for a, b in parsed.items()})
            else:
                out[key] = str(parsed)
        return out
    return {}


def _fmt(x: float, metric: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if metric.startswith("Time"):
        return f"{x:.1f}"
    return f"{x:.2f}" if metric.startswith("PSNR") else f"{x:.4f}"


def _table_html(table: Table) -> str:
    best = table.best()
    cols = list(table.data.columns)
    groups: list[tuple[str, int]] = []
    for g, _ in cols:
        groups = groups[:-1] + [(g, groups[-1][1] + 1)] if groups and groups[-1][0] == g else groups + [(g, 1)]
    out = [f'<table class="metrics" id="{table.name}"><caption>{html.escape(table.title)}</caption><thead>']
    out.append("<tr><th></th>" + "".join(f'<th colspan="{n}">{html.escape(g)}</th>' for g, n in groups) + "</tr>")
    out.append("<tr><th>method</th>" + "".join(f"<th>{html.escape(m)}</th>" for _, m in cols) + "</tr></thead><tbody>")
    for label, row in table.data.iterrows():
        cells = []
        for col in cols:
            value = row[col]
            text = _fmt(value, col[1])
            is_best = best.get(col) == label and text != "–"
            raw = "" if text == "–" else f' data-value="{float(value)!r}"'
            cells.append(f'<td class="{"best" if is_best else ""}"{raw}>{text}</td>')
        out.append(f"<tr><th>{html.escape(str(label))}</th>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    out.append("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .muted{color:#666} table.metrics{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
table.metrics caption{font-weight:600;text-align:left;padding:.3rem 0} td.best{font-weight:700;background:#e6f4ea}
table.info td,table.info th{text-align:left;padding:.15rem .6rem} .notes{font-size:.8rem;color:#555}
.media{display:flex;flex-wrap:wrap;gap:.8rem} figure{margin:0} figcaption{font-size:.8rem;color:#444}
video,img.m{max-width:280px;border:1px solid #ddd;background:#000} img.plot{max-width:100%}
details{border:1px solid #ddd;border-radius:6px;padding:.4rem .8rem;margin:.4rem 0}
summary{cursor:pointer;font-weight:600} .failed{color:#b00020} .warned{color:#8a5a00} .done{color:#1b7f3b}
#pager button{margin:0 .15rem}
"""

_JS = """
(function(){
  var items = Array.prototype.slice.call(document.querySelectorAll('.video-entry'));
  var size = %d, pages = Math.max(1, Math.ceil(items.length / size)), pager = document.getElementById('pager');
  function show(p){
    items.forEach(function(el, i){ el.style.display = (Math.floor(i / size) === p) ? '' : 'none'; });
    Array.prototype.forEach.call(pager.querySelectorAll('button'), function(b, i){ b.disabled = (i === p); });
  }
  if (pages > 1) {
    for (var p = 0; p < pages; p++) {
      var b = document.createElement('button'); b.textContent = String(p + 1);
      b.addEventListener('click', (function(k){ return function(){ show(k); }; })(p)); pager.appendChild(b);
    }
  }
  show(0);
  function playOpen(d){
    Array.prototype.forEach.call(d.querySelectorAll(':scope > .media video'), function(v){
      if (d.open && d.style.display !== 'none') { var p = v.play(); if (p && p.catch) p.catch(function(){}); }
      else { v.pause(); }
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('details'), function(d){
    d.addEventListener('toggle', function(){ playOpen(d); });
    if (d.open) playOpen(d);
  });
})();
""" % PAGE_SIZE


def _figures(media: list[tuple[str, str, str]]) -> str:
    figs = []
    for caption, kind, rel in media:
        src = html.escape(rel)
        if kind == "video":  # loaded and played only when its section is opened (see _JS)
            el = f"<video src='{src}' muted loop playsinline controls preload='none'></video>"
        else:
            el = f"<img class='m' loading='lazy' src='{src}' alt='{html.escape(caption)}'>"
        figs.append(f"<figure>{el}<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "".join(figs)


def render_report(run_dir: str | Path, report_dir: str | Path | None = None, metrics: RunMetrics | None = None) -> str:
    """The HTML text of the run report (paths relative to ``report_dir``, default ``run_dir/report``); ``metrics``
    as collected by :func:`reports.runmetrics.collect_metrics` (collected here when None)."""
    run_dir = Path(run_dir)
    metrics = metrics if metrics is not None else collect_metrics(run_dir)
    report_dir = Path(report_dir) if report_dir is not None else run_dir / "report"
    run_meta = {}
    if (run_dir / "run.yaml").exists():
        try:
            run_meta = yaml.safe_load((run_dir / "run.yaml").read_text()) or {}
        except yaml.YAMLError:
            run_meta = {}
    pipeline = run_meta.get("pipeline") if isinstance(run_meta.get("pipeline"), dict) else {}
    variants = pipeline.get("innout_variants") or []
    videos = collect_videos(run_dir, report_dir, main_variant=variants[0] if variants else None)
    left_out = {v.video: v for v in metrics.left_out}
    for v in videos:
        if v.name in left_out:
            v.errors.append(left_out[v.name].note())
    body = [f"<h1>innout run <code>{html.escape(run_dir.name)}</code></h1>"]
    body.append(f"<p class='muted'>report built {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from the run directory</p>")
    info: dict[str, object] = {}
    for key in ("preset", "generator", "checkpoint", "device", "seed"):
        if key in pipeline:
            info[key] = pipeline[key] if pipeline[key] is not None else "none"
    for key in ("code_version", "checkpoint_sha256", "manifest", "manifest_hash"):
        if key in run_meta and not isinstance(run_meta[key], (dict, list)):
            info[key] = run_meta[key]
    for k, v in run_meta.items():
        if k not in info and isinstance(v, (str, int, float)) and len(info) < 14:
            info[k] = v
    starts = [v.started for v in videos if v.started]
    if starts:
        info["started"] = min(starts)
    body.append("<h2>Run</h2><table class='info'>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in info.items()
    ) + f"<tr><th>videos</th><td>{sum(v.status == 'done' for v in videos)} done, "
        f"{sum(v.status == 'failed' for v in videos)} failed, {len(videos)} total"
        f"{f', {len(left_out)} left out of the tables' if left_out else ''}</td></tr></table>")
    stage_totals: dict[str, float] = {}
    for v in videos:
        for s, sec in v.stage_seconds.items():
            stage_totals[s] = stage_totals.get(s, 0.0) + sec
    if stage_totals:
        total = sum(stage_totals.values())
        body.append(f"<details id='stage-times'><summary>Wall time per stage (sum over videos: {total:.1f} s)</summary>"
                    "<table class='info'>" + "".join(
                        f"<tr><th>{html.escape(s)}</th><td>{sec:.1f} s</td></tr>" for s, sec in stage_totals.items()
                    ) + "</table></details>")
    failed = [v for v in videos if v.status == "failed"]
    if failed:
        body.append("<h2 class='failed'>Failures</h2><ul id='failures'>" + "".join(
            f"<li><b>{html.escape(v.name)}</b>: {html.escape('; '.join(v.errors) or 'failed')}</li>" for v in failed
        ) + "</ul>")
    warned = [v for v in videos if v.warnings]
    if warned:
        body.append("<h2 class='warned'>Warnings</h2><ul id='warnings'>" + "".join(
            f"<li><b>{html.escape(v.name)}</b>: {html.escape(w)}</li>" for v in warned for w in v.warnings
        ) + "</ul>")
    if metrics.left_out:
        body.append("<h2 class='failed'>Left out of the tables</h2><ul id='left-out'>" + "".join(
            f"<li><b>{html.escape(v.video)}</b>: {html.escape(v.reason)}</li>" for v in metrics.left_out
        ) + "</ul>")
    if metrics.frame is not None:  # else no finished video yet, or none readable: the page still renders
        defs = _metric_definitions(list(metrics.files.values()))
        body.append("<h2>Tables</h2>")
        for t in build_tables(metrics.frame):
            t.notes.extend(metrics.notes())
            body.append(_table_html(t))
        if defs:
            body.append("<h3>Metric definitions</h3><ul class='notes' id='definitions'>" + "".join(
                f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in sorted(defs.items())
            ) + "</ul>")
    plots = sorted((run_dir / "tables" / "plots").glob("*.png")) if (run_dir / "tables" / "plots").is_dir() else []
    if plots:
        body.append("<h2>Plots</h2>")
        for p in plots:
            rel = os.path.relpath(p, report_dir).replace(os.sep, "/")
            body.append(f"<p><img class='plot' src='{html.escape(rel)}' alt='{html.escape(p.stem)}'></p>")
    body.append(f"<h2>Videos ({len(videos)})</h2><div id='pager'></div>")
    for v in videos:
        errs = "".join(f"<p class='failed'>{html.escape(e)}</p>" for e in v.errors)
        errs += "".join(f"<p class='warned'>{html.escape(w)}</p>" for w in v.warnings)
        more = ""
        if v.more_media:
            more = (f"<details class='more'><summary>all branches ({len(v.more_media)} files)</summary>"
                    f"<div class='media'>{_figures(v.more_media)}</div></details>")
        body.append(
            f"<details class='video-entry' {'open' if len(videos) <= 5 else ''}><summary>{html.escape(v.name)} "
            f"<span class='{v.status}'>{v.status}</span></summary>{errs}<div class='media'>{_figures(v.media)}</div>"
            f"{more}</details>"
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>innout report: {html.escape(run_dir.name)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )


def write_report(run_dir: str | Path, metrics: RunMetrics | None = None) -> Path:
    """Write ``run_dir/report/index.html`` atomically and return its path (``metrics`` as in :func:`render_report`)."""
    from innout_core.store import atomic_write_text

    run_dir = Path(run_dir)
    out = run_dir / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, render_report(run_dir, out.parent, metrics))
    return out
