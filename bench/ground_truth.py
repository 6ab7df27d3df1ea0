"""Ground-truth benchmark that decides whether In-N-Out separates an occluder from a face (`tiny` / `tiny-face`, CPU).

Videos (`innout_core.synthetic.ground_truth_suite` of ``--generator``): on ``tiny`` (default) ``box``, ``sphere``,
``bar`` (moving occluders) and ``static``; on ``tiny-face`` ``hand``, ``bar``, ``glasses``, ``microphone`` and
``static`` on held-out identities; clean frames, occluder masks, cameras and true latents are known. Each generator
has its own results (tag ``f8-s0`` for ``tiny``, ``f8-s0-tiny-face``; ``ground_truth[_tiny_face][_quick].json``).

Sweep: every run (:class:`RunSpec`) is stage A (``JointConfig``, the ``tiny-demo`` architecture: 32^2 OOD planes,
lr 2e-2, no LPIPS) from a converged W+ fit (``start=wplus``, :func:`wplus_config`, cached per video and shared
by all runs of that video), from the *masked* W+ fit with the run's own masks (``start=wplus-masked``: the face
region only, :func:`fit_wplus_masked`; In-N-Out's occluder-aware start), from the W+ fit's canonical latent, or from
the true latents (``start=oracle``: separates inversion error from decomposition error), with a number of steps, a w+ learning rate, blend-regulariser weights, a mask source (none, the true masks,
automatic masks from `innout_core.auto_masks`) and optionally stage B (SR fine-tuning). The plan
(:func:`sweep_plan`) lists runs in priority order, the most decisive first.

Per run (:func:`execute_run` / :func:`evaluate_composite`; images in [-1,1], per frame then averaged; "occluded"
frames have >= 1 % occluder):
* composite vs input (PSNR/SSIM) on occluded frames and on unoccluded frames (there input = clean truth), the
  composite vs the clean truth on occluded frames, and PSNR of the face region (true mask) vs the clean truth;
* the OOD share of the composite (``blend_map``: the OOD part of each pixel's opacity, nearest-upsampled) on and off
  the true occluder region, and the occluder IoU (share > 0.5 vs the truth) over the video;
* removal (OOD blend weights 0; with masks also the release's rule) vs the clean truth on occluded frames, with the
  input vs clean as the baseline;
* latent drift: mean over frames of ||w - w_avg|| (Frobenius over [14,512]), ||w - w_init|| and ||w - w_true||.
Per video the W+ fit and a PTI fit on its pivots give the baselines (render vs input / clean truth), the true
latents' render the ceiling, and (for masked-start runs) the W+ fit of the clean frames what an inversion reaches with
nothing in the way. ``--seeds 0 1`` merges suite seeds into one table with the occluder-aware start's targets and
draws ``docs/ground_truth[_tiny_face]_seeds[_examples].png``.

Resumable: one JSON per run under ``bench/results/ground_truth/<tag>/runs/`` named by its settings and skipped when
present with the same settings hash; W+ fits cached under ``.../<tag>/wplus/``. Parallel: ``--jobs N`` processes, one
torch thread each. ``--merge-only`` rebuilds ``bench/results/ground_truth[_quick].json``, the markdown table
(``bench/results/ground_truth[_quick].md``) and the plots (``docs/ground_truth_*.png``) from what finished; runs of
the plan that did not finish are listed as not run.

Code: :mod:`gt_plan` (settings, run points, hashes, paths, the plan), :mod:`gt_metrics` (metrics against the
truth), :mod:`gt_runs` (fits, one run, the scheduler), :mod:`gt_report` (merge, checks, table, plots); this file is
the command and re-exports their names.

Usage: ``python bench/ground_truth.py [--generator tiny|tiny-face] [--quick] [--jobs 2] [--max-priority P]
[--only TEXT] [--stop-at HH:MM] [--merge-only]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gt_plan import (  # noqa: E402, F401
    BASE_JOINT,
    BENCH_VERSION,
    GENERATORS,
    MASKED_FIT_VERSION,
    PATHS,
    PTI_CONFIG,
    ROOT,
    TARGETS,
    VIDEOS,
    BenchSettings,
    MaskSource,
    Paths,
    RunSpec,
    _flat,
    generator_fingerprint,
    is_done,
    joint_config_dict,
    pti_path,
    _read_json,
    results_dir,
    run_hash,
    run_path,
    settings_dump,
    settings_hash,
    _short,
    sweep_plan,
    _video_seed,
    videos,
    wplus_config,
    wplus_done,
    wplus_paths,
)
from bench.gt_metrics import (  # noqa: E402, F401
    curve,
    evaluate_composite,
    _frame_mean,
    hidden_share,
    latent_drift,
    _mask_iou,
    masked_psnr,
    quality,
    render_ws,
    share_metrics,
    video_reference,
)
from bench.gt_runs import (  # noqa: E402, F401
    _auto_masks,
    clean_fit_path,
    execute,
    execute_run,
    fit_json,
    fit_pti,
    fit_wplus,
    fit_wplus_clean,
    fit_wplus_masked,
    _fit_wplus_unlocked,
    _generator,
    _git_head,
    _init_worker,
    _now,
    _save_preview,
    start_masks,
    _video,
)
from bench.gt_report import (  # noqa: E402, F401
    CLEAN_COLUMNS,
    COLUMNS,
    EXAMPLE_ROWS,
    MASKED_TARGETS,
    ResidualMaskDefaults,
    auto_mask_study,
    checks,
    combined,
    combined_plots,
    combined_markdown,
    _derived,
    example_strips,
    issue_targets,
    markdown,
    merge,
    plots,
    _save_png,
)
from innout_core.errors import BadInputError  # noqa: E402
from innout_core.store import atomic_write_json, atomic_write_text  # noqa: E402


def write_outputs(s: BenchSettings, plan: list[tuple[int, RunSpec]], seconds: float | None,
                  with_plots: bool = True) -> dict[str, Any]:
    """Merge, print the table, write the JSON / markdown (and plots). Returns the merged dict."""
    merged = merge(s, plan)
    merged["auto_mask_study"] = study = auto_mask_study(s)
    if len(study) == len(videos(s)):  # the automatic masks themselves (before any stage A), per reference
        for ref in ("wplus_frame", "wplus_canonical"):
            iou = sum(row[ref]["iou"] for row in study.values()) / len(study)
            merged["checks"][f"auto_mask_iou_{ref}"] = {
                "value": iou, "target": TARGETS["iou_auto"], "met": iou >= TARGETS["iou_auto"],
                "settings": f"residual_masks (defaults) vs the {ref.replace('_', ' ')} render, mean of {len(study)} "
                "videos"}
    md = markdown(merged, s)
    print(md)
    name = "ground_truth" + ("" if s.generator == "tiny" else "_" + s.generator.replace("-", "_")) + (
        "_quick" if s.quick else "")
    files = []
    if with_plots:
        prefix = (PATHS.results / name) if s.quick else (PATHS.docs / name)
        files = plots(merged, prefix, s.generator)
    result = {
        "bench": "ground_truth", "generator": s.generator,
        "generator_fingerprint": None if s.generator == "tiny" else generator_fingerprint(s.generator, s.frames,
                                                                                          s.seed),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "seconds_this_invocation": seconds, "settings": s.model_dump(), "bench_version": BENCH_VERSION,
        "base_joint": BASE_JOINT, "wplus_config": wplus_config(s), "targets": TARGETS,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads_per_job": 1,
                    "load_avg_1min": os.getloadavg()[0], "device": "cpu"},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "plan": [{"priority": p, **sp.model_dump()} for p, sp in plan], "plots": files, **merged,
    }
    atomic_write_json(PATHS.results / f"{name}.json", result)
    atomic_write_text(PATHS.results / f"{name}.md", md)
    print(f"wrote {PATHS.results / f'{name}.json'}, {PATHS.results / f'{name}.md'}"
          + (f", {', '.join(files)}" if files else ""))
    return result


def _parse_stop(text: str | None) -> float | None:
    """'HH:MM' (UTC, today) -> time.time() value."""
    if not text:
        return None
    try:
        hh, mm = (int(x) for x in text.split(":"))
    except ValueError:
        raise BadInputError(f"--stop-at must be HH:MM (UTC), got {text!r}") from None
    now = datetime.now(timezone.utc)  # a time already past today means: start nothing new
    return now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one video, a few short runs (the test setting)")
    ap.add_argument("--generator", choices=GENERATORS, default="tiny", help="face generator and its video suite")
    ap.add_argument("--frames", type=int, default=None, help="frames per video (default 8, quick 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wplus-epochs", type=int, default=None, help="W+ epochs (default 100, quick 5)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel processes (one torch thread each)")
    ap.add_argument("--max-priority", type=int, default=None, help="run only plan points up to this priority")
    ap.add_argument("--min-priority", type=int, default=None, help="run only plan points from this priority on")
    ap.add_argument("--only", action="append", default=None,
                    help="run only plan points whose label contains this text (repeatable: any of them)")
    ap.add_argument("--stop-at", default=None, help="HH:MM UTC: start no new run after this time")
    ap.add_argument("--merge-only", action="store_true", help="no runs: merge, table, JSON and plots")
    ap.add_argument("--list", action="store_true", help="print the plan with done / not run and exit")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="no runs: merge these suite seeds into one table with the occluder-aware start's targets")
    a = ap.parse_args(argv)
    if a.seeds:
        c = combined(a.generator, a.seeds, a.frames or 8, a.wplus_epochs or 100)
        md = combined_markdown(c)
        print(md)
        name = "ground_truth" + ("" if a.generator == "tiny" else "_" + a.generator.replace("-", "_")) + "_seeds"
        atomic_write_json(PATHS.results / f"{name}.json", {"bench": "ground_truth/seeds", "date": datetime.now(
            timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), **c})
        atomic_write_text(PATHS.results / f"{name}.md", md)
        if not a.no_plots:
            prefix = PATHS.docs / ("ground_truth" + ("" if a.generator == "tiny" else "_" + a.generator.replace("-", "_")))
            for f in combined_plots(c, prefix):
                print(f"wrote {f}")
        return c
    try:
        s = BenchSettings(frames=a.frames or (4 if a.quick else 8), seed=a.seed, quick=a.quick,
                          wplus_epochs=a.wplus_epochs or (5 if a.quick else 100), generator=a.generator)
        stop = _parse_stop(a.stop_at)
    except (BadInputError, ValueError) as exc:
        raise SystemExit(f"ground_truth: {exc}") from None
    plan = [(p, sp) for p, sp in sweep_plan(s) if (a.max_priority is None or p <= a.max_priority)
            and (a.min_priority is None or p >= a.min_priority) and (a.only is None or any(o in sp.label() for o in a.only))]
    if a.list:
        for p, sp in plan:
            print(f"{p} {'done   ' if is_done(s, sp) else 'not run'} {sp.video}-{sp.label()}")
        return {}
    t0 = time.perf_counter()
    if not a.merge_only:
        if a.jobs <= 1:
            torch.set_num_threads(1)
        rep = execute(s, plan, max(1, a.jobs), stop)
        print(f"done {len(rep['done'])}, skipped {len(rep['skipped'])} (finished before), failed {len(rep['failed'])}")
        for f in rep["failed"]:
            print(f"  failed: {f}")
    return write_outputs(s, sweep_plan(s), round(time.perf_counter() - t0, 1), with_plots=not a.no_plots)


if __name__ == "__main__":
    main()
