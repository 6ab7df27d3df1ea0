"""The ``innout`` command line (typer + rich).

Exit codes: 0 all videos done; 1 some videos failed and others finished, or a failure was not bad input; 2 nothing
could run because of bad input (manifest, config, arguments, every video) or another command holds the run directory
(:mod:`flows.lock`). Errors of the :class:`~innout_core.errors.InnoutError` family and OS errors print one line
naming the file and the problem; tracebacks (ours, Prefect's, the workers') go to the run log, and to the terminal
only with ``--debug``.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from innout_core.errors import BadInputError, InnoutError

if TYPE_CHECKING:
    from innout_core.config import Manifest, PipelineConfig

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Batch In-N-Out (CVPR 2024) face-video inversion and editing on Prefect + Dask.")
console = Console(stderr=True)
_STATE = {"quiet": False, "debug": False}


@app.callback()
def _global(quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars, errors only")] = False,
            debug: Annotated[bool, typer.Option("--debug", help="tracebacks and Prefect INFO logs")] = False) -> None:
    _STATE.update(quiet=quiet, debug=debug)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if debug else "ERROR" if quiet else "WARNING")
    if not debug:  # Prefect's records (a failed task's traceback, in the workers too) go to the run log only
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # Dask reads this when `distributed` is first imported (here and in every worker process it spawns): keeps
    # connection chatter at shutdown ("Batched Comm Closed", proxy hints) out of the terminal unless --debug.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if debug else "error")


# ------------------------------------------------------------------------------------------------------ running


def execute(man: Manifest, cfg: PipelineConfig, run_dir: Path, only: list[str] | None = None,
            bad: dict[str, BadInputError] | None = None, *, task_runner: Any = None, video_fn: Any = None) -> int:
    """Run the dataset flow for the parsed manifest ``man`` with config ``cfg`` into ``run_dir`` (starting a local
    Prefect server when needed); print the summary; return the exit code (:func:`exit_code`). The caller holds the
    run directory's lock and may pass what :func:`flows.precheck.find_bad_inputs` found (``bad``) when it checked
    the videos already.

    Everything that can be checked is checked before the server and the cluster start: the manifest and every
    config section (by the caller, which parsed them), every selected video (all bad ones reported at once, each in
    one line; the last selected frames are decoded) and the outputs of finished stages (a damaged one is redone
    with everything downstream). When every video is bad input the answer comes without importing PyTorch,
    Prefect or Dask. ``task_runner`` / ``video_fn``: see :func:`flows.dataset.dataset_flow` (harnesses only).
    """
    from flows.precheck import PreparedRun, check_outputs, find_bad_inputs, prepare_run, record_bad_inputs
    from tasks.plan import planned_stages

    if only is not None:
        unknown = sorted(set(only) - {v.id for v in man.videos})
        if unknown:
            raise BadInputError(f"videos {unknown} are not in the manifest", path=man.file)
    selected = [v.id for v in man.videos if only is None or v.id in only]
    bad = find_bad_inputs(man, run_dir, cfg, selected) if bad is None else bad
    run_dir = prepare_run(man, run_dir, cfg)
    rejected = record_bad_inputs(man, run_dir, cfg, bad)
    for line in rejected.values():
        console.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
    todo = [v for v in selected if v not in rejected]
    if not todo:
        console.print(f"nothing to run: every video has bad input; fix them, then `innout retry {run_dir}`",
                      highlight=False, soft_wrap=True)
        return 2
    for damage in check_outputs(man, run_dir, cfg, todo):
        console.print(f"[yellow]warning:[/] {damage.line()}", highlight=False, soft_wrap=True)
    plan = {v.id: planned_stages(cfg, v) for v in man.videos if v.id in todo}
    from flows.runlog import run_log
    from flows.server import prefect_api

    with run_log(run_dir), prefect_api(run_dir / ".prefect") as url:
        import logging

        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
            logging.getLogger(name).setLevel(logging.DEBUG if _STATE["debug"] else logging.WARNING)
        if _STATE["debug"]:
            console.print(f"Prefect API: {url}")
        from flows.dataset import dataset_flow
        from flows.progress import RunProgress

        with RunProgress(run_dir, plan, console=console, enabled=not _STATE["quiet"]):
            dataset_flow(str(man.file), str(run_dir), only=todo, rejected=rejected,
                         prepared=PreparedRun(manifest=man, config=cfg), task_runner=task_runner,
                         video_fn=video_fn, return_state=True)
    code = print_status(run_dir, selected)
    if any(run_dir.glob("videos/*/metrics.parquet")):  # tables + report for whatever finished
        from flows.tables import make_tables

        result = make_tables(run_dir)
        for line in result.left_out:
            console.print(f"[yellow]warning:[/] left out of the tables: {line}", highlight=False, soft_wrap=True)
        console.print(f"tables: {run_dir / 'tables'}  report: {run_dir / 'report' / 'index.html'}")
        if result.left_out and code == 0:  # a video missing from the tables is not a finished run
            code = 1
    return code


#: failure kinds that mean the video's own input (or the config) is bad: re-running cannot help
BAD_INPUT_KINDS = ("BadInputError", "CheckpointError", "MissingWeightsError")


def exit_code(videos: dict[str, dict]) -> int:
    """0 when every video is done; 2 when none is done and each failed on bad input (rejected by the check before
    the run, or a stage found its input unusable, e.g. no face in any frame); else 1 (some failed and others
    finished, a failure was not bad input, or a video is damaged / interrupted / pending)."""
    if all(v["status"] == "done" for v in videos.values()):
        return 0
    bad = [v for v in videos.values() if v["status"] == "failed" and (v["error"] or {}).get("kind") in BAD_INPUT_KINDS]
    return 2 if videos and len(bad) == len(videos) else 1


def print_status(run_dir: Path, only: list[str] | None = None) -> int:
    """Print the per-video status table; return :func:`exit_code` of the (selected) videos."""
    from flows.status import run_status

    st = run_status(run_dir)
    vids = {k: v for k, v in st["videos"].items() if only is None or k in only}
    table = Table(title=f"run {st['run']}  ({st['run_dir']})")
    for col in ("video", "status", "stages done", "failed stage", "file", "reason"):
        table.add_column(col, overflow="fold")
    for vid, v in vids.items():
        n_done = sum(s == "done" for s in v["stages"].values())
        err = v["error"] or {}
        colour = {"done": "green", "failed": "red", "damaged": "red"}.get(v["status"], "yellow")
        table.add_row(vid, f"[{colour}]{v['status']}[/]", f"{n_done}/{len(v['stages'])}", err.get("stage", ""),
                      err.get("file") or "", err.get("message", ""))
    Console(width=max(160, Console().width)).print(table)
    return exit_code(vids)


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="dataset manifest YAML (see datasets/README.md)")],
    config: Annotated[Optional[Path], typer.Option(help="pipeline config YAML (overrides on a preset)")] = None,
    preset: Annotated[Optional[str], typer.Option(help="paper | official | fast | tiny-demo (default: the config's)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local Dask worker processes (one video each at a time)")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="run directory [default: runs/<manifest name>]")] = None,
) -> int:
    """Run every video of MANIFEST through every stage; re-running the same command resumes."""
    from flows.lock import run_lock
    from flows.precheck import find_bad_inputs
    from innout_core.config import load_config, load_manifest

    # parsed once; bad arguments fail before the run directory is touched: the manifest, every config section,
    # then every video (no writes)
    man = load_manifest(manifest)
    cfg = load_config(config, preset).with_workers(workers)
    run_dir = run_dir or Path("runs") / man.name
    bad = find_bad_inputs(man, run_dir, cfg)
    with run_lock(run_dir):
        return execute(man, cfg, run_dir, bad=bad)


@app.command()
def retry(run_dir: Annotated[Path, typer.Argument(help="run directory")],
          workers: Annotated[Optional[int], typer.Option(help="local Dask worker processes")] = None) -> int:
    """Re-run only the videos of RUN that are not done (failed or interrupted), with the run's saved config."""
    from flows.lock import run_lock
    from flows.precheck import check_outputs
    from flows.status import failed_videos, read_run
    from innout_core.config import load_manifest

    read_run(run_dir)  # a run directory? (before the lock creates anything in it)
    with run_lock(run_dir):
        cfg, manifest, _ = read_run(run_dir)
        man = load_manifest(manifest)
        for damage in check_outputs(man, run_dir, cfg):  # a damaged finished stage makes its video one to retry
            console.print(f"[yellow]warning:[/] {damage.line()}", highlight=False, soft_wrap=True)
        todo = failed_videos(run_dir)
        if not todo:
            console.print("nothing to retry: every video is done")
            return 0
        console.print(f"retrying {len(todo)} video(s): {', '.join(todo)}")
        return execute(man, cfg.with_workers(workers), run_dir, only=todo)


def _check_finished(run_dir: Path, cfg, manifest: Path, mode: str = "quick", mark: bool = True) -> list:
    """Check the outputs of every video's finished stages (:func:`tasks.verify.check_video`)."""
    from flows.status import run_entries
    from tasks.verify import check_video

    return [d for e in run_entries(run_dir, manifest) if e.id != "none"
            for d in check_video(run_dir, cfg, e, mode, mark=mark)]  # type: ignore[arg-type]


@app.command()
def verify(run_dir: Annotated[Path, typer.Argument(help="run directory")]) -> int:
    """Re-hash every output of every finished stage of RUN against its record; report each damaged file and mark
    its stage and everything downstream to be redone by `innout retry RUN` (exit 1 when something is damaged).
    While another command holds the run, report only."""
    from flows.lock import RunLockedError, run_lock
    from flows.status import read_run

    cfg, manifest, _ = read_run(run_dir)
    try:
        with run_lock(run_dir, command="innout verify"):
            damages = _check_finished(run_dir, cfg, manifest, "full", mark=True)
            marked = True
    except RunLockedError:
        damages, marked = _check_finished(run_dir, cfg, manifest, "full", mark=False), False
    for damage in damages:
        console.print(f"[red]damaged:[/] {damage.line()}", highlight=False, soft_wrap=True)
    n_files = sum(len(r.files) for r in _records(run_dir) if r.status == "done")
    if not damages:
        console.print(f"verified {n_files} output files of the finished stages of {run_dir}: all match their "
                      "records", highlight=False, soft_wrap=True)
        return 0
    what = "`innout retry` redoes them" if marked else "another command holds the run: nothing marked"
    console.print(f"{len(damages)} damaged stage(s) in {run_dir}; {what}", highlight=False, soft_wrap=True)
    return 1


def _records(run_dir: Path) -> list:
    from innout_core.store import read_record

    return [r for d in sorted(Path(run_dir).glob("videos/*/*")) if d.is_dir() and (r := read_record(d))]


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="run directory")]) -> int:
    """Per-video status of RUN with the failed stage, file and reason (exit 1 when some video is not done)."""
    return min(print_status(run_dir), 1)


@app.command()
def tables(run_dir: Annotated[Path, typer.Argument(help="run directory")]) -> int:
    """Regenerate Tables 1-3, plots and the HTML report of RUN from its run directory alone (exit 1 when a video's
    metrics.parquet is missing or unreadable: the others are tabulated, the left-out ones listed)."""
    from flows.tables import make_tables

    result = make_tables(run_dir)
    for name, path in sorted(result.written.items()):
        console.print(f"{name}: {path}")
    for line in result.left_out:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    return 1 if result.left_out else 0


@app.command()
def doctor() -> int:
    """What is installed, which weights were found where, GPUs, ffmpeg; and what runs without each."""
    from innout_core.doctor import format_report, run_checks

    print(format_report(run_checks()))
    return 0


@app.command("convert-checkpoint")
def convert_checkpoint(pkl: Annotated[Path, typer.Argument(help="official EG3D .pkl")],
                       out: Annotated[Path, typer.Argument(help="output directory (safetensors + JSON)")]) -> int:
    """Convert an official EG3D pickle into innout's safetensors directory (never runs pickled code)."""
    from innout_core.eg3d.checkpoint import convert_checkpoint as convert

    console.print(f"wrote {convert(pkl, out)}")
    return 0


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="run directory")] = Path("runs/demo"),
    videos: Annotated[int, typer.Option(min=1, help="number of ground-truth videos")] = 3,
    frames: Annotated[int, typer.Option(min=1, help="frames per video")] = 3,
    workers: Annotated[Optional[int], typer.Option(help="local Dask worker processes")] = None,
) -> int:
    """The embedded default end to end: ground-truth videos from the tiny-face generator -> every stage -> tables."""
    from flows.demo import build_demo_dataset
    from flows.lock import run_lock
    from innout_core.config import load_config, load_manifest

    cfg = load_config(None, "tiny-demo").with_workers(workers)  # before anything is written
    with run_lock(run_dir):
        manifest = build_demo_dataset(run_dir.resolve(), n_videos=videos, n_frames=frames)
        return execute(load_manifest(manifest), cfg, run_dir)


#: OS errors that mean a wrong path or permissions given by the user (exit 2), not a failure while running (exit 1)
_BAD_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                     errno.ENAMETOOLONG, errno.ELOOP}


def os_error_line(err: OSError) -> str:
    """``<path>: <problem>`` for an OSError (both paths of a rename/copy), in one line."""
    what = err.strerror or type(err).__name__
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    return f"{paths}: {what}" if paths else " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except InnoutError as err:
        if _STATE["debug"]:
            traceback.print_exc()
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        code = err.exit_code
    except OSError as err:  # a file we could not read or write: one line naming it
        if _STATE["debug"]:
            traceback.print_exc()
        console.print(f"[red]error:[/] {os_error_line(err)}", highlight=False, soft_wrap=True)
        code = 2 if err.errno in _BAD_INPUT_ERRNOS else 1
    except click.exceptions.ClickException as err:
        err.show()
        code = 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        console.print("interrupted")
        code = 130
    code = code if isinstance(code, int) else 0
    if argv is None:
        sys.exit(code)
    return code
