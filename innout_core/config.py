"""Typed, validated pipeline configuration (pydantic), named presets, YAML in and out, and the dataset manifest.

A :class:`PipelineConfig` names a preset (``paper``, ``official``, ``fast``, ``tiny-demo``; see :data:`PRESETS`)
and per-stage *overrides*. Each stage's typed config is the stage engineer's own model, built from that model's
preset and the overrides: :meth:`PipelineConfig.face_config`, :meth:`~PipelineConfig.inversion_config`,
:meth:`~PipelineConfig.joint_config`, :meth:`~PipelineConfig.sr_config`, :meth:`~PipelineConfig.edit_config`.
:meth:`PipelineConfig.resolved` expands everything into one plain dict (saved as ``runs/<run>/run.yaml``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from innout_core.errors import BadInputError
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
    "PresetName",
    "STAGE_SECTIONS",
    "StageConfigError",
    "VideoSettings",
    "key_path",
    "load_config",
    "load_manifest",
    "manifest_hash",
    "save_resolved",
    "validation_problems",
    "variant_overrides",
    "yaml_problem",
]

PresetName = Literal["paper", "official", "fast", "tiny-demo"]
Method = Literal["w", "w+", "pti", "innout"]
Variant = Literal["no-masks", "auto-masks", "user-masks", "w/o L_b", "w/o L_w"]
Mode = Literal["video", "image"]
METHODS: tuple[str, ...] = ("w", "w+", "pti", "innout")
INNOUT_VARIANTS: tuple[str, ...] = ("no-masks", "auto-masks", "user-masks", "w/o L_b", "w/o L_w")


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


class PresetInfo(BaseModel):
    """One named preset: what it is for and the pipeline-level values it sets."""

    description: str
    values: dict[str, Any]


#: The presets, in one place. Stage configs come from each stage model's own ``preset(name)`` of the same name.
PRESETS: dict[str, PresetInfo] = {
    "paper": PresetInfo(
        description="The paper's settings (§4): 512x512 ffhq512-128 generator, paper loss weights and step counts, "
        "all methods and ablations; needs the EG3D checkpoint and a GPU.",
        values=dict(generator="ffhq512-128", face={"backend": "insightface"},
                    innout_variants=["no-masks", "w/o L_b", "w/o L_w"], modes=["video", "image"]),
    ),
    "official": PresetInfo(
        description="The official release's documented settings (docs/method.md §9), with its "
        "composite form and mask usage; needs the EG3D checkpoint and a GPU.",
        values=dict(generator="ffhq512-128", face={"backend": "insightface"},
                    innout_variants=["no-masks", "auto-masks", "user-masks"], modes=["video"]),
    ),
    "fast": PresetInfo(
        description="Few optimisation steps of the paper's recipe for a quick look at real videos (minutes per "
        "video on a GPU); dlib face backend, no weights beyond the EG3D checkpoint.",
        values=dict(generator="ffhq512-128", face={"backend": "dlib"}, innout_variants=["no-masks"],
                    modes=["video"], video={"max_frames": 32}),
    ),
    "tiny-demo": PresetInfo(
        description="The embedded default: the `tiny-face` generator (the tiny architecture trained on procedural "
        "heads, shipped), ground-truth videos of held-out heads with hand / glasses / microphone occluders and "
        "given cameras; the budget goes where the method shows (W+ / PTI baselines and In-N-Out without masks, with "
        "automatic masks and with the true masks, converged fits, enough stage-A steps), video mode only, no "
        "ablation branches (Table 3 needs the other presets): the occluder removed against the clean truth on a "
        "2-core CPU in minutes.",
        values=dict(generator="tiny-face", face={"backend": "given"}, methods=["w+", "pti", "innout"],
                    # measured on the demo's videos (3 frames): the masked fit's render against the clean frame peaks
                    # near 40 epochs (hand: 27.3 dB at 40, 26.8 at 60, 26.2 at 100: the hidden region drifts);
                    # stage B is skipped: after a short stage A the OOD field has not taken the occluder yet, and
                    # tuning the SR on those composites teaches it to draw the occluder (removal -2.0 dB on hand
                    # and glasses with 1 epoch)
                    inversion={"steps": 40, "init_samples": 8, "pti_steps": 10},
                    # the composite's SR noise is tiny-face's own ('none': its SR was trained without noise); the
                    # release's constant noise costs the removal 0.9-2.2 dB against the fit's own render there
                    joint={"steps": 60, "checkpoint_every": 30, "sr_noise": "generator"}, sr_tuning={"epochs": 0},
                    innout_variants=["no-masks", "auto-masks", "user-masks"],
                    modes=["video"], metrics={"identity": False}, dask={"workers": 2}),
    ),
}


def _deep_update(base: dict, upd: dict) -> dict:
    out = dict(base)
    for k, v in upd.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _stage_model(module: str, name: str) -> type[BaseModel]:
    return getattr(importlib.import_module(module), name)


def _preset_data(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if name not in PRESETS:
        raise BadInputError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return _deep_update({"preset": name, **PRESETS[name].values}, overrides)


def _preset_of(model: type[BaseModel], preset: str, *args: Any) -> BaseModel:
    maker = getattr(model, "preset", None)
    return maker(preset, *args) if callable(maker) else model(*args) if args else model()


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
        out.append(f"{where}: {msg}")
    return out


class StageConfigError(BadInputError):
    """One or more stage-section overrides do not fit the stage's model; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _apply(model_cls: type[BaseModel], base: BaseModel, overrides: dict[str, Any], where: str) -> BaseModel:
    data = _deep_update(base.model_dump(), overrides)
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise StageConfigError(validation_problems(err, where)) from err


#: The stage sections of a config: overrides of each stage engineer's own model.
STAGE_SECTIONS: tuple[str, ...] = ("face", "inversion", "joint", "sr_tuning", "edit")


class PipelineConfig(_Strict):
    """Everything one run needs. Stage sections hold overrides on top of the stage model's preset of ``preset``."""

    preset: PresetName = Field("tiny-demo", description="named preset (see innout_core.config.PRESETS)")
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
    face: dict[str, Any] = Field(default_factory=dict, description="overrides of innout_core.face FaceConfig")
    inversion: dict[str, Any] = Field(default_factory=dict, description="overrides of InversionConfig (all methods)")
    joint: dict[str, Any] = Field(default_factory=dict, description="overrides of JointConfig (stage A)")
    sr_tuning: dict[str, Any] = Field(default_factory=dict, description="overrides of SRTuningConfig (stage B)")
    edit: dict[str, Any] = Field(default_factory=dict, description="overrides of EditConfig")

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
    def from_preset(cls, name: str, **overrides: Any) -> PipelineConfig:
        """The preset's values with ``overrides`` (nested dicts merge) applied (stage sections are checked by
        :meth:`stage_problems`; :func:`load_config` does both)."""
        try:
            return cls.model_validate(_preset_data(name, overrides))
        except ValidationError as err:
            raise BadInputError("; ".join(validation_problems(err))) from err

    # ------------------------------------------------------------------ stage configs

    def face_config(self) -> BaseModel:
        """``innout_core.face.FaceConfig`` with the ``face`` overrides."""
        cls = _stage_model("innout_core.face", "FaceConfig")
        return _apply(cls, _preset_of(cls, self.preset), self.face, "face")

    def inversion_config(self, method: str) -> BaseModel:
        """``InversionConfig.preset(preset, method)`` with the ``inversion`` overrides."""
        cls = _stage_model("innout_core.inversion", "InversionConfig")
        return _apply(cls, cls.preset(self.preset, method), {**self.inversion, "method": method}, "inversion")

    def joint_config(self, variant: str) -> BaseModel:
        """``JointConfig.preset(preset)`` with overrides, then the variant: mask mode, or an ablated loss weight 0."""
        cls = _stage_model("innout_core.joint", "JointConfig")
        base = _apply(cls, cls.preset(self.preset), self.joint, "joint")
        return _apply(cls, base, variant_overrides(variant, base), f"joint ({variant})")

    def sr_config(self) -> BaseModel:
        """``SRTuningConfig.preset(preset)`` with the ``sr_tuning`` overrides."""
        cls = _stage_model("innout_core.sr_tuning", "SRTuningConfig")
        return _apply(cls, _preset_of(cls, self.preset), self.sr_tuning, "sr_tuning")

    def edit_config(self) -> BaseModel:
        """``EditConfig`` (its preset when it has one) with the ``edit`` overrides."""
        cls = _stage_model("innout_core.edit", "EditConfig")
        return _apply(cls, _preset_of(cls, self.preset), self.edit, "edit")

    def stage_problems(self) -> list[str]:
        """Every problem of the stage sections (``face``, ``inversion``, ``joint``, ``sr_tuning``, ``edit``) as
        ``"<section>.<key path>: <problem>"``, each once; built as the run builds them (each method, each variant).
        A stage whose module is not installed is not checked (the run skips it and says so)."""
        makers: list[Any] = [self.face_config, lambda: [self.inversion_config(m) for m in self._inversion_methods()]]
        makers += [lambda: [self.joint_config(v) for v in self.innout_variants or ["no-masks"]],
                   self.sr_config, self.edit_config]
        problems: list[str] = []
        for make in makers:
            try:
                make()
            except ImportError:
                continue
            except StageConfigError as err:
                problems += [p for p in err.problems if p not in problems]
        return problems

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

    def resolved(self) -> dict[str, Any]:
        """Plain dict of this config plus every stage config fully expanded (stages not importable are noted)."""
        out: dict[str, Any] = {"pipeline": self.model_dump(mode="json"), "stages": {}}
        makers: dict[str, Any] = {"face": self.face_config, "sr_tuning": self.sr_config, "edit": self.edit_config}
        for m in self.methods:
            if m != "innout":
                makers[f"inversion[{m}]"] = lambda m=m: self.inversion_config(m)
        if "innout" in self.methods:
            makers["inversion[w+ init]"] = lambda: self.inversion_config("w+")
            for v in self.innout_variants:
                makers[f"joint[{v}]"] = lambda v=v: self.joint_config(v)
        for key, make in makers.items():
            try:
                out["stages"][key] = make().model_dump(mode="json")
            except ImportError as err:
                out["stages"][key] = {"unavailable": str(err)}
        return out

    def to_yaml(self) -> str:
        """This config (not expanded) as YAML; :func:`load_config` reads it back."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def variant_overrides(variant: str, joint_cfg: BaseModel) -> dict[str, Any]:
    """JointConfig overrides for an In-N-Out variant (mask mode, or the ablated weight set to 0)."""
    if variant == "no-masks":
        return {"mask_mode": "none"}
    if variant == "auto-masks":
        return {"mask_mode": "auto"}
    if variant == "user-masks":
        return {"mask_mode": "user"}
    fields = joint_cfg.model_dump()
    key = {"w/o L_b": ("blend_entropy", "w_blend_entropy", "lambda_blend_entropy"),
           "w/o L_w": ("latent", "w_latent", "lambda_latent")}[variant]
    weights = fields.get("weights")
    if isinstance(weights, dict):
        for k in key:
            if k in weights:
                return {"mask_mode": "none", "weights": {k: 0.0}}
    for k in key:
        if k in fields:
            return {"mask_mode": "none", k: 0.0}
    raise BadInputError(f"JointConfig has no loss weight for {variant!r} (looked for {key})")


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line with its line and column (1-based): ``line 3, column 7: mapping values are not
    allowed here``."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    text = f"{context}, {problem}" if context else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {text}" if mark is not None else text


def load_config(path: str | Path | None = None, preset: str | None = None, stages: bool = True) -> PipelineConfig:
    """Read a YAML config (its ``preset`` key, or ``preset``, picks the base); no path = the preset alone.

    Every section is validated here, the stage sections too (against each stage's own model, for every method and
    variant the config runs): one :class:`BadInputError` names the file and every bad key path with its problem.
    ``stages=False`` checks the pipeline section only (the stage models import PyTorch: the command's quick
    checks before a run skip them, and check them once some video passed its input check).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text("utf-8")) or {}
        except OSError as err:
            raise BadInputError(f"cannot read config ({err.strerror or err})", path=p) from err
        except yaml.YAMLError as err:
            raise BadInputError(f"not valid YAML ({yaml_problem(err)})", path=p) from err
        if not isinstance(data, dict):
            raise BadInputError("a config file must be a YAML mapping", path=p)
        if "pipeline" in data and isinstance(data["pipeline"], dict):  # a saved run.yaml
            data = data["pipeline"]
    name = preset or data.pop("preset", None) or "tiny-demo"
    data.pop("preset", None)
    try:
        merged = _preset_data(str(name), data)
    except BadInputError as err:
        raise BadInputError(err.message, path=path) from err
    problems: list[str] = []
    try:
        cfg = PipelineConfig.model_validate(merged)
    except ValidationError as err:
        problems += validation_problems(err)
        if not stages:
            raise BadInputError("; ".join(problems), path=path) from err
        # still check the stage sections that are mappings, against the preset's methods and variants
        base = PipelineConfig.model_validate(_preset_data(str(name), {}))
        cfg = base.model_copy(update={k: merged[k] for k in STAGE_SECTIONS if isinstance(merged.get(k), dict)})
        problems += [p for p in cfg.stage_problems() if p not in problems]
        raise BadInputError("; ".join(problems), path=path) from err
    problems = cfg.stage_problems() if stages else []
    if problems:
        raise BadInputError("; ".join(problems), path=path)
    return cfg


def save_resolved(cfg: PipelineConfig, run_dir: str | Path, manifest_hash: str, manifest: Path | None = None,
                  resolve: bool = True) -> Path:
    """Write ``runs/<run>/run.yaml``: the resolved config, code version, manifest path and hash (atomic).

    :func:`load_config` reads the ``pipeline`` section of that file back (``innout retry`` does).
    """
    body = cfg.resolved() if resolve else {"pipeline": cfg.model_dump(mode="json"),
                                           "stages": "not expanded: no video passed the input check yet"}
    doc = {"code_version": code_version(), "manifest": str(manifest) if manifest else None,
           "manifest_hash": manifest_hash, **body}
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
    """Read and validate a manifest YAML; errors name the manifest and the entry (``videos[2].path: ...``)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text("utf-8"))
    except OSError as err:
        raise BadInputError(f"cannot read manifest ({err.strerror or err})", path=p) from err
    except yaml.YAMLError as err:
        raise BadInputError(f"manifest is not valid YAML ({yaml_problem(err)})", path=p) from err
    if not isinstance(data, dict):
        raise BadInputError("a manifest must be a YAML mapping with 'name' and 'videos'", path=p)
    data["root"] = str(p.resolve().parent)
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


def manifest_hash(path: str | Path) -> str:
    """sha256 of the manifest file's bytes (recorded in run.yaml)."""
    return hash_file(path)
