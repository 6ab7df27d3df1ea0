"""Typed settings of stage A (the joint composite optimisation) and of its automatic OOD masks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from innout_core.settings.base import StageSettings

__all__ = ["AutoMaskConfig", "JointConfig", "LossWeights", "ResidualMaskConfig", "ShareMaskConfig"]


class _RegionCleanup(BaseModel):
    """Hysteresis linking and clean-up of an OOD region (shared by both sources)."""

    model_config = ConfigDict(extra="forbid")
    temporal: int = Field(1, ge=0, description="frames either side a weak pixel may be linked through")
    open_size: int = Field(3, ge=1, description="opening kernel (removes specks), pixels (odd)")
    close_size: int = Field(7, ge=1, description="closing kernel (fills holes), pixels (odd)")
    dilate: int = Field(1, ge=1, description="final dilation of the OOD region, pixels (odd, 1 = none)")


class ResidualMaskConfig(_RegionCleanup):
    """Masks from the W+ residual (:func:`residual_masks`)."""

    k_mad: float = Field(3.0, gt=0, description="high threshold = median + k_mad * 1.4826 * MAD of the error")
    min_error: float = Field(0.1, ge=0, description="floor of the high threshold, mean |error| over RGB in [-1,1]")
    low_ratio: float = Field(0.8, gt=0, le=1, description="low (growing) threshold = low_ratio * high threshold")
    blur: int = Field(5, ge=1, description="box blur of the error map, pixels (odd)")
    dilate: int = Field(3, ge=1, description="final dilation of the OOD region, pixels (odd, 1 = none)")


class ShareMaskConfig(_RegionCleanup):
    """Masks from the OOD share after a first, mask-free stage-A pass (``joint.share_masks``)."""

    first_pass_steps: int = Field(300, ge=1, description="stage-A steps of the mask-free first pass")
    high: float = Field(0.5, gt=0, lt=1, description="OOD share that seeds the mask")
    low: float = Field(0.3, gt=0, lt=1, description="OOD share that may join the mask (hysteresis)")


class AutoMaskConfig(BaseModel):
    """Automatic OOD masks of stage A (``joint: auto_mask:``, used with ``mask_mode: auto``)."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["residual", "share"] = Field(
        "residual", description="evidence: 'residual' = |frame - reference render| (cheap: one render per frame); "
        "'share' = OOD share after a first, mask-free stage-A pass started from the reference latents")
    reference: Literal["canonical", "frame"] = Field(
        "canonical", description="reference face: 'canonical' = the W+ inversion's shared latent at each frame's "
        "camera (falls back to 'frame', with a warning, when none is given); 'frame' = the per-frame W+ latents")
    residual: ResidualMaskConfig = Field(default_factory=ResidualMaskConfig, description="source 'residual' settings")
    share: ShareMaskConfig = Field(default_factory=ShareMaskConfig, description="source 'share' settings")
    batch_size: int = Field(4, ge=1, description="frames per reference render")
    refine_rounds: int = Field(
        0, ge=0, le=3, description="source 'residual': rounds of (W+ fit on the face region of the current masks, "
        "then residual masks against that fit's render); the fit cannot paint what the masks hid and follows each "
        "frame's face, so its residual marks the occluder more sharply (one W+ fit per round)")


class LossWeights(BaseModel):
    """Stage-A loss weights (0 disables a term and skips its computation)."""

    model_config = ConfigDict(extra="forbid")
    l2: float = Field(1.0, ge=0, description="RAW_L2_FULL: mean squared error of the raw composite vs the target")
    l2_ood: float = Field(1.0, ge=0, description="RAW_L2_O: OOD-only raw render vs target inside the OOD mask")
    lpips: float = Field(1.0, ge=0, description="RAW_LPIPS_FULL: LPIPS map mean at the neural resolution")
    sr_l2: float = Field(1.0, ge=0, description="SR_FULL: L2 of SR(composite) vs the full-resolution frame")
    sr_l2_ood: float = Field(0.0, ge=0, description="SR_O: masked L2 of SR(OOD-only) inside the OOD mask (release 0)")
    blend_entropy: float = Field(1.0, ge=0, description="L_b: binary entropy of b**skew, mean over samples")
    blend_area: float = Field(1.0, ge=0, description="blend area (max_k b_k)^2 mean over rays (D2NeRF)")
    blend_mask: float = Field(0.0, ge=0, description="ours (not the paper's or the release's): cross-entropy of the "
                              "composite's OOD share against the masks' OOD region (needs masks; 0 = off)")
    latent: float = Field(0.0, ge=0, description="L_w: ||w_t - w_avg|| (squared per latent_squared)")
    delta: float = Field(0.0, ge=0, description="L_Delta: sum_i ||w_i - w_0|| over delta_count deltas")
    depth: float = Field(0.0, ge=0, description="L_D (paper Eq. 7): L1 of composite depth vs the user's monocular "
                         "depth, scale-and-shift aligned; used only when depth maps are given (single image)")


class JointConfig(StageSettings):
    """Stage A configuration. Presets: :meth:`preset` (``paper``, ``official``, ``fast``, ``tiny-demo``; values and
    the reasons for them in :data:`innout_core.settings.presets.PRESETS`)."""

    section = "joint"
    steps: int = Field(10_000, ge=0, description="optimisation steps, one frame each")
    lr: float = Field(5e-3, gt=0, description="Adam lr of OOD tri-plane, decoder and phi")
    lr_w: float = Field(5e-5, ge=0, description="Adam lr of the per-frame w+ (0 freezes w+)")
    weights: LossWeights = Field(default_factory=LossWeights, description="loss weights")
    blend_entropy_skew: float = Field(2.0, gt=0, description="entropy of b**skew; 2 = release, 1 = paper")
    latent_squared: bool = Field(True, description="L_w squared (paper) or plain norm (release _auto script)")
    w_avg: Literal["tracked", "samples"] = Field("tracked", description="w-bar of L_w: the generator's tracked "
                                                 "w_avg (release w_avg.pt) or the mean of w_avg_samples mapped z (paper)")
    w_avg_samples: int = Field(10_000, ge=1, description="z samples for w_avg='samples' (paper: 10 000)")
    delta_count: int = Field(13, ge=1, le=13, description="deltas in L_Delta: 13 paper, 12 release (capped at num_ws - 1)")
    delta_squared: bool = Field(True, description="L_Delta squared norms (paper) or plain (release)")
    lpips_net: Literal["vgg", "alex", "squeeze"] = Field("vgg", description="LPIPS backbone (release: vgg)")
    reduction: Literal["mean", "sum"] = Field("mean", description="pixel L2 / blend terms: mean over elements "
                                              "(release) or sum over pixels and samples (paper Eq. 5-6)")
    mask_mode: Literal["none", "auto", "user"] = Field("none", description="OOD masks: none, automatic, user")
    auto_mask: AutoMaskConfig = Field(default_factory=AutoMaskConfig, description="automatic mask settings "
                                      "(innout_core.auto_masks.AutoMaskConfig)")
    composite_form: Literal["official", "paper"] = Field("official", description="composite transmittance form")
    sr_noise: Literal["const", "generator"] = Field(
        "const", description="SR noise wherever a composite is super-resolved (stage A, stage B, every render): "
        "'const' = the stored constant noise (the release), 'generator' = the generator's own "
        "superresolution_noise_mode (for generators whose SR was trained without noise, e.g. tiny-face)")
    release_sample_order: bool = Field(False, description="reproduce the release's OOD ordering defect (parity)")
    ood_resolution: int = Field(256, ge=2, description="OOD tri-plane side, texels")
    ood_channels: int = Field(32, ge=3, description="OOD tri-plane channels (= feature channels)")
    phi_dim: int = Field(32, ge=1, description="per-frame code size")
    neural_resolution: int | None = Field(None, ge=4, description="raw render side; None = the generator's")
    clamp_raw: bool = Field(True, description="clamp raw and SR RGB to [-1,1] before losses (release)")
    plane_cache_mb: float = Field(1024.0, ge=0, description="with lr_w = 0: cache face tri-planes up to this size, MB")
    fused: bool = Field(True, description="fused OOD query + composite without colour midpoints (same maths, 1e-5)")
    compute_unused: bool = Field(False, description="also run the release's zero-weight OOD-only SR (cost parity)")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="autocast precision: bf16 (CUDA; CPUs with native "
                                                 "bf16) or fp16 (CUDA only); fp32 where unsupported")
    compile: bool = Field(False, description="torch.compile the SR and OOD query on CUDA (ignored on CPU)")
    checkpoint_every: int = Field(2000, ge=0, description="steps between checkpoints (0 = only the final one)")
    seed: int = Field(20221026, description="seed the pipeline uses for this stage's generator (release value)")
