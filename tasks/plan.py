"""Which stages a video goes through for a config: its result branches and stage names, in execution order.

Pure data (no Prefect, no PyTorch, no I/O beyond finding which optional modules are installed). It lives in ``tasks`` because stage names are the task layer's vocabulary (each is a
stage directory a task writes); the flows (video flow, ``innout status``, progress) import it from here, or via the
re-export :mod:`flows.plan`.
"""

from __future__ import annotations

import importlib.machinery
from dataclasses import dataclass
from functools import lru_cache

from innout_core.config import ManifestVideo, PipelineConfig

__all__ = ["MASKED_VARIANTS", "REQUIRES", "Branch", "branches", "downstream", "innout_start", "masks_stage",
           "missing_modules", "plan_stages", "planned_stages", "variant_slug"]

#: innout_core modules each stage kind needs; a branch whose module is not installed is skipped and reported.
REQUIRES = {
    "face": ("innout_core.face.preprocess",),
    "invert": ("innout_core.inversion",),
    "masks": ("innout_core.auto_masks", "innout_core.joint"),
    "stage-a": ("innout_core.joint",),
    "stage-b": ("innout_core.sr_tuning",),
    "edits": ("innout_core.edit",),
    "metrics": ("innout_core.metrics",),
}

_SLUGS = {"no-masks": "no-masks", "auto-masks": "auto-masks", "user-masks": "user-masks",
          "w/o L_b": "wo-Lb", "w/o L_w": "wo-Lw"}

#: In-N-Out variants whose start is the masked W+ fit (face region only) with the variant's own masks.
MASKED_VARIANTS = ("user-masks", "auto-masks")


def variant_slug(variant: str) -> str:
    """Directory-safe name of an In-N-Out variant ('w/o L_b' -> 'wo-Lb')."""
    return _SLUGS[variant]


def masks_stage(mode: str) -> str:
    """The automatic-masks stage of a mode: ``masks-auto`` / ``masks-auto-image``."""
    return "masks-auto" + ("-image" if mode == "image" else "")


def innout_start(variant: str, mode: str) -> str:
    """The inversion stage an In-N-Out variant starts stage A from: the masked W+ fit with the variant's masks
    (``invert-w+-user-masks``, ``invert-w+-auto-masks``; baselines and mask-free variants: ``invert-w+``)."""
    sfx = "-image" if mode == "image" else ""
    return f"invert-w+-{variant_slug(variant)}{sfx}" if variant in MASKED_VARIANTS else f"invert-w+{sfx}"


@dataclass(frozen=True)
class Branch:
    """One (method, variant, mode) result of a video: the stages that make it, in order."""

    method: str  # w | w+ | pti | innout
    variant: str  # "" for baselines
    mode: str  # video | image
    key: str  # w | w+ | pti | <variant slug>, plus "-image" in image mode
    stages: tuple[str, ...]


def branches(cfg: PipelineConfig, entry: ManifestVideo) -> list[Branch]:
    """Every result branch of a video. 'user-masks' only when the entry has masks. In-N-Out variants with masks
    start from a masked W+ fit (:func:`innout_start`); 'auto-masks' computes its masks first (:func:`masks_stage`).
    The unmasked W+ fit is the first stage of every In-N-Out branch (the start of the mask-free variants, the
    canonical reference of the automatic masks)."""
    out: list[Branch] = []
    for mode in cfg.modes:
        sfx = "" if mode == "video" else "-image"
        for m in ("w", "w+", "pti"):
            if m in cfg.methods:  # PTI tunes G around the W+ fit's pivots
                head = (f"invert-w+{sfx}",) if m == "pti" else ()
                out.append(Branch(m, "", mode, m + sfx, (*head, f"invert-{m}{sfx}", f"edits-{m}{sfx}")))
        if "innout" in cfg.methods:
            for v in cfg.innout_variants:
                if v == "user-masks" and entry.masks is None:
                    continue
                s = variant_slug(v) + sfx
                head: tuple[str, ...] = (f"invert-w+{sfx}",)
                if v == "auto-masks":  # residual masks against the W+ fit's canonical render, then the masked fit
                    head += (masks_stage(mode), innout_start(v, mode))
                elif v == "user-masks":
                    head += (innout_start(v, mode),)
                out.append(Branch("innout", v, mode, s, (*head, f"stage-a-{s}", f"stage-b-{s}", f"edits-{s}")))
    return out


def plan_stages(cfg: PipelineConfig, entry: ManifestVideo) -> list[str]:
    """All stage names of a video in execution order (no duplicates)."""
    names = ["frames", "face"]
    for b in branches(cfg, entry):
        names.extend(s for s in b.stages if s not in names)
    names.append("metrics")
    if cfg.video.encode:
        names.append("encode")
    return names


def _kind(stage: str) -> str:
    for k in REQUIRES:
        if stage.startswith(k):
            return k
    return stage


@lru_cache(maxsize=None)
def _installed(module: str) -> bool:
    """Whether ``module`` can be found, looked up part by part on disk (no package ``__init__`` is executed)."""
    path = None
    for part in module.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, path)
        if spec is None:
            return False
        path = spec.submodule_search_locations
        if path is None and part != module.split(".")[-1]:
            return False
    return True


def missing_modules(stage: str) -> list[str]:
    """innout_core modules a stage needs that are not installed here."""
    return [m for m in REQUIRES.get(_kind(stage), ()) if not _installed(m)]


def planned_stages(cfg: PipelineConfig, entry: ManifestVideo) -> list[str]:
    """:func:`plan_stages` without the stages whose modules are not installed."""
    return [s for s in plan_stages(cfg, entry) if not missing_modules(s)]


def downstream(cfg: PipelineConfig, entry: ManifestVideo, stage: str) -> list[str]:
    """The stages that use ``stage``'s outputs, directly or not, in execution order (``stage`` not included).

    Stages before the first branch stage (frames, face, ...) feed everything after them; a branch stage feeds the
    later stages of every branch that contains it and the stages after all branches (metrics, encode), which feed
    no stage.
    """
    order = plan_stages(cfg, entry)
    if stage not in order:
        return []
    bs = branches(cfg, entry)
    in_branch = {s for b in bs for s in b.stages}
    pos = {s: i for i, s in enumerate(order)}
    first = min((pos[s] for s in in_branch), default=len(order))
    last = max((pos[s] for s in in_branch), default=-1)
    if stage not in in_branch:
        return order[pos[stage] + 1:] if pos[stage] < first else []  # the last stages feed no stage
    out = {t for b in bs if stage in b.stages for t in b.stages[b.stages.index(stage) + 1:]}
    out |= {s for s in order if pos[s] > last}
    return [s for s in order if s in out]
