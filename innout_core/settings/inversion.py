"""Typed settings of the W / W+ / PTI inversion (:func:`innout_core.inversion.invert_video`)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field

from innout_core.settings.base import StageSettings

__all__ = ["InversionConfig", "Method"]

Method = Literal["w", "w+", "pti"]


class InversionConfig(StageSettings):
    """Settings of one inversion run. Field defaults are the ``paper`` preset (notes in the preset table): the
    project reproduces the paper's Table 1, whose W / W+ / PTI baselines use the paper's settings; where the paper
    is silent (rho, LPIPS weight, initialisation, schedule) the documented official values fill in."""

    section = "inversion"

    method: Method = Field("w+", description="'w' (one 512-d code per frame), 'w+' (14x512 per frame) or 'pti'")
    steps: int = Field(200, ge=0, description="epochs: passes over all frames (official num_epochs; paper 200)")
    batch_size: int = Field(1, ge=0, description="frames per Adam step (official 1; 0 = all frames)")
    lr: float = Field(1e-3, gt=0, description="peak Adam learning rate for w_cano and residuals (paper 1e-3)")
    lr_schedule: Literal["official", "constant"] = Field(
        "official", description="'official': per-epoch warm-up then cosine decay (docs/method.md §2.4); 'constant'")
    lr_rampup: float = Field(0.05, ge=0, le=1, description="warm-up length, fraction of epochs")
    lr_rampdown: float = Field(0.25, ge=0, le=1, description="cosine decay length, fraction of epochs")
    residual_weight: float = Field(0.7, ge=0, description="rho in w_t = w_cano + rho * r_t (official command 0.7)")
    lambda_l2: float = Field(1.0, ge=0, description="weight of the pixel MSE (images in [-1,1])")
    lambda_lpips: float = Field(1.0, ge=0, description="weight of LPIPS-VGG (spatial mean); 0 = L2 only")
    lambda_delta: float = Field(1e-3, ge=0, description="weight of L_Delta (W+ and PTI pivots only)")
    delta_form: Literal["paper", "official"] = Field(
        "paper", description="'paper': 13 squared norms; 'official': 12 plain norms (range(1, 13))")
    init_samples: int = Field(500, ge=1, description="K mapped samples scored per frame for the initialisation")
    init_metric: Literal["lpips", "l2"] = Field("lpips", description="init score: LPIPS-AlexNet (official) or MSE")
    init_chunk: int = Field(8, ge=1, description="renders per batch during the initial search (memory only)")
    init_stride: int = Field(1, ge=1, description="score frames 0, s, 2s, ... in the init search (official 1 = all)")
    cond_focal: float = Field(4.2647, gt=0, description="focal of the frontal conditioning label used to map the "
                              "init / locality samples (4.2647 as everywhere else; the release's inversion: 4.4652)")
    subset_frames: int = Field(0, ge=0, description="first invert this many evenly spaced frames, then all frames "
                               "from its canonical latent with zero residuals (release: 16); 0 = off")
    subset_steps: int | None = Field(None, ge=0, description="epochs of the subset pass; None = steps")
    pti_steps: int = Field(200, ge=0, description="PTI generator fine-tuning epochs (paper 200)")
    pti_lr: float = Field(3e-5, gt=0, description="PTI generator learning rate (paper 3e-5)")
    pti_lambda_l2: float = Field(1.0, ge=0, description="PTI pixel MSE weight (hyperparameters.pt_l2_lambda)")
    pti_lambda_lpips: float = Field(1.0, ge=0, description="PTI LPIPS-VGG weight (hyperparameters.pt_lpips_lambda)")
    pti_locality: bool = Field(False, description="PTI's locality (ball-holder) regulariser")
    locality_samples: int = Field(2, ge=1, description="latents sampled per step by the locality regulariser")
    locality_alpha: float = Field(30.0, gt=0, description="distance from the pivot of the locality latents (W units)")
    locality_psi: float = Field(0.5, ge=0, le=1, description="truncation of the locality samples")
    locality_lambda_l2: float = Field(0.1, ge=0, description="locality MSE weight")
    locality_lambda_lpips: float = Field(0.1, ge=0, description="locality LPIPS weight")
    amp: Literal["off", "bf16"] = Field("off", description="bf16 autocast of the render + LPIPS in the latent and "
                                        "PTI phases (CUDA; CPUs with native bf16); fp32 where unsupported")

    @classmethod
    def preset(cls, name: str, method: str = "w+", **values: Any) -> Self:
        """Named preset (``paper`` / ``official`` / ``fast`` / ``tiny-demo``) for ``method``."""
        return super().preset(name, method=method, **values)
