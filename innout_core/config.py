"""Typed, validated pipeline configuration (pydantic), named presets, YAML in and out, and the dataset manifest.

A :class:`PipelineConfig` names a preset (``paper``, ``official``, ``fast``, ``tiny-demo``) and holds every stage's
typed settings (``face: FaceConfig``, ``inversion: InversionConfig``, ``joint: JointConfig``, ``sr_tuning:
SRTuningConfig``, ``edit: EditConfig``). All values come from one table, :data:`PRESETS`
(:mod:`innout_core.settings.presets`): validating a config puts the named preset's row under the given values
(nested mappings merge), so ``{"preset": "fast", "joint": {"steps": 5}}`` is the fast preset with 5 stage-A steps.
Per method and per In-N-Out variant the stage settings come from :meth:`PipelineConfig.inversion_config` and
:meth:`~PipelineConfig.joint_config` (:data:`VARIANT_OVERRIDES`). :meth:`PipelineConfig.resolved` expands everything
into one plain dict (saved as ``runs/<run>/run.yaml``). Nothing here imports PyTorch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from innout_core.errors import BadInputError
from innout_core.settings.edit import EditConfig
from innout_core.settings.face import FaceConfig
from innout_core.settings.inversion import InversionConfig
from innout_core.settings.joint import JointConfig
from innout_core.settings.presets import PRESETS, STAGE_SECTIONS, Preset, PresetName, preset_info
from innout_core.settings.sr_tuning import SRTuningConfig
from innout_core.store import atomic_write_text, code_version, hash_file, run_yaml_path

__all__ = [
    "DaskSettings",
    "INNOUT_VARIANTS",
    "METHODS",
    "Manifest",
    "ManifestVideo",
    "MetricsSettings",
    "PRESETS",
    "PipelineConfig",
    "Preset",
    "PresetName",
    "STAGE_SECTIONS",
    "VARIANT_OVERRIDES",
    "VideoSettings",
    "key_path",
    "load_config",
    "load_manifest",
    "manifest_hash",
    "save_resolved",
    "validation_problems",
    "yaml_problem",
]

Method = Literal["w", "w+", "pti", "innout"]
Variant = Literal["no-masks", "auto-masks", "user-masks", "w/o L_b", "w/o L_w"]
Mode = Literal["video", "image"]
METHODS: tuple[str, ...] = ("w", "w+", "pti", "innout")
INNOUT_VARIANTS: tuple[str, ...] = ("no-masks", "auto-masks", "user-masks", "w/o L_b", "w/o L_w")

#: Each In-N-Out variant as typed overrides of the run's stage-A settings (``JointConfig`` fields): the mask
#: source, or the ablated loss weight set to 0 (paper Table 3) without masks.
VARIANT_OVERRIDES: dict[str, dict[str, Any]] = {
    "no-masks": {"mask_mode": "none"},
    "auto-masks": {"mask_mode": "auto"},
    "user-masks": {"mask_mode": "user"},
    "w/o L_b": {"mask_mode": "none", "weights": {"blend_entropy": 0.0}},
    "w/o L_w": {"mask_mode": "none", "weights": {"latent": 0.0}},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VideoSettings(_Strict):
    """Frame selection and result-video encoding."""

    max_frames: int | None = Field(None, ge=1, description="keep at most this many frames (after frame range); None = all")
    fps: float | None = Field(None, gt=0, description="resample to this frame rate before extraction (frames/s); None = source")
    encode: bool = Field(True, description="encode result and side-by-side mp4 videos")


class MetricsSettings(_Strict):
    """Which metrics to compute and with which networks."""

    lpips_net: Literal["alex", "vgg"] = Field("alex", description="LPIPS backbone")
    identity: bool = Field(True, description="compute ArcFace identity similarity (null + reason without the model pack)")
    insightface_pack: str = Field("buffalo_l", description="insightface model pack holding the ArcFace ONNX model")


class DaskSettings(_Strict):
    """Where videos run: a local process cluster, one worker per GPU, or an existing scheduler."""

    cluster: Literal["local", "cuda", "address"] = Field("local", description="local processes | LocalCUDACluster | address")
    workers: int = Field(2, ge=1, description="local cluster: number of worker processes (each runs one video at a time)")
    threads_per_worker: int = Field(1, ge=1, description="torch threads per worker process")
    address: str | None = Field(None, description="scheduler address for cluster='address', e.g. tcp://host:8786")
    memory_limit: str = Field("auto", description="per-worker memory limit (Dask syntax, e.g. '6GiB')")


def _deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _preset_row(name: str) -> dict[str, Any]:
    """Preset ``name`` as PipelineConfig data: its pipeline values and every stage section's values."""
    info = preset_info(name)
    return {"preset": name, **info.values, **{s: dict(getattr(info, s)) for s in STAGE_SECTIONS}}


def key_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """A pydantic error location as a key path: ``joint.weights.l2``, ``videos[1].path`` (``prefix`` first)."""
    tail = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    return (prefix + tail).lstrip(".")


def validation_problems(err: ValidationError, prefix: str = "") -> list[str]:
    """Every error of ``err`` as ``"<key path>: <problem>"`` (the bad value too when it is a short scalar).

    An error without a location (a whole-model check) is named by ``prefix``, or ``(top level)`` without one.
    """
    out: list[str] = []
    for e in err.errors():
        where = key_path(e["loc"], prefix) or "(top level)"
        msg = str(e["msg"]).removeprefix("Value error, ")
        value = e.get("input")
        if e["type"] not in ("missing", "extra_forbidden") and isinstance(value, (str, int, float, bool)) \
                and len(repr(value)) <= 40:
            msg += f" (got {value!r})"
        if f"{where}: {msg}" not in out:
            out.append(f"{where}: {msg}")
    return out


class PipelineConfig(_Strict):
    """Everything one run needs: pipeline settings and every stage's typed settings, from the ``preset``'s row of
    :data:`PRESETS` with the given values on top (nested mappings merge)."""

    preset: PresetName = Field("tiny-demo", description="named preset (see innout_core.settings.presets.PRESETS)")
    generator: str = Field("tiny", description="generator config name in innout_core.eg3d.configs.CONFIGS")
    checkpoint: Path | None = Field(None, description="EG3D .pkl or converted safetensors dir; None = build `generator`")
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1', ...")
    seed: int = Field(0, description="seed of every torch.Generator in the run (per video: seed + hash of the id)")
    methods: list[Method] = Field(default_factory=lambda: list(METHODS), description="methods to run")
    innout_variants: list[Variant] = Field(default_factory=lambda: ["no-masks"], description="In-N-Out variants/ablations")
    modes: list[Mode] = Field(default_factory=lambda: ["video"], description="'video' (all frames) and/or 'image' (frame 0)")
    retries: int = Field(1, ge=0, description="task retries for transient errors (OSError, CUDA OOM)")
    retry_delay_s: float = Field(2.0, ge=0, description="seconds between task retries")
    video: VideoSettings = Field(default_factory=VideoSettings, description="frame selection / encoding")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="metric settings")
    dask: DaskSettings = Field(default_factory=DaskSettings, description="Dask cluster")
    face: FaceConfig = Field(default_factory=FaceConfig, description="face stage: detection, tracking, smoothing")
    inversion: InversionConfig = Field(default_factory=InversionConfig,
                                       description="W / W+ / PTI inversion (all methods; `method` is set per run)")
    joint: JointConfig = Field(default_factory=JointConfig, description="stage A (the variant sets the mask source)")
    sr_tuning: SRTuningConfig = Field(default_factory=SRTuningConfig, description="stage B (SR fine-tuning)")
    edit: EditConfig = Field(default_factory=EditConfig, description="edits, OOD removal, novel views")

    @model_validator(mode="before")
    @classmethod
    def _preset_underneath(cls, data: Any) -> Any:
        """The named preset's row (default ``tiny-demo``) under the given values; an unknown name is left for the
        field check to report."""
        if not isinstance(data, dict):
            return data
        name = data.get("preset", "tiny-demo")
        return _deep_update(_preset_row(name), data) if isinstance(name, str) and name in PRESETS else data

    @field_validator("methods", "innout_variants", "modes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicates in {v}")
        return v

    @model_validator(mode="after")
    def _nonempty(self) -> PipelineConfig:
        if not self.methods or not self.modes:
            raise ValueError("methods and modes must not be empty")
        return self

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_preset(cls, name: str, **values: Any) -> PipelineConfig:
        """Preset ``name`` with ``values`` on top (nested mappings merge); bad input names every bad key path."""
        preset_info(name)  # an unknown name: the choices in one line
        try:
            return cls.model_validate({**values, "preset": name})
        except ValidationError as err:
            raise BadInputError("; ".join(validation_problems(err))) from err

    # ------------------------------------------------------------------ stage configs

    def face_config(self) -> FaceConfig:
        """The face stage's settings."""
        return self.face

    def inversion_config(self, method: str) -> InversionConfig:
        """The inversion settings for ``method`` (``w``, ``w+`` or ``pti``)."""
        return InversionConfig.model_validate({**self.inversion.model_dump(), "method": method})

    def joint_config(self, variant: str) -> JointConfig:
        """Stage A's settings for In-N-Out ``variant`` (:data:`VARIANT_OVERRIDES` on top of ``joint``)."""
        if variant not in VARIANT_OVERRIDES:
            raise BadInputError(f"unknown In-N-Out variant {variant!r}; choose one of {list(VARIANT_OVERRIDES)}")
        return JointConfig.model_validate(_deep_update(self.joint.model_dump(), VARIANT_OVERRIDES[variant]))

    def sr_config(self) -> SRTuningConfig:
        """Stage B's settings."""
        return self.sr_tuning

    def edit_config(self) -> EditConfig:
        """The edit stage's settings."""
        return self.edit

    def _inversion_methods(self) -> list[str]:
        methods = [m for m in self.methods if m != "innout"]
        return methods + (["w+"] if "innout" in self.methods and "w+" not in methods else [])

    def with_workers(self, workers: int | None) -> PipelineConfig:
        """This config with ``dask.workers`` set (validated: at least 1); ``None`` keeps it."""
        if workers is None:
            return self
        try:
            dask = DaskSettings.model_validate({**self.dask.model_dump(), "workers": workers})
        except ValidationError as err:
            msg = str(err.errors()[0]["msg"])
            raise BadInputError(f"workers: {msg} (got {workers!r}): at least one worker process runs the videos") \
                from err
        return self.model_copy(update={"dask": dask})

    def overrides(self) -> dict[str, Any]:
        """The values of this config that differ from its preset's (nested: only the differing keys)."""
        def diff(a: Any, b: Any) -> Any:
            if isinstance(a, dict) and isinstance(b, dict):
                out = {k: d for k, v in a.items() if (d := diff(v, b.get(k, _MISSING))) is not _SAME}
                return out if out else _SAME
            return _SAME if a == b else a

        base = PipelineConfig(preset=self.preset).model_dump(mode="json")
        out = diff(self.model_dump(mode="json"), base)
        return {"preset": self.preset, **({} if out is _SAME else out)}

    def resolved(self) -> dict[str, Any]:
        """Plain dict of this config plus the stage settings each run uses (every inversion method and variant)."""
        stages: dict[str, Any] = {"face": self.face.model_dump(mode="json"),
                                  "sr_tuning": self.sr_tuning.model_dump(mode="json"),
                                  "edit": self.edit.model_dump(mode="json")}
        for m in self.methods:
            if m != "innout":
                stages[f"inversion[{m}]"] = self.inversion_config(m).model_dump(mode="json")
        if "innout" in self.methods:
            stages["inversion[w+ init]"] = self.inversion_config("w+").model_dump(mode="json")
            for v in self.innout_variants:
                stages[f"joint[{v}]"] = self.joint_config(v).model_dump(mode="json")
        return {"pipeline": self.model_dump(mode="json"), "stages": stages}

    def to_yaml(self) -> str:
        """This config as YAML: its preset and the values that differ from it; :func:`load_config` reads it back."""
        return yaml.safe_dump(self.overrides(), sort_keys=False)


_SAME = object()
_MISSING = object()


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line with its line and column (1-based): ``line 3, column 7: mapping values are not
    allowed here``."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    text = f"{context}, {problem}" if context else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {text}" if mark is not None else text


def read_yaml(path: Path, what: str) -> tuple[Any, bytes]:
    """The parsed YAML document of ``path`` and its bytes; an unreadable file or bad YAML is bad input naming
    ``path`` and, for YAML, the line and column (``what``: "config", "manifest")."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise BadInputError(f"cannot read {what} ({err.strerror or err})", path=path) from err
    try:
        return yaml.safe_load(raw.decode("utf-8")), raw
    except UnicodeDecodeError as err:
        raise BadInputError(f"{what} is not UTF-8 text ({err.reason} at byte {err.start})", path=path) from err
    except yaml.YAMLError as err:
        raise BadInputError(f"{what} is not valid YAML ({yaml_problem(err)})", path=path) from err


def load_config(path: str | Path | None = None, preset: str | None = None) -> PipelineConfig:
    """Read a YAML config (its ``preset`` key, or ``preset``, picks the base); no path = the preset alone.

    Every section is validated here, the stage sections too: one :class:`BadInputError` names the file and every
    bad key path with its problem. A saved ``run.yaml`` is read by its ``pipeline`` section.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        doc, _ = read_yaml(p, "config")
        if doc is not None and not isinstance(doc, dict):
            raise BadInputError("a config file must be a YAML mapping", path=p)
        data = dict(doc or {})
        if "pipeline" in data and isinstance(data["pipeline"], dict):  # a saved run.yaml
            data = dict(data["pipeline"])
    name = preset or data.pop("preset", None) or "tiny-demo"
    data.pop("preset", None)
    try:
        preset_info(str(name))
        return PipelineConfig.model_validate({**data, "preset": name})
    except BadInputError as err:
        raise BadInputError(err.message, path=path) from err
    except ValidationError as err:
        raise BadInputError("; ".join(validation_problems(err)), path=path) from err


def save_resolved(cfg: PipelineConfig, run_dir: str | Path, manifest_hash: str, manifest: Path | None = None) -> Path:
    """Write ``runs/<run>/run.yaml``: the resolved config, code version, manifest path and hash (atomic).

    :func:`load_config` reads the ``pipeline`` section of that file back (``innout retry`` does).
    """
    doc = {"code_version": code_version(), "manifest": str(manifest) if manifest else None,
           "manifest_hash": manifest_hash, **cfg.resolved()}
    return atomic_write_text(run_yaml_path(run_dir), yaml.safe_dump(doc, sort_keys=False))


# ---------------------------------------------------------------------------------------------------- manifests


class ManifestVideo(_Strict):
    """One manifest entry. Paths are relative to the manifest file."""

    id: str = Field(description="unique id (directory name under runs/<run>/videos/)", pattern=r"^[A-Za-z0-9._+-]+$")
    path: Path = Field(description="the video file (or a frames directory)")
    frame_range: tuple[int, int] | None = Field(None, description="[first, last) source frame indices")
    masks: Path | None = Field(None, description="user masks (.npz with 'masks' [T,1,H,W], 1 = face) for 'user-masks'")
    depth: Path | None = Field(None, description="monocular depth per frame for the single-image loss L_D (.npz with "
                                                 "'depth' or 'disparity' [T,1,H,W], any scale and shift, e.g. MiDaS)")
    cameras: Path | None = Field(None, description="given cameras (.npy [T,25]) for the 'given' face backend")
    landmarks: Path | None = Field(None, description="given landmarks (.npy [T,68|5,2]) for the 'given' face backend")
    clean: Path | None = Field(None, description="ground-truth clean video without the occluder (synthetic data); "
                                                 "shown beside the results in the report")

    @field_validator("frame_range")
    @classmethod
    def _range(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not (0 <= v[0] < v[1]):
            raise ValueError(f"frame_range must be [first, last) with 0 <= first < last, got {list(v)}")
        return v


class Manifest(_Strict):
    """A dataset manifest: a name and its videos (ids unique)."""

    name: str = Field(description="dataset name")
    videos: list[ManifestVideo] = Field(description="the videos", min_length=1)
    root: Path = Field(Path("."), description="directory the relative paths are resolved against (set on load)")
    file: Path | None = Field(None, description="the manifest file (set on load)")
    sha256: str | None = Field(None, description="sha256 of the manifest file's bytes (set on load)")

    @model_validator(mode="after")
    def _unique_ids(self) -> Manifest:
        seen: set[str] = set()
        for v in self.videos:
            if v.id in seen:
                raise ValueError(f"duplicate video id {v.id!r}")
            seen.add(v.id)
        return self

    def resolve(self, p: Path | None) -> Path | None:
        """A manifest-relative path made absolute (absolute paths pass through)."""
        return None if p is None else (p if p.is_absolute() else (self.root / p)).resolve()

    def video(self, video_id: str) -> ManifestVideo:
        for v in self.videos:
            if v.id == video_id:
                return v
        raise BadInputError(f"no video {video_id!r} in manifest {self.name!r}")


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest YAML; errors name the manifest and the entry (``videos[2].path: ...``). The
    result knows its file and the sha256 of the bytes it was parsed from (``file``, ``sha256``)."""
    p = Path(path)
    data, raw = read_yaml(p, "manifest")
    if not isinstance(data, dict):
        raise BadInputError("a manifest must be a YAML mapping with 'name' and 'videos'", path=p)
    data.update(root=str(p.resolve().parent), file=str(p.resolve()), sha256=hashlib.sha256(raw).hexdigest())
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            loc = e["loc"]
            entry = ""
            if len(loc) >= 2 and loc[0] == "videos" and isinstance(loc[1], int):
                vids = data.get("videos") or []
                if loc[1] < len(vids) and isinstance(vids[loc[1]], dict) and "id" in vids[loc[1]]:
                    entry = f" (video {vids[loc[1]]['id']!r})"
            where = f"manifest entry {key_path(loc)}{entry}" if loc else "manifest"
            problems.append(f"{where}: {str(e['msg']).removeprefix('Value error, ')}")
        raise BadInputError("; ".join(problems), path=p) from err


def manifest_hash(manifest: str | Path | Manifest) -> str:
    """sha256 of the manifest file's bytes (recorded in run.yaml): of the bytes a loaded manifest was parsed from."""
    if isinstance(manifest, Manifest) and manifest.sha256 is not None:
        return manifest.sha256
    return hash_file(manifest.file if isinstance(manifest, Manifest) else manifest)
