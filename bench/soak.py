"""Fault-injection soak: a run survives worker kills, command kills, damaged stage outputs and a full disk, and
ends equal to a clean run.

One seeded schedule of faults is spread over a few `innout run` commands on the same run directory:

- ``worker_kill``: SIGKILL one Dask worker process while a stage runs;
- ``command_kill``: SIGKILL the whole command (its process group: the CLI and its Dask workers);
- ``delete_done`` / ``truncate_done`` / ``alter_done``: an output file listed by a done stage record (any stage, the
  video's ``metrics.parquet`` included) deleted, cut to a random fraction of its bytes, or one byte changed in place;
- ``delete_pending`` / ``truncate_pending`` / ``alter_pending``: the same for a file of a stage that is not done
  (checkpoints and their sha256 sidecars, progress, partial outputs). A round with such faults stops its command
  (SIGKILL of the process group) as soon as a stage of that command has written a checkpoint and is still running
  (polled every 50 ms), then damages files of the stages left not done before the next command resumes them; the
  stop is the round's ``command_kill`` when it has one, else it is logged as a stop, not counted as a fault;
- ``disk_full``: one atomic write of a stage output fails with ENOSPC (a ``sitecustomize`` on that command's
  ``PYTHONPATH`` patches ``os.replace`` once; the project's code is not changed for it).

After the schedule, `innout run` is repeated until it exits 0 (the re-runs); then `innout verify` must exit 0. The
result is compared with a clean run of the same manifest and config made in the same invocation (metrics Parquet
values equal except wall-time seconds; every other stage output's sha256 equal), and the soak counts faults by kind,
re-runs, lost videos, differing results, leftover processes and stale locks. A fault counts as applied only when it
touched a file (or killed a process, or failed a write); one that found nothing to hit is carried to the next
round. The clean run is made with 1 and with 2 Dask workers: their wall times give the Dask throughput ratio on this
machine (same invocation).

    python bench/soak.py                         # 10 videos x 3 frames, 2 workers, 24 faults, seed 0
    python bench/soak.py --videos 2 --faults 8   # smaller

Prints a table and writes ``bench/results/soak.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

IN_RUN = ("worker_kill", "command_kill", "disk_full")
ON_FILES = ("delete_done", "truncate_done", "alter_done", "delete_pending", "truncate_pending", "alter_pending")
KINDS = IN_RUN + ON_FILES

#: Few steps of everything (stage A checkpoints every 2 steps, so a killed stage leaves checkpoints behind).
SOAK_CONFIG = {
    "preset": "tiny-demo",
    "generator": "tiny",
    "methods": ["w", "innout"],
    "innout_variants": ["no-masks"],
    "modes": ["video"],
    "retries": 1,
    "retry_delay_s": 0.5,
    "inversion": {"steps": 2, "init_samples": 2, "pti_steps": 1},
    "joint": {"steps": 4, "checkpoint_every": 2},
    "sr_tuning": {"epochs": 1},
    "metrics": {"identity": False},
}

SITECUSTOMIZE = '''"""innout soak: one write fails with ENOSPC (os.replace onto a path matching the pattern), once per marker."""
import errno, fnmatch, os

_spec = os.environ.get("INNOUT_SOAK_ENOSPC", "")
if _spec:
    _marker, _pattern = _spec.split("|", 1)
    _replace = os.replace

    def _full_disk_once(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(os.fspath(dst), _pattern) and "/ckpt/" not in os.fspath(dst):
            try:
                os.close(os.open(_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                raise OSError(errno.ENOSPC, "No space left on device (soak fault)", os.fspath(dst))
        return _replace(src, dst, *args, **kwargs)

    os.replace = _full_disk_once
'''


@dataclass
class Fault:
    """One scheduled fault and what became of it."""

    kind: str
    round: int
    applied: bool = False
    target: str = ""
    #: added by the soak after the schedule (a video made to run again), not one of the ``--faults`` scheduled
    forced: bool = False


@dataclass
class Soak:
    """Everything one soak invocation needs: paths, environment, the seeded random stream, the log of faults."""

    root: Path
    env: dict[str, str]
    token: str
    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: commands stopped mid-stage for pending-stage faults (round, the stage caught running), not counted as faults
    stops: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- commands


def innout_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from flows.cli import main; main()", "--quiet", *args]


def start(soak: Soak, args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**soak.env, **(extra_env or {})}
    return subprocess.Popen(innout_cmd(*args), env=env, cwd=soak.root, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(soak: Soak, proc: subprocess.Popen, what: str, t0: float, timeout: float = 1800) -> int:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    soak.commands.append({"what": what, "exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 2),
                          "output_tail": out[-1500:]})
    return proc.returncode


def run_args(manifest: Path, config: Path, run: Path, workers: int) -> list[str]:
    return ["run", str(manifest), "--config", str(config), "--run-dir", str(run), "--workers", str(workers)]


# ------------------------------------------------------------------------------------------------- the run dir


def records(run: Path) -> dict[Path, Any]:
    from innout_core.store import read_record

    out = {}
    for d in sorted((run / "videos").glob("*/*")):
        rec = read_record(d) if d.is_dir() else None
        if rec is not None:
            out[d] = rec
    return out


def workers_of(proc: subprocess.Popen) -> list[Any]:
    import psutil

    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in kids:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing" in cmd and "resource_tracker" not in cmd:
            out.append(p)
    return out


def _started_since(rec: Any, since: float) -> bool:
    """Whether a record's ``started`` time is at or after ``since`` (epoch seconds; 1 s of slack for rounding)."""
    from datetime import datetime

    try:
        return rec.started is not None and datetime.fromisoformat(rec.started).timestamp() >= since - 1.0
    except ValueError:
        return False


def wait_for_running_stage(run: Path, proc: subprocess.Popen, since: float, timeout: float = 600) -> bool:
    """True once a stage record started by this command (at or after ``since``, epoch seconds) says running while
    the command lives (False: it ended first). Records left running by a killed command do not count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(r.status == "running" and _started_since(r, since) for r in records(run).values()):
            return True
        time.sleep(0.2)
    return False


def wait_for_checkpoint(run: Path, proc: subprocess.Popen, since: float, timeout: float = 900,
                        poll_s: float = 0.05) -> str | None:
    """``video/stage`` once a stage is running and has written a checkpoint file since ``since`` (epoch seconds),
    while the command lives; None when the command ends first. Polls the checkpoint files every ``poll_s``."""
    from innout_core.store import read_record

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for ck in run.glob("videos/*/*/ckpt/ckpt-*.pt"):
            try:
                fresh = ck.stat().st_mtime >= since
            except FileNotFoundError:  # pruned meanwhile (the stage keeps its newest two)
                continue
            rec = read_record(ck.parent.parent) if fresh else None
            if rec is not None and rec.status == "running":
                return f"{ck.parent.parent.parent.name}/{ck.parent.parent.name}"
        time.sleep(poll_s)
    return None


def _is_temp(p: Path) -> bool:
    """A temp file of an atomic write left by a killed writer (``.name.xxxx.tmp...``)."""
    return p.name.startswith(".") and ".tmp" in p.name


def fault_candidates(run: Path, kind: str, only: str = "") -> list[Path]:
    """Files a fault of ``kind`` may hit now: the files a done record lists (``*_done``), or every file in the
    directory of a stage that is not done, its record and atomic-write temp files excepted (``*_pending``); files
    a truncation or alteration could not change (empty ones) are left out for those kinds."""
    want_done = kind.endswith("_done")
    candidates: list[Path] = []
    for d, rec in records(run).items():
        if (rec.status == "done") != want_done:
            continue
        if want_done:
            candidates += [Path(os.path.normpath(d / rel)) for rel in rec.files]
        else:
            candidates += [p for p in d.rglob("*") if p.is_file() and p.name != "stage.json" and not _is_temp(p)]
    out = []
    for p in sorted(set(candidates)):
        try:
            size = p.stat().st_size
        except OSError:
            continue
        if only in str(p) and (kind.startswith("delete") or size > 0):
            out.append(p)
    return out


def damage_file(soak: Soak, fault: Fault, run: Path, only: str = "") -> None:
    """Apply one on-files fault to a random file of a done (or not-done) stage (:func:`fault_candidates`); leaves
    it unapplied when the run directory has no such file now. The target names what was done to it."""
    candidates = fault_candidates(run, fault.kind, only)
    if not candidates:
        return
    target = soak.rng.choice(candidates)
    data = target.read_bytes()
    if fault.kind.startswith("delete"):
        target.unlink()
        what = "deleted"
    elif fault.kind.startswith("truncate"):
        keep = int(len(data) * soak.rng.uniform(0.0, 0.9))
        target.write_bytes(data[:keep])
        what = f"{len(data)} -> {keep} bytes"
    else:
        i = soak.rng.randrange(len(data))
        with open(target, "r+b") as fh:
            fh.seek(i)
            fh.write(bytes([data[i] ^ 0xFF]))
        what = f"byte {i} of {len(data)} flipped"
    fault.applied, fault.target = True, f"{target.relative_to(run)} ({what})"


PENDING = tuple(k for k in ON_FILES if k.endswith("_pending"))
DONE = tuple(k for k in ON_FILES if k.endswith("_done"))


def schedule(rng: random.Random, n: int) -> list[list[str]]:
    """``n`` fault kinds (shuffled passes over every kind, so the kinds' counts differ by at most one), grouped into
    command rounds: at most one command kill and one full disk per round; in-run faults from round 0 on;
    pending-stage faults one per round from round 0 on (each such round stops its command mid-stage, and the
    stages it leaves not done are damaged after it); done-stage faults from round 1 on (round 0 starts on an empty
    run directory), at most two per round."""
    kinds: list[str] = []
    while len(kinds) < n:
        kinds += rng.sample(KINDS, len(KINDS))
    kinds = kinds[:n]
    in_run = [k for k in kinds if k in IN_RUN]
    pending, done = [k for k in kinds if k in PENDING], [k for k in kinds if k in DONE]
    n_rounds = max(2, math.ceil(n / 3), in_run.count("command_kill"), in_run.count("disk_full"), len(pending),
                   1 + math.ceil(len(done) / 2))
    rounds: list[list[str]] = [[] for _ in range(n_rounds)]
    for once in ("command_kill", "disk_full"):
        for i in range(in_run.count(once)):
            rounds[i].append(once)
    for i, k in enumerate(k for k in in_run if k == "worker_kill"):
        rounds[i % n_rounds].append(k)
    for i, k in enumerate(pending):
        rounds[i].append(k)
    for i, k in enumerate(done):
        rounds[1 + i % (n_rounds - 1)].append(k)
    return rounds


def soak_round(soak: Soak, rnd: int, faults: list[Fault], args: list[str], run: Path) -> int | None:
    """One command with its faults: done-stage file faults before it starts, then the in-run ones while it runs
    (worker kills first, the command kill last), then the pending-stage faults on what the command left not done.

    With pending-stage faults the command is killed as soon as one of its stages has written a checkpoint and is
    still running (that kill is the round's ``command_kill`` when it has one, else a logged stop), so that the
    damaged files are ones the next command resumes from."""
    kinds = [f.kind for f in faults]
    for f in faults:
        if f.kind in DONE:
            damage_file(soak, f, run)
    extra = {}
    disk = next((f for f in faults if f.kind == "disk_full"), None)
    if disk is not None:
        marker = soak.root / f"enospc-{rnd}.fired"
        extra = {"PYTHONPATH": f"{soak.root / 'faults'}{os.pathsep}{soak.env['PYTHONPATH']}",
                 "INNOUT_SOAK_ENOSPC": f"{marker}|{run}/videos/*/*/*.safetensors"}
    t0, since = time.perf_counter(), time.time()
    proc = start(soak, args, extra)
    for f in faults:
        if f.kind == "worker_kill" and wait_for_running_stage(run, proc, since):
            time.sleep(soak.rng.uniform(0.0, 2.0))
            victims = workers_of(proc)
            if victims:
                v = soak.rng.choice(victims)
                try:
                    v.send_signal(signal.SIGKILL)
                    f.applied, f.target = True, f"worker pid {v.pid}"
                except Exception:  # noqa: BLE001 - it ended on its own meanwhile
                    pass
    kill = next((f for f in faults if f.kind == "command_kill"), None)
    pending = [f for f in faults if f.kind in PENDING]
    if pending:
        stage = wait_for_checkpoint(run, proc, since)
        if stage is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            if kill is not None:
                kill.applied, kill.target = True, f"command pid {proc.pid}, {stage} running with a new checkpoint"
            else:
                soak.stops.append({"round": rnd, "stage": stage, "seconds": round(time.perf_counter() - t0, 2)})
    elif kill is not None and wait_for_running_stage(run, proc, since):
        time.sleep(soak.rng.uniform(0.0, 3.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kill.applied, kill.target = True, f"command pid {proc.pid}"
    code = finish(soak, proc, f"soak round {rnd}: {', '.join(kinds)}", t0)
    if disk is not None:
        disk.applied = (soak.root / f"enospc-{rnd}.fired").exists()
        disk.target = "one stage output write" if disk.applied else ""
    for f in pending:
        damage_file(soak, f, run)
    return code


# ------------------------------------------------------------------------------------------------- comparison


def parquet_rows(run: Path) -> dict[str, list[tuple]]:
    """Per video, the metrics rows without the wall-time column, sorted."""
    import pyarrow.parquet as pq

    out = {}
    for p in sorted(run.glob("videos/*/metrics.parquet")):
        t = pq.read_table(p).drop(["seconds"]).to_pylist()
        out[p.parent.name] = sorted(tuple((k, "nan" if isinstance(v, float) and math.isnan(v) else v)
                                          for k, v in sorted(r.items())) for r in t)
    return out


def _without_seconds(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def _content_hash(p: Path) -> str:
    """sha256 of a file's bytes; of a JSON output's content without its wall-time ``seconds`` keys."""
    from innout_core.store import hash_file, hash_json

    if p.suffix == ".json":
        try:
            return "json:" + hash_json(_without_seconds(json.loads(p.read_text("utf-8"))))
        except ValueError:
            return "unreadable json"
    return hash_file(p)


def output_hashes(run: Path) -> dict[str, str]:
    """``video/stage/file -> sha256`` of every file the done records list, from the files now on disk
    (metrics.parquet: compared by value; JSON outputs without their wall-time ``seconds``)."""
    out = {}
    for d, rec in records(run).items():
        if rec.status != "done":
            continue
        for rel in rec.files:
            p = Path(os.path.normpath(d / rel))
            if p.name != "metrics.parquet":
                out[f"{d.parent.name}/{d.name}/{rel}"] = _content_hash(p) if p.is_file() else "missing"
    return out


def compare(clean: Path, other: Path) -> dict[str, Any]:
    a_rows, b_rows = parquet_rows(clean), parquet_rows(other)
    a_files, b_files = output_hashes(clean), output_hashes(other)
    diff_rows = sorted(v for v in set(a_rows) | set(b_rows) if a_rows.get(v) != b_rows.get(v))
    diff_files = sorted(k for k in set(a_files) | set(b_files) if a_files.get(k) != b_files.get(k))
    return {"parquet_videos_differing": diff_rows, "files_compared": len(a_files),
            "files_differing": diff_files[:20], "n_files_differing": len(diff_files)}


def leftovers(token: str) -> list[str]:
    """Processes (other than this one) whose environment carries this soak's token."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get("INNOUT_SOAK") == token:
                found.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except psutil.Error:
            continue
    return found


# ------------------------------------------------------------------------------------------------- main


def run_soak(root: Path, videos: int = 10, frames: int = 3, workers: int = 2, faults: int = 24, seed: int = 0,
             max_reruns: int = 5, api_url: str | None = None, throughput: bool = True,
             config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole soak in ``root`` (see the module docstring); returns the results dict.

    Args:
        api_url: a running Prefect server to use (default: start one for the soak).
        throughput: also make the clean run with 1 worker and report the Dask throughput ratio.
        config: overrides on :data:`SOAK_CONFIG`.
    """
    import yaml

    from flows.demo import build_demo_dataset
    from flows.lock import lock_held
    from flows.server import server_env, start_server, stop_server
    from flows.status import run_status

    root.mkdir(parents=True, exist_ok=True)
    (root / "faults").mkdir(exist_ok=True)
    (root / "faults" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    manifest = build_demo_dataset(root, n_videos=videos, n_frames=frames, generator="tiny")
    overrides, config = config, root / "soak.yaml"
    config.write_text(yaml.safe_dump({**SOAK_CONFIG, **(overrides or {}), "dask": {"workers": workers}},
                                     sort_keys=False))
    token = secrets.token_hex(8)
    server = None
    home = root / "prefect-home"
    env = {**os.environ, **server_env(home), "PYTHONPATH": str(REPO), "INNOUT_THREADS": "1",
           "OMP_NUM_THREADS": "1", "INNOUT_SOAK": token}
    if api_url is None:
        server, api_url = start_server(home, timeout_s=600)
    env["PREFECT_API_URL"] = api_url
    rng = random.Random(seed)
    soak = Soak(root, env, token, rng)
    try:
        timings = {}
        for n in ([1, workers] if throughput and workers > 1 else [workers]):
            run = root / f"clean-{n}w" / "soak"
            t0 = time.perf_counter()
            code = finish(soak, start(soak, run_args(manifest, config, run, n)), f"clean run, {n} worker(s)", t0)
            timings[n] = {"exit": code, "seconds": time.perf_counter() - t0}
        clean = root / f"clean-{workers}w" / "soak"
        run = root / "faulty" / "soak"
        args = run_args(manifest, config, run, workers)
        plan = schedule(rng, faults)
        carry: list[Fault] = []
        for i in range(len(plan) + 4):  # up to 4 extra rounds for faults that found nothing to hit yet
            new = [Fault(k, i) for k in (plan[i] if i < len(plan) else [])]
            soak.faults += new
            todo = carry + new
            if not todo:
                break
            if i >= len(plan) and not any(f.kind in ON_FILES for f in todo):
                # nothing left to redo: a fault on a done frames output makes the video run again
                forced = Fault("truncate_done", i, forced=True)
                damage_file(soak, forced, run, only="/frames/")
                soak.faults.append(forced)
            for f in todo:
                f.round = i
            soak_round(soak, i, todo, args, run)
            carry = [f for f in todo if not f.applied]
        reruns, code = 0, None
        while reruns < max_reruns:
            reruns += 1
            t0 = time.perf_counter()
            code = finish(soak, start(soak, args), f"re-run {reruns}", t0)
            if code == 0:
                break
        t0 = time.perf_counter()
        verify_code = finish(soak, start(soak, ["verify", str(run)]), "verify", t0)
        status = run_status(run)["videos"]
        stale = int(lock_held(run)) + int(lock_held(clean))
    finally:
        if server is not None:
            stop_server(server)
    time.sleep(1.0)
    left = leftovers(token)
    cmp = compare(clean, run)
    det = compare(root / "clean-1w" / "soak", clean) if 1 in timings and workers > 1 else None
    scheduled = Counter(f.kind for f in soak.faults if not f.forced)
    applied = Counter(f.kind for f in soak.faults if f.applied and not f.forced)
    result = {
        "videos": videos, "frames": frames, "workers": workers, "seed": seed,
        "faults_scheduled": sum(scheduled.values()), "faults_applied": sum(applied.values()),
        "faults_by_kind": {k: {"scheduled": scheduled.get(k, 0), "applied": applied.get(k, 0)} for k in KINDS},
        "forced_faults_applied": sum(f.applied for f in soak.faults if f.forced),
        "mid_stage_stops": soak.stops,
        "faults": [vars(f) for f in soak.faults],
        "reruns_to_done": reruns if code == 0 else None, "last_exit": code, "verify_exit": verify_code,
        "videos_lost": sorted(v for v, s in status.items() if s["status"] != "done"),
        "results_differing": len(cmp["parquet_videos_differing"]) + cmp["n_files_differing"],
        "comparison": cmp, "clean_1w_vs_2w": det,
        "leftover_processes": left, "stale_locks": stale,
        "clean_runs": {str(k): v for k, v in timings.items()},
        "commands": soak.commands,
    }
    if 1 in timings and workers in timings and workers > 1:
        result["dask_throughput_ratio"] = timings[1]["seconds"] / timings[workers]["seconds"]
    return result


def print_table(r: dict[str, Any]) -> None:
    rows = [("videos x frames, workers", f"{r['videos']} x {r['frames']}, {r['workers']}"),
            ("faults applied / scheduled", f"{r['faults_applied']} / {r['faults_scheduled']}")]
    rows += [(f"  {k}", f"{v['applied']} / {v['scheduled']}") for k, v in r["faults_by_kind"].items()]
    rows += [("  forced (after the schedule)", str(r["forced_faults_applied"])),
             ("mid-stage stops (not faults)", str(len(r["mid_stage_stops"])))]
    rows += [("re-runs to done", str(r["reruns_to_done"])), ("verify exit", str(r["verify_exit"])),
             ("videos lost", str(len(r["videos_lost"]))), ("results differing from clean", str(r["results_differing"])),
             ("  files compared", str(r["comparison"]["files_compared"])),
             ("leftover processes", str(len(r["leftover_processes"]))), ("stale locks", str(r["stale_locks"]))]
    for n, t in r["clean_runs"].items():
        rows.append((f"clean run, {n} worker(s)", f"{t['seconds']:.1f} s (exit {t['exit']})"))
    if "dask_throughput_ratio" in r:
        rows.append((f"Dask throughput {r['workers']} vs 1 worker", f"{r['dask_throughput_ratio']:.2f}x"))
    if r.get("clean_1w_vs_2w") is not None:
        rows.append(("clean 1w vs 2w differing", str(len(r["clean_1w_vs_2w"]["parquet_videos_differing"])
                                                    + r["clean_1w_vs_2w"]["n_files_differing"])))
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--faults", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-reruns", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "soak.json")
    a = ap.parse_args(argv)
    from bench.machine import machine_info

    with tempfile.TemporaryDirectory(prefix="innout-soak-") as tmp:
        root = a.work or Path(tmp)
        t0 = time.perf_counter()
        r = run_soak(root, a.videos, a.frames, a.workers, a.faults, a.seed, a.max_reruns)
        r["wall_s"] = time.perf_counter() - t0
    r["machine"] = machine_info()
    print_table(r)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(r, indent=2, default=str) + "\n")
    print(f"wrote {a.json}")
    ok = (r["reruns_to_done"] is not None and not r["videos_lost"] and r["results_differing"] == 0
          and not r["leftover_processes"] and r["stale_locks"] == 0 and r["verify_exit"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
