"""The run directory: paths, stage records, atomic writes, hashes and the versioned metrics Parquet schema.

Layout (docs/design.md §3.1)::

    runs/<run>/run.yaml                          resolved config + code version + manifest hash
    runs/<run>/videos/<video>/<stage>/           outputs of one stage
    runs/<run>/videos/<video>/<stage>/stage.json StageRecord: status, hashes, code version, timings, error
    runs/<run>/videos/<video>/metrics.parquet    one row per (method, variant, mode, frame, edit)
    runs/<run>/tables/                           Tables 1-3 and plots

Every write goes through :func:`atomic_path` (temp file in the same directory, then ``os.replace``), so a crash
leaves the previous state and never a half-written file under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from innout_core.errors import BadInputError, InnoutError
from innout_core.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, hash_file, is_temp

__all__ = [
    "CHEAP_HASH_BYTES",
    "FileEntry",
    "METRICS_SCHEMA",
    "METRICS_SCHEMA_VERSION",
    "OutputProblem",
    "RECORD_NAME",
    "StageFailure",
    "StageRecord",
    "StageStatus",
    "VerifyMode",
    "Timer",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "code_version",
    "hash_file",
    "hash_json",
    "hash_strings",
    "is_done",
    "list_outputs",
    "mark_redo",
    "outputs_hash",
    "verify_outputs",
    "metrics_path",
    "read_metrics",
    "read_record",
    "run_yaml_path",
    "stage_dir",
    "tables_dir",
    "video_dir",
    "video_ids",
    "write_metrics",
    "write_record",
]

RECORD_NAME = "stage.json"
StageStatus = Literal["pending", "running", "done", "failed"]

# ---------------------------------------------------------------------------------------------------------- paths


def video_dir(run_dir: str | Path, video: str) -> Path:
    """``runs/<run>/videos/<video>``."""
    return Path(run_dir) / "videos" / video


def stage_dir(run_dir: str | Path, video: str, stage: str) -> Path:
    """``runs/<run>/videos/<video>/<stage>`` (stage names may contain ``+``; ``/`` is replaced by ``_``)."""
    return video_dir(run_dir, video) / stage.replace("/", "_").replace(" ", "_")


def metrics_path(run_dir: str | Path, video: str) -> Path:
    """``runs/<run>/videos/<video>/metrics.parquet``."""
    return video_dir(run_dir, video) / "metrics.parquet"


def run_yaml_path(run_dir: str | Path) -> Path:
    """``runs/<run>/run.yaml``."""
    return Path(run_dir) / "run.yaml"


def tables_dir(run_dir: str | Path) -> Path:
    """``runs/<run>/tables``."""
    return Path(run_dir) / "tables"


def video_ids(run_dir: str | Path) -> list[str]:
    """Sorted ids of the videos that have a directory in the run."""
    root = Path(run_dir) / "videos"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


# ------------------------------------------------------------------------------------ atomic writes and hashes
# (they live in innout_core.io; re-exported here, where the run's writers have always imported them)

def hash_json(obj: Any) -> str:
    """sha256 hex digest of the canonical (key-sorted, compact) JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def hash_strings(parts: Sequence[str]) -> str:
    """sha256 hex digest of an ordered list of strings (e.g. upstream output hashes)."""
    return hash_json(list(parts))


@lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the source tree, else ``innout <package version>``."""
    from innout_core import __version__

    repo = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"innout {__version__} ({out.stdout.strip()})"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"innout {__version__}"


# -------------------------------------------------------------------------------------------------- stage records


class StageFailure(BaseModel):
    """Why a stage failed: the file involved, the stage, and a one-line message."""

    file: str | None = Field(None, description="the input file the error is about, when there is one")
    stage: str = Field(description="stage name, e.g. 'frames', 'stage-a-no-masks'")
    message: str = Field(description="one-line, user-facing message")
    kind: str = Field("StageError", description="exception class name")


class FileEntry(BaseModel):
    """One output file as written: size, sha256 and modification time (to tell a rewrite from a copy)."""

    size: int = Field(description="bytes")
    sha256: str = Field(description="sha256 hex digest of the bytes")
    mtime_ns: int = Field(0, description="st_mtime_ns when hashed; a file whose mtime changed is re-hashed")


class StageRecord(BaseModel):
    """The content of ``<stage>/stage.json``: the system of record for one stage of one video."""

    stage: str = Field(description="stage name")
    video: str = Field(description="video id")
    status: StageStatus = Field("pending", description="pending | running | done | failed")
    input_hash: str = Field("", description="sha256 of the stage's inputs (source file / upstream output hashes)")
    config_hash: str = Field("", description="sha256 of the stage's resolved config")
    output_hash: str = Field("", description="sha256 of the stage's outputs, fed to downstream input hashes")
    code_version: str = Field(default_factory=code_version, description="git describe or package version")
    started: str | None = Field(None, description="ISO-8601 UTC start time")
    finished: str | None = Field(None, description="ISO-8601 UTC end time")
    seconds: float | None = Field(None, description="wall time of the stage, seconds")
    attempts: int = Field(0, description="how many times the stage was started in this run dir")
    outputs: dict[str, str] = Field(default_factory=dict, description="name -> path relative to the stage dir")
    files: dict[str, FileEntry] = Field(default_factory=dict, description="every output file (directories "
                                        "expanded), path relative to the stage dir -> size, sha256, mtime")
    info: dict[str, Any] = Field(default_factory=dict, description="small stage-specific facts (frame count, ...)")
    error: StageFailure | None = Field(None, description="set when status is failed")

    def started_now(self) -> StageRecord:
        """A copy marked running, with the start time set and the attempt counter incremented."""
        return self.model_copy(
            update={
                "status": "running",
                "started": _now(),
                "finished": None,
                "seconds": None,
                "error": None,
                "attempts": self.attempts + 1,
                "code_version": code_version(),
            }
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def read_record(directory: str | Path) -> StageRecord | None:
    """The stage record in ``directory``, or None when absent. A corrupt record reads as None (stage is redone)."""
    path = Path(directory) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return StageRecord.model_validate_json(path.read_text("utf-8"))
    except (ValueError, OSError):
        return None


def write_record(directory: str | Path, record: StageRecord) -> Path:
    """Write ``record`` atomically to ``directory/stage.json``."""
    return atomic_write_text(Path(directory) / RECORD_NAME, record.model_dump_json(indent=2) + "\n")


def is_done(directory: str | Path, input_hash: str, config_hash: str) -> bool:
    """True when ``directory/stage.json`` says done with the same input and config hashes and its outputs still
    match what the record lists (:func:`verify_outputs`, quick mode)."""
    rec = read_record(directory)
    if rec is None or rec.status != "done" or rec.input_hash != input_hash or rec.config_hash != config_hash:
        return False
    return verify_outputs(directory, rec) is None


# ------------------------------------------------------------------------------------------ output verification

#: Files up to this size are re-hashed on every quick check; bigger ones only when their size or mtime changed.
CHEAP_HASH_BYTES = 4 << 20


def _output_files(directory: Path, outputs: dict[str, str]) -> list[tuple[str, list[Path]]]:
    """(output name, its files in name order) for each output, outputs in name order."""
    out = []
    for name in sorted(outputs):
        p = directory / outputs[name]
        files = sorted(q for q in p.rglob("*") if q.is_file() and not is_temp(q)) if p.is_dir() else [p]
        out.append((name, files))
    return out


def list_outputs(directory: str | Path, outputs: dict[str, str]) -> dict[str, FileEntry]:
    """Size, sha256 and mtime of every output file (relative path -> entry), hashed once when a stage finishes.

    Raises:
        InnoutError: an output the stage named was not written.
    """
    directory = Path(directory)
    entries: dict[str, FileEntry] = {}
    for name, files in _output_files(directory, outputs):
        if not files or not files[0].exists():
            raise InnoutError(f"stage output {name!r} was not written", path=directory / outputs[name])
        for q in files:
            st = q.stat()
            entries[Path(os.path.relpath(q, directory)).as_posix()] = FileEntry(
                size=st.st_size, sha256=hash_file(q), mtime_ns=st.st_mtime_ns)
    return entries


def outputs_hash(directory: str | Path, outputs: dict[str, str], files: dict[str, FileEntry]) -> str:
    """The record's ``output_hash``: sha256 over output names and their files' hashes (fed to downstream inputs),
    from the hashes :func:`list_outputs` took (no second read)."""
    directory = Path(directory)
    parts: list[str] = []
    for name, paths in _output_files(directory, outputs):
        parts.append(name)
        for q in paths:
            rel = Path(os.path.relpath(q, directory)).as_posix()
            parts.append(f"{rel}={files[rel].sha256}")
    return hash_strings(parts)


VerifyMode = Literal["size", "quick", "full"]


@dataclass(frozen=True)
class OutputProblem:
    """The first output of a record that does not match it: the file and what is wrong (one line)."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def verify_outputs(directory: str | Path, rec: StageRecord, mode: VerifyMode = "quick") -> OutputProblem | None:
    """None when the outputs of a done record match it, else the first bad file and its problem.

    Modes: ``size`` stats every file (missing, size); ``quick`` also re-hashes files up to
    :data:`CHEAP_HASH_BYTES` and any whose mtime changed; ``full`` re-hashes every file. Directory outputs are also
    checked for files the record does not list. Records written before files were listed (no ``files``) are
    checked for existence only.
    """
    directory = Path(directory)
    if not rec.files:
        for rel in rec.outputs.values():
            if not (directory / rel).exists():
                return OutputProblem(directory / rel, "stage output missing")
        return None
    for rel, entry in sorted(rec.files.items()):
        p = Path(os.path.normpath(directory / rel))
        try:
            st = p.stat()
        except OSError:
            return OutputProblem(p, "stage output missing")
        if st.st_size != entry.size:
            return OutputProblem(p, f"stage output is {st.st_size} bytes, was {entry.size} when written "
                                    "(truncated or altered)")
        if mode == "size":
            continue
        if mode == "full" or st.st_size <= CHEAP_HASH_BYTES or st.st_mtime_ns != entry.mtime_ns:
            try:
                digest = hash_file(p)
            except BadInputError:
                return OutputProblem(p, "stage output unreadable")
            if digest != entry.sha256:
                return OutputProblem(p, "stage output altered (its sha256 differs from the one written)")
    for rel in rec.outputs.values():
        root = directory / rel
        if root.is_dir():
            extra = sorted(Path(os.path.relpath(q, directory)).as_posix() for q in root.rglob("*") if q.is_file())
            extra = [e for e in extra if e not in rec.files and not is_temp(Path(e))]
            if extra:
                return OutputProblem(directory / extra[0], "file in a stage output the stage did not write")
    return None


def mark_redo(directory: str | Path, reason: str) -> bool:
    """Mark the done record in ``directory`` as to-redo (status pending, ``info.redo`` = reason); False when there
    is no done record there. Its outputs stay until the stage runs again."""
    rec = read_record(directory)
    if rec is None or rec.status != "done":
        return False
    write_record(directory, rec.model_copy(update={"status": "pending", "info": {**rec.info, "redo": reason}}))
    return True


class Timer:
    """Wall-clock timer (``time.perf_counter``) for stage records."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


# ----------------------------------------------------------------------------------------------- metrics Parquet

METRICS_SCHEMA_VERSION = "3"  # 2: face_status column; 3: psnr_clean, occluded (ground-truth videos)

def _metrics_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("run", pa.string(), nullable=False),
            pa.field("video", pa.string(), nullable=False),
            pa.field("method", pa.string(), nullable=False),  # w | w+ | pti | innout
            pa.field("variant", pa.string(), nullable=False),  # "", no-masks, auto-masks, user-masks, w/o L_b, w/o L_w
            pa.field("mode", pa.string(), nullable=False),  # video | image
            pa.field("frame", pa.int64(), nullable=False),  # source frame index
            pa.field("edit", pa.string(), nullable=False),  # "" = reconstruction, else the edit name
            pa.field("lpips", pa.float64(), nullable=True),
            pa.field("ssim", pa.float64(), nullable=True),
            pa.field("psnr", pa.float64(), nullable=True),
            pa.field("id_sim", pa.float64(), nullable=True),
            pa.field("id_sim_edit", pa.float64(), nullable=True),  # identity between inverted and edited frame
            pa.field("seconds", pa.float64(), nullable=False),  # wall time of the method for this video
            pa.field("reason", pa.string(), nullable=True),  # why a metric is null
            pa.field("face_status", pa.string(), nullable=True),  # ok | predicted | filled | no_face (face stage)
            pa.field("psnr_clean", pa.float64(), nullable=True),  # vs the clean truth (ground-truth videos only)
            pa.field("occluded", pa.bool_(), nullable=True),  # the manifest's masks cover >= 1 % of the frame
        ],
        metadata={"innout.schema_version": METRICS_SCHEMA_VERSION},
    )


def __getattr__(name: str) -> Any:
    """``METRICS_SCHEMA`` is built on first use (pyarrow stays out of commands that never read Parquet)."""
    if name == "METRICS_SCHEMA":
        schema = _metrics_schema()
        globals()["METRICS_SCHEMA"] = schema
        return schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
_METHODS = {"w", "w+", "pti", "innout"}
_MODES = {"video", "image"}
#: nullable columns a row may leave out (written as null)
_OPTIONAL = {"face_status", "psnr_clean", "occluded"}


def _metric_definitions() -> dict[str, str]:
    from innout_core.metrics import METRIC_DEFINITIONS

    return dict(METRIC_DEFINITIONS)


def write_metrics(
    path: str | Path, rows: Sequence[Mapping[str, Any]], definitions: Mapping[str, str] | None = None
) -> Path:
    """Write metric rows to ``path`` as Parquet with :data:`METRICS_SCHEMA`, atomically.

    Args:
        path: final ``metrics.parquet`` path.
        rows: one mapping per (method, variant, mode, frame, edit) with exactly the schema's columns
            (``face_status``, ``psnr_clean`` and ``occluded`` may be left out: null); metric columns may be None
            (then ``reason`` should say why).
        definitions: metric name -> definition for the file metadata; default ``innout_core.metrics.METRIC_DEFINITIONS``.
    Raises:
        BadInputError: a row with missing/extra columns, an unknown method/mode, or wrong types.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    METRICS_SCHEMA = __getattr__("METRICS_SCHEMA")
    names = set(METRICS_SCHEMA.names)
    rows = [{**{k: None for k in _OPTIONAL}, **row} for row in rows]
    for i, row in enumerate(rows):
        keys = set(row)
        if keys != names:
            raise BadInputError(
                f"metrics row {i} has columns missing {sorted(names - keys)} / extra {sorted(keys - names)}", path=path
            )
        if row["method"] not in _METHODS or row["mode"] not in _MODES:
            raise BadInputError(f"metrics row {i}: unknown method {row['method']!r} or mode {row['mode']!r}", path=path)
    try:
        table = pa.Table.from_pylist([dict(r) for r in rows], schema=METRICS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise BadInputError(f"metrics rows do not fit the schema: {err}", path=path) from err
    defs = dict(definitions) if definitions is not None else _metric_definitions()
    meta = dict(METRICS_SCHEMA.metadata or {})
    meta[b"innout.metric_definitions"] = json.dumps(defs, sort_keys=True).encode()
    meta[b"innout.code_version"] = code_version().encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_metrics(path: str | Path) -> tuple[pa.Table, dict[str, str]]:
    """Read one metrics file; returns (table, metric definitions). Raises BadInputError on a schema mismatch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    METRICS_SCHEMA = __getattr__("METRICS_SCHEMA")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise BadInputError(f"not a readable metrics Parquet file ({err})", path=path) from err
    meta = table.schema.metadata or {}
    version = meta.get(b"innout.schema_version", b"?").decode()
    if version != METRICS_SCHEMA_VERSION:
        raise BadInputError(
            f"metrics schema version {version}, this innout reads {METRICS_SCHEMA_VERSION}; re-run `innout tables`",
            path=path,
        )
    if table.schema.remove_metadata() != METRICS_SCHEMA.remove_metadata():
        raise BadInputError("metrics columns differ from innout_core.store.METRICS_SCHEMA", path=path)
    defs = json.loads(meta.get(b"innout.metric_definitions", b"{}"))
    return table, defs
