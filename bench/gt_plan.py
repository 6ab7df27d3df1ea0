"""Ground-truth benchmark (bench/ground_truth.py): the settings, the run points, their hashes and file paths, the plan.

Every run is a :class:`RunSpec` under one :class:`BenchSettings`; its JSON is named by a hash of both (plus
:data:`BENCH_VERSION`), so a changed setting is a new run and a finished one is skipped. :data:`PATHS` says where
results and figures go (tests point it at a temporary folder).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Paths:
    """Where the benchmark writes: ``results`` (JSON, markdown, run files) and ``docs`` (the full sweep's plots)."""

    results: Path = ROOT / "bench" / "results"
    docs: Path = ROOT / "docs"


#: the one place the output folders are read from (tests set ``PATHS.results`` / ``PATHS.docs``)
PATHS = Paths()


#: Bumped whenever the evaluation or the fixed settings below change: part of every settings hash.
BENCH_VERSION = 2


VIDEOS = ("box", "sphere", "bar", "static")  # the `tiny` suite; see videos() for the settings' generator


GENERATORS = ("tiny", "tiny-face")


MaskSource = Literal["none", "user", "auto-residual", "auto-refined", "auto-refined2", "auto-share"]


#: Stage-A settings shared by every run (on top of JointConfig's field defaults): the tiny-demo architecture.
BASE_JOINT: dict[str, Any] = {"ood_resolution": 32, "ood_channels": 32, "lr": 2e-2, "checkpoint_every": 0,
                              "weights": {"lpips": 0.0}}


TARGETS = {"psnr_gain_occluded_db": 3.0, "iou_user": 0.6, "iou_auto": 0.5, "removal_gain_db": 3.0,
           "clean_frames_loss_db": 0.0}


class BenchSettings(BaseModel):
    """What every run of one sweep shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    frames: int = Field(8, ge=2, description="frames per video")
    seed: int = Field(0, description="seed of the videos and of every run")
    wplus_epochs: int = Field(100, ge=1, description="W+ epochs (all frames per step; see the loss change it reports)")
    quick: bool = Field(False, description="the test/smoke setting (separate result files)")
    generator: Literal["tiny", "tiny-face"] = Field("tiny", description="the face generator and its video suite")

    @property
    def tag(self) -> str:
        return ("quick-" if self.quick else "") + f"f{self.frames}-s{self.seed}" + (
            "" if self.generator == "tiny" else f"-{self.generator}")


def settings_dump(s: BenchSettings, exclude: set[str]) -> dict[str, Any]:
    """``s.model_dump(exclude=...)`` for the settings hashes. ``generator`` is left out when it is ``tiny``: the
    tiny sweep's runs and W+ fits were hashed before the option existed and must keep their hashes. Other generators
    add :func:`generator_fingerprint`, so their runs are redone when the weights or the videos change."""
    d = s.model_dump(exclude=exclude)
    if d.get("generator") == "tiny":
        del d["generator"]
    elif "generator" in d:
        d["generator_fingerprint"] = generator_fingerprint(s.generator, s.frames, s.seed)
    return d


@functools.lru_cache(maxsize=8)
def generator_fingerprint(name: str, frames: int, seed: int) -> str:
    """Hash of a generator's shipped weights (the sha256 its ``config.json`` records) and of its suite's video
    configs: ``tiny-face``'s weights are re-exported as its training goes on."""
    from innout_core.eg3d.configs import weights_dir
    from innout_core.synthetic import ground_truth_suite

    folder = weights_dir(name)
    weights = json.loads((folder / "config.json").read_text())["weights"]["sha256"] if folder else None
    suite = {k: v.model_dump() for k, v in ground_truth_suite(frames, seed, name).items()}  # type: ignore[arg-type]
    return settings_hash(weights, suite)


def videos(s: BenchSettings) -> tuple[str, ...]:
    """The video names of the settings' generator suite (``VIDEOS`` for ``tiny``)."""
    from innout_core.synthetic import suite_names

    return suite_names(s.generator)


class RunSpec(BaseModel):
    """One point of the sweep."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    video: Literal["box", "sphere", "bar", "static", "hand", "glasses", "microphone"]
    start: Literal["wplus", "wplus-masked", "oracle", "canonical"] = Field(
        "wplus", description="W+ fit per frame, the masked W+ fit with this run's masks (face region only), the "
        "true latents, or the W+ fit's shared canonical latent")
    steps: int = Field(1000, ge=0, description="stage-A steps (one frame each)")
    lr_w: float = Field(0.0, ge=0, description="w+ learning rate (0 = frozen)")
    blend_area: float = Field(0.05, ge=0, description="weight of the blend-area regulariser")
    blend_entropy: float = Field(0.05, ge=0, description="weight of the blend-entropy regulariser")
    masks: MaskSource = Field("user", description="OOD masks: none, the true ones, automatic")
    stage_b_epochs: int = Field(0, ge=0, description="stage-B (SR fine-tuning) epochs, 0 = no stage B")
    joint: dict[str, Any] = Field(default_factory=dict, description="further JointConfig overrides")
    auto: dict[str, Any] = Field(default_factory=dict, description="auto-mask settings overrides")

    def config_key(self) -> str:
        """Everything but the video: runs with equal keys are averaged over videos."""
        d = self.model_dump(exclude={"video"})
        return json.dumps(d, sort_keys=True)

    def label(self) -> str:
        j = "".join(f"-{k}{_short(v)}" for k, v in sorted(_flat(self.joint).items()))
        a = "".join(f"-{k}{_short(v)}" for k, v in sorted(self.auto.items()))
        return (f"{self.start}-s{self.steps}-lrw{self.lr_w:g}-b{self.blend_area:g}_{self.blend_entropy:g}-"
                f"m{self.masks}" + (f"-B{self.stage_b_epochs}" if self.stage_b_epochs else "") + j + a)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def settings_hash(*parts: Any) -> str:
    """sha256 (16 hex) of the JSON of ``parts`` (key-sorted) and :data:`BENCH_VERSION`."""
    blob = json.dumps([BENCH_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def wplus_config(s: BenchSettings) -> dict[str, Any]:
    """The W+ fit (InversionConfig fields): the tiny-demo inversion run for ``wplus_epochs``."""
    return {"method": "w+", "steps": s.wplus_epochs, "batch_size": 0, "lr": 3e-2, "lambda_lpips": 0.0,
            "init_samples": 8, "init_metric": "l2", "init_stride": 4}


def joint_config_dict(spec: RunSpec) -> dict[str, Any]:
    """The JointConfig fields this run sets (the rest are JointConfig's defaults)."""
    mode = {"none": "none", "user": "user"}.get(spec.masks, "user")  # automatic masks are passed in as masks
    d = {**BASE_JOINT, "steps": spec.steps, "lr_w": spec.lr_w, "mask_mode": mode,
         "weights": {**BASE_JOINT["weights"], "blend_area": spec.blend_area, "blend_entropy": spec.blend_entropy}}
    for k, v in spec.joint.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return d


def method_joint(s: BenchSettings) -> dict[str, Any]:
    """The stage-A settings the issue-20 rows recommend (``RunSpec.joint``): the mask-supervised OOD share
    (``weights.blend_mask``: IoU 0.24 -> 0.89 on the hand, 0.16 -> 0.88 on the microphone, seed 0) and, on
    ``tiny-face`` (an SR trained without noise), the generator's SR noise in every composite (clean frames 34.96 ->
    40.22 dB on the microphone)."""
    j: dict[str, Any] = {"weights": {"blend_mask": 1.0}}
    if s.generator == "tiny-face":
        j["sr_noise"] = "generator"
    return j


def sweep_plan(s: BenchSettings) -> list[tuple[int, RunSpec]]:
    """(priority, spec) pairs, most decisive first. ``--quick``: one video, a handful of short runs."""
    if s.quick:
        q = videos(s)[0]  # box on tiny, hand on tiny-face
        return [(1, RunSpec(video=q, start="oracle", steps=20, masks="user")),
                (1, RunSpec(video=q, start="wplus-masked", steps=20, masks="user")),
                (1, RunSpec(video=q, start="wplus", steps=20, masks="user", lr_w=5e-5)),
                (2, RunSpec(video=q, start="wplus", steps=20, masks="auto-residual")),
                (2, RunSpec(video=q, start="wplus", steps=10, masks="none", stage_b_epochs=1))]
    plan: list[tuple[int, RunSpec]] = []

    def add(priority: int, **kw: Any) -> None:
        plan.extend((priority, RunSpec(video=v, **kw)) for v in videos(s))

    mid = {"blend_area": 0.3, "blend_entropy": 0.3}  # measured on box (oracle, user masks): IoU 0.55 vs 0.23 at 0.05
    strong = {"blend_area": 1.0, "blend_entropy": 1.0}
    rec = method_joint(s)
    add(1, start="oracle", steps=1000, masks="user", joint=rec)
    add(1, start="wplus-masked", steps=1000, masks="user", joint=rec)
    add(1, start="wplus-masked", steps=1000, masks="auto-residual", auto={"reference": "canonical"}, joint=rec)
    add(1, start="wplus-masked", steps=1000, masks="auto-refined", joint=rec)
    add(1, start="wplus-masked", steps=1000, masks="auto-refined2", joint=rec)
    # before the recommended stage-A settings (the release's constant SR noise, no mask-supervised share)
    add(1, start="oracle", steps=1000, masks="user")
    # issue 20: the occluder-aware start (masked W+ fit with the run's masks), user and automatic masks
    add(1, start="wplus-masked", steps=1000, masks="user")
    add(1, start="wplus-masked", steps=1000, masks="auto-residual", auto={"reference": "canonical"})
    add(1, start="wplus", steps=1000, masks="user")
    add(2, start="wplus", steps=1000, masks="user", lr_w=0.0, **mid)
    add(2, start="wplus", steps=1000, masks="user", lr_w=5e-5, **mid)
    add(3, start="wplus", steps=1000, masks="auto-residual", **mid)
    add(3, start="wplus", steps=1000, masks="auto-share", **mid)
    # the W+ fit per frame reproduces the occluder (see the residual study); its shared canonical latent cannot
    add(4, start="canonical", steps=1000, masks="user", **mid)
    add(4, start="canonical", steps=1000, masks="auto-residual", **mid)
    add(4, start="wplus", steps=1000, masks="auto-residual", auto={"reference": "canonical"}, **mid)
    add(4, start="canonical", steps=1000, masks="user", lr_w=5e-4, **mid)
    # tiny-face: from the canonical start the 0.3 regulariser collapses b (OOD share 0.09 on the occluder); the oracle
    # separates at 0.05 (share 0.55 on / 0.01 off)
    add(4, start="canonical", steps=1000, masks="user")
    add(4, start="canonical", steps=1000, masks="user", lr_w=5e-4)
    add(4, start="canonical", steps=1000, masks="auto-residual")
    add(4, start="wplus", steps=1000, masks="auto-share", auto={"reference": "canonical"}, **mid)
    add(4, start="oracle", steps=1000, masks="user", **mid)
    add(4, start="wplus", steps=1000, masks="none", **mid)
    add(4, start="oracle", steps=1000, masks="user", **strong)
    add(4, start="wplus", steps=1000, masks="user", **strong)
    add(5, start="wplus", steps=100, masks="user", **mid)
    add(5, start="oracle", steps=100, masks="user", **mid)
    add(5, start="wplus", steps=300, masks="user", **mid)
    add(5, start="wplus", steps=1000, masks="user", lr_w=5e-4, **mid)
    add(6, start="wplus", steps=1000, masks="user", stage_b_epochs=20, **mid)
    add(6, start="oracle", steps=300, masks="user", **mid)
    add(6, start="oracle", steps=1000, masks="none", **mid)
    add(7, start="wplus", steps=3000, masks="user", **mid)
    add(7, start="oracle", steps=3000, masks="user", **mid)
    add(7, start="wplus", steps=1000, masks="user", blend_area=0.0, blend_entropy=0.0)
    # item 2 of issue 13: the paper's sums with and without L_w (drift of w), w+ learning rate of the paper preset
    add(8, start="wplus", steps=1000, masks="user", lr_w=5e-4, joint={"reduction": "sum", "weights": {"latent": 1.0}},
        **mid)
    add(8, start="wplus", steps=1000, masks="user", lr_w=5e-4, joint={"reduction": "sum"}, **mid)
    return plan


def results_dir(s: BenchSettings) -> Path:
    return PATHS.results / "ground_truth" / s.tag


def run_path(s: BenchSettings, spec: RunSpec) -> Path:
    return results_dir(s) / "runs" / f"{spec.video}-{spec.label()}-{run_hash(s, spec)[:8]}.json"


def run_hash(s: BenchSettings, spec: RunSpec) -> str:
    wp = wplus_config(s) if spec.start != "oracle" else None  # the W+ epochs matter only to W+-start runs
    return settings_hash(settings_dump(s, {"wplus_epochs"}), spec.model_dump(), BASE_JOINT, wp)


def wplus_paths(s: BenchSettings, video: str, masks: str | None = None) -> tuple[Path, Path]:
    """(metrics JSON, latents .pt) of the cached W+ fit of ``video``; ``masks`` ('user', 'auto-residual',
    'auto-refined' or 'auto-refined2'): the
    masked fit with those masks."""
    h = settings_hash(settings_dump(s, {"quick"}), video, wplus_config(s))[:8]
    d = results_dir(s) / "wplus"
    stem = f"{video}-{h}" if masks is None else f"{video}-masked-{masks}-{settings_hash(h, MASKED_FIT_VERSION)[:8]}"
    return d / f"{stem}.json", d / "cache" / f"{stem}.pt"


#: Part of the masked fits' cache key (bump when their masks or figures change).
MASKED_FIT_VERSION = 1


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_done(s: BenchSettings, spec: RunSpec) -> bool:
    d = _read_json(run_path(s, spec))
    return d is not None and d.get("settings_hash") == run_hash(s, spec)


def wplus_done(s: BenchSettings, video: str) -> bool:
    j, pt = wplus_paths(s, video)
    return j.is_file() and pt.is_file()


def _video_seed(s: BenchSettings, video: str) -> int:
    return s.seed * 1000 + videos(s).index(video) * 10


#: The PTI baseline on each W+ fit's pivots (the tiny-demo preset's PTI settings).
PTI_CONFIG: dict[str, Any] = {"pti_steps": 20, "pti_lr": 1e-3, "pti_lambda_lpips": 0.0, "locality_lambda_lpips": 0.0}


def pti_path(s: BenchSettings, video_name: str) -> Path:
    """The cached PTI baseline figures of a video (PTI on its W+ fit's pivots)."""
    j, _ = wplus_paths(s, video_name)
    return j.with_name(j.stem + f"-pti-{settings_hash(PTI_CONFIG)[:8]}.json")
