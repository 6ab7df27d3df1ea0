"""Typed settings of stage B (super-resolution fine-tuning, :func:`innout_core.sr_tuning.run_stage_b`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from innout_core.settings.base import StageSettings

__all__ = ["SRTuningConfig"]


class SRTuningConfig(StageSettings):
    """Stage B configuration. Presets: :meth:`preset`."""

    section = "sr_tuning"
    epochs: int = Field(100, ge=0, description="passes over all frames, batch_frames per step")
    lr: float = Field(1e-3, gt=0, description="Adam lr of the SR module")
    l2: float = Field(1.0, ge=0, description="weight of the L2 loss at full resolution")
    lpips: float = Field(1.0, ge=0, description="weight of the LPIPS loss at full resolution")
    lpips_net: Literal["vgg", "alex", "squeeze"] = Field("vgg", description="LPIPS backbone (release: vgg)")
    reduction: Literal["mean", "sum"] = Field("mean", description="L2 over pixels: mean (release) or sum per frame "
                                              "(paper Eq. 9, ||x - x^||_2^2)")
    cached: bool = Field(True, description="render SR inputs once per frame (False = re-render every step)")
    per_frame_seeds: bool = Field(True, description="ray samples seeded per frame (deterministic SR inputs)")
    clamp: bool = Field(True, description="clamp the SR output to [-1,1] before the losses (release)")
    release_render_grad: bool = Field(False, description="uncached: back-propagate through the render as the "
                                      "release does (w+, phi require grad; results unused; cost parity only)")
    fused: bool = Field(True, description="fused OOD query + composite in the SR-input render (same maths, 1e-5)")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="autocast precision of SR + LPIPS: bf16 (CUDA; CPUs "
                                                 "with native bf16) or fp16 (CUDA only); fp32 where unsupported")
    compile: bool = Field(False, description="torch.compile the trained SR on CUDA (ignored on CPU)")
    batch_frames: int = Field(1, ge=1, description="frames per step (loss = batch mean, same gradient in "
                              "expectation; an epoch is ceil(T/batch) steps)")
    checkpoint_every: int = Field(1000, ge=0, description="steps between checkpoints (0 = only the final one)")
    seed: int = Field(20221026, description="seed the pipeline uses for this stage's generator")
