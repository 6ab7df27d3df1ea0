"""Which stages a video goes through for a config: its result branches and stage names, in execution order.

Pure data (no Prefect, no I/O). It lives in ``tasks`` because stage names are the task layer's vocabulary (each is a
stage directory a task writes); the flows (video flow, ``innout status``, progress) import it from here, or via the
re-export :mod:`flows.plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from innout_core.config import ManifestVideo, PipelineConfig

__all__ = ["Branch", "branches", "innout_start", "masks_stage", "plan_stages", "variant_slug", "MASKED_VARIANTS"]

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
