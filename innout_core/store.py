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

import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from innout_core.errors import BadInputError, InnoutError

__all__ = [
    "METRICS_SCHEMA",
    "METRICS_SCHEMA_VERSION",
    "RECORD_NAME",
    "StageFailure",
    "StageRecord",
    "StageStatus",
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


# --------------------------------------------------------------------------------------------------- atomic writes


def _new_temp_file(final: Path) -> Path:
    """Create an empty, unique temp file beside ``final`` with the mode any new file gets (0666 minus the umask).

    Not ``tempfile.mkstemp``: its 0600 would survive the rename, so run outputs would be private to their writer.
    """
    for _ in range(100):
        tmp = final.parent / f".{final.stem}.{secrets.token_hex(4)}.tmp{final.suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise InnoutError("could not create a temporary file beside it", path=final)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path in the same directory as ``final``; on success ``os.replace`` it onto ``final``.

    On an exception the temp file is removed and ``final`` keeps its previous content (or stays absent). The temp
    name keeps the suffix of ``final`` so libraries that dispatch on it (ffmpeg, pyarrow) still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp_file(final)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise InnoutError("nothing was written to the temporary file", path=final)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------------------------------------------- hashes


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes (raises BadInputError naming the file when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError as err:
        raise BadInputError(f"cannot read file ({err.strerror or err})", path=path) from err
    return h.hexdigest()


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
    """True when ``directory/stage.json`` says done with the same input and config hashes and its outputs exist."""
    rec = read_record(directory)
    if rec is None or rec.status != "done" or rec.input_hash != input_hash or rec.config_hash != config_hash:
        return False
    return all((Path(directory) / rel).exists() for rel in rec.outputs.values())


class Timer:
    """Wall-clock timer (``time.perf_counter``) for stage records."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


# ----------------------------------------------------------------------------------------------- metrics Parquet

METRICS_SCHEMA_VERSION = "3"  # 2: face_status column; 3: psnr_clean, occluded (ground-truth videos)

METRICS_SCHEMA = pa.schema(
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
