"""The named presets, in one table: for each preset the pipeline's own values and every stage section's values, with
a note per section saying where they come from.

A stage model's defaults are the paper's (``paper`` sets the few values the paper states that differ); a preset row
lists only what it changes. :class:`innout_core.config.PipelineConfig` builds its typed stage sections from the row
of its ``preset`` with the user's overrides on top; each stage model's ``preset(name)`` reads the same row, so a
preset means the same numbers wherever it is named. Plain data: nothing here imports PyTorch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from innout_core.errors import BadInputError

__all__ = ["PRESETS", "Preset", "PresetName", "STAGE_SECTIONS", "StageSection", "preset_info", "stage_values"]

PresetName = Literal["paper", "official", "fast", "tiny-demo"]
StageSection = Literal["face", "inversion", "joint", "sr_tuning", "edit"]
#: The stage sections of a pipeline config, in pipeline order.
STAGE_SECTIONS: tuple[str, ...] = ("face", "inversion", "joint", "sr_tuning", "edit")


@dataclass(frozen=True)
class Preset:
    """One named preset: what it is for, the pipeline-level values it sets (``values``), each stage section's values
    (overrides of the stage model's field defaults) and one note per stage section."""

    description: str
    values: dict[str, Any]
    face: dict[str, Any] = field(default_factory=dict)
    inversion: dict[str, Any] = field(default_factory=dict)
    joint: dict[str, Any] = field(default_factory=dict)
    sr_tuning: dict[str, Any] = field(default_factory=dict)
    edit: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


_OFFICIAL_SMOOTH = {"ws": 1.0, "phi": 1.0, "sr": 1.0}  # --smooth_out=True (run_test_styleclip.sh)

#: The presets, in one place.
PRESETS: dict[str, Preset] = {
    "paper": Preset(
        description="The paper's settings (§4): 512x512 ffhq512-128 generator, paper loss weights and step counts, "
        "all methods and ablations; needs the EG3D checkpoint and a GPU.",
        values=dict(generator="ffhq512-128", innout_variants=["no-masks", "w/o L_b", "w/o L_w"],
                    modes=["video", "image"]),
        face={"backend": "insightface"},
        joint=dict(lr_w=5e-4, mask_mode="none", composite_form="paper", blend_entropy_skew=1.0, reduction="sum",
                   w_avg="samples",
                   weights=dict(l2=1, l2_ood=0, lpips=1, sr_l2=0, blend_entropy=1, blend_area=0, latent=1,
                                delta=1e-3, depth=0.1)),
        sr_tuning=dict(reduction="sum"),
        edit=dict(novel_view={"enabled": True}),
        notes={
            "inversion": "Paper §5 (Table 1 baselines): 200 epochs at lr 1e-3, lambda_Delta 1e-3 on 13 squared "
            "deltas; PTI fine-tunes G for 200 epochs at 3e-5. Gaps the paper leaves (rho, LPIPS weight, init) follow "
            "the documented official command. The stage model's defaults, because the project reproduces the "
            "paper's tables.",
            "joint": "Paper Eq. 5-8: no masks, L2 + LPIPS + L_b (entropy of b) + L_w (squared, 1) + L_Delta (13 "
            "squared, 1e-3) with the paper's sums (pixel L2 over pixels and channels, L_b over every sample), L_D "
            "(0.1, single image with user depth maps), w-bar = mean of 10 000 mapped samples, Eq. 4 transmittance, "
            "10 000 steps at 5e-3; w+ lr 5e-4 (not in the paper; the mask-free release script's value).",
            "sr_tuning": "Paper Eq. 9: 100 epochs at 1e-3, L2 summed per frame + LPIPS-VGG, cached inputs.",
            "edit": "Paper §4.6/§5: InterfaceGAN and StyleCLIP edits (user-supplied files, official strengths), OOD "
            "removal by zero blend weights, novel views; no temporal smoothing (the paper has none).",
        },
    ),
    "official": Preset(
        description="The official release's documented settings (docs/method.md §9), with its composite form and "
        "mask usage; needs the EG3D checkpoint and a GPU.",
        values=dict(generator="ffhq512-128", innout_variants=["no-masks", "auto-masks", "user-masks"],
                    modes=["video"]),
        face={"backend": "insightface"},
        inversion=dict(steps=500, lr=5e-3, delta_form="official", pti_steps=50, pti_lambda_lpips=10.0,
                       pti_locality=True, cond_focal=4.4652, subset_frames=16),
        joint=dict(mask_mode="user", latent_squared=False, delta_count=12, delta_squared=False),
        edit=dict(novel_view={"enabled": True, "sample_mult": 2}, smooth=_OFFICIAL_SMOOTH),
        notes={
            "inversion": "Documented official command (invert_multi_ws.py:5): 500 epochs at lr 5e-3, LPIPS-VGG 1.0, "
            "lambda_Delta 1e-3 on 12 plain norms, rho 0.7, 500-sample LPIPS-Alex init conditioned with the "
            "release's frontal label (focal 4.4652), a 16-frame subset pass first (invert_multi_ws.py, then "
            "invert_multi2vid.py from its canonical latent); PTI from hyperparameters.py (lr 3e-5, locality "
            "regulariser on).",
            "joint": "The released default script (docs/method.md §3.6): user masks, no L_w / L_Delta, w+ at "
            "lr/100, entropy of b^2, area loss, SR L2, 10 000 steps.",
            "sr_tuning": "The release: 100 epochs at 1e-3, L2 averaged over pixels + LPIPS-VGG, cached inputs.",
            "edit": "Release (docs/method.md §5): as paper plus --smooth_out (causal [0.125, 0.375, 0.5] on w+, phi "
            "and SR block0), StyleCLIP step 0.04, InterfaceGAN factor 2.2, gen_3d.py orbit (60 views, 0.15 rad, "
            "pitch -0.05, doubled depth samples), OOD removal by the release's rule where user masks exist.",
        },
    ),
    "fast": Preset(
        description="Few optimisation steps of the paper's recipe for a quick look at real videos (minutes per "
        "video on a GPU); dlib face backend, no weights beyond the EG3D checkpoint.",
        values=dict(generator="ffhq512-128", innout_variants=["no-masks"], modes=["video"],
                    video={"max_frames": 32}),
        face={"backend": "dlib"},
        inversion=dict(steps=50, lr=5e-3, batch_size=4, init_samples=64, pti_steps=20, pti_lr=3e-4, amp="bf16"),
        joint=dict(steps=2000, mask_mode="auto", checkpoint_every=500, ood_resolution=128, amp="bf16"),
        sr_tuning=dict(epochs=20, checkpoint_every=500, amp="bf16"),
        edit=dict(smooth=_OFFICIAL_SMOOTH),
        notes={
            "inversion": "Short runs for real videos on a GPU: 50 epochs at lr 5e-3 on frame batches of 4, 64-sample "
            "init.",
            "joint": "The official losses with automatic masks and 2 000 steps (quick real runs), bf16 autocast.",
            "sr_tuning": "20 epochs, bf16 autocast.",
            "edit": "Quick real runs: official smoothing and strengths, OOD removal, no novel-view video.",
        },
    ),
    "tiny-demo": Preset(
        description="The embedded default: the `tiny-face` generator (the tiny architecture trained on procedural "
        "heads, shipped), ground-truth videos of held-out heads with hand / glasses / microphone occluders and "
        "given cameras; the budget goes where the method shows (W+ / PTI baselines and In-N-Out without masks, with "
        "automatic masks and with the true masks, converged fits, enough stage-A steps), video mode only, no "
        "ablation branches (Table 3 needs the other presets): the occluder removed against the clean truth on a "
        "2-core CPU in minutes.",
        values=dict(generator="tiny-face", methods=["w+", "pti", "innout"],
                    innout_variants=["no-masks", "auto-masks", "user-masks"], modes=["video"],
                    metrics={"identity": False}, dask={"workers": 2}),
        face={"backend": "given"},
        inversion=dict(steps=40, lr=3e-2, batch_size=0, lambda_lpips=0.0, init_samples=8, init_metric="l2",
                       init_stride=4, pti_steps=10, pti_lr=1e-3, pti_lambda_lpips=0.0, locality_lambda_lpips=0.0),
        joint=dict(steps=60, mask_mode="auto", checkpoint_every=30, ood_resolution=32, ood_channels=32, lr=2e-2,
                   lr_w=0.0, sr_noise="generator", auto_mask=dict(refine_rounds=2),
                   weights=dict(lpips=0.0, blend_area=0.05, blend_entropy=0.05, blend_mask=1.0)),
        sr_tuning=dict(epochs=0, lpips=0.0, checkpoint_every=20),
        edit=dict(synthetic={}, novel_view={"enabled": True, "n_frames": 8, "yaw_range": 0.3}),
        notes={
            "inversion": "CPU runs with the tiny generators: L2 only (no LPIPS weights needed), all frames per step, "
            "8-sample L2 init on every 4th frame, lr 3e-2 with the official warm-up + cosine decay (it reaches a "
            "lower loss in 40 epochs than 2e-2 constant does in 100: that overshoots early; bench/ground_truth.py). "
            "40 epochs: on the demo's videos (3 frames) the masked fit's render against the clean frame peaks there "
            "(hand: 27.3 dB at 40, 26.8 at 60, 26.2 at 100: the hidden region drifts). PTI 10 epochs at 1e-3.",
            "joint": "Blend regularisers at 0.05 and w+ frozen, from bench/ground_truth.py: on `tiny` the paper's "
            "weight 1 collapses b to 0 within ~10 steps (the composite then equals W+); on `tiny-face` 0.3 collapses "
            "it from every start (OOD share <= 0.11 on the occluder) while 0.05 separates from the true latents "
            "(share 0.55 on / 0.01 off) and from the canonical latent (0.29 / 0.02); w+ updates (5e-4) paint the "
            "occluder into the face (share 0.06); lr_w 0 also caches the face planes. No LPIPS (needs no weights). "
            "The composite's SR noise is the generator's own (tiny-face's SR was trained without noise; the "
            "release's constant noise costs the removal 0.9-2.2 dB against the fit's own render). The masks' OOD "
            "region is given to the OOD field by the mask-supervised share (blend_mask 1: occluder IoU 0.24 -> 0.89 "
            "on the hand, 0.16 -> 0.88 on the microphone, 1 000 steps); automatic masks get two refinement rounds "
            "against their masked fit (mask IoU 0.39 -> 0.51 -> 0.55 over both suite seeds, removal +7.23 -> +8.62 "
            "dB over the input, clean frames -3.25 -> +0.32 dB vs W+). 60 steps: the ~1 000 a full "
            "separation needs do not fit the demo's budget.",
            "sr_tuning": "Skipped (0 epochs): after a short stage A the OOD field has not taken the occluder yet, and "
            "tuning the SR on those composites teaches it to draw the occluder (removal -2.0 dB on hand and glasses "
            "with 1 epoch). No LPIPS when enabled (needs no weights).",
            "edit": "Embedded default: a 'brighter' direction made from the tiny generator itself (unit class-mean "
            "difference, strength 2.2) or the generator's shipped direction (tiny-face: hair_lightness), OOD removal "
            "and an 8-view orbit; no smoothing, so an edit differs from the reconstruction only by the edit.",
        },
    ),
}


def preset_info(name: str) -> Preset:
    """The preset called ``name``; an unknown name is bad input naming the choices."""
    if name not in PRESETS:
        raise BadInputError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def stage_values(section: str, name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s values for stage ``section`` (one of :data:`STAGE_SECTIONS`)."""
    if section not in STAGE_SECTIONS:
        raise ValueError(f"unknown stage section {section!r}; one of {STAGE_SECTIONS}")
    return copy.deepcopy(getattr(preset_info(name), section))
