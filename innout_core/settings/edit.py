"""Typed settings of the edit stage: InterfaceGAN and StyleCLIP edits, the generator's own direction, OOD
removal, novel views and causal smoothing (:func:`innout_core.edit.run_edits`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from innout_core.settings.base import StageSettings

__all__ = ["EditConfig", "InterfaceGANEdit", "NovelViewConfig", "SmoothConfig", "StyleCLIPEdit", "SyntheticDirectionConfig"]


class InterfaceGANEdit(BaseModel):
    """One InterfaceGAN edit: ``w' = w + strength * d`` on the chosen style vectors."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="edit name; output key of run_edits (e.g. 'smile')")
    path: Path = Field(description="boundary .npy of shape [512], [1,512] or [14,512] (user-supplied)")
    strength: float = Field(2.2, description="step f along the direction (official vid_edit.py default 2.2)")
    layers: list[int] | None = Field(None, description="style-vector indices to edit (0..13); None = all 14")


class StyleCLIPEdit(BaseModel):
    """One StyleCLIP latent-mapper edit: ``w' = w + strength * M(w)``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="edit name; output key of run_edits (e.g. 'eyeglasses')")
    path: Path = Field(description="mapper checkpoint (best_model.pt with 'state_dict', or a bare state dict)")
    strength: float = Field(0.04, description="factor_step s (official run_test_styleclip.sh uses 0.04)")


class NovelViewConfig(BaseModel):
    """Camera orbit around one frame (official ``gen_3d.py``: amplitude 0.15 rad yaw and pitch)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="render the 'novel_view' output")
    frame: int = Field(0, ge=0, description="index of the frame whose w+ and phi are shown")
    n_frames: int = Field(60, ge=1, description="number of views along the orbit (official w_frames 60)")
    yaw_range: float = Field(0.15, description="yaw amplitude, radians")
    pitch_range: float = Field(0.15, description="pitch amplitude, radians")
    pitch_offset: float = Field(-0.05, description="constant pitch offset, radians (official gen_3d.py: -0.05)")
    sample_mult: int = Field(1, ge=1, description="multiply both depth sample counts per ray (gen_3d.py "
                             "--sample_mult, default 2: 96 + 96 on ffhq512-128)")


class SmoothConfig(BaseModel):
    """Causal temporal smoothing at render time (official ``--smooth_out``; not in the paper)."""

    model_config = ConfigDict(extra="forbid")
    ws: float = Field(0.0, ge=0.0, le=1.0, description="factor for w+ (0 = off, 1 = the official 3-tap kernel)")
    phi: float = Field(0.0, ge=0.0, le=1.0, description="factor for the per-frame OOD code phi (0 = off, 1 = official)")
    sr: float = Field(0.0, ge=0.0, le=1.0, description="factor for SR block0 features (0 = off, 1 = official)")

    @classmethod
    def official(cls) -> "SmoothConfig":
        """``--smooth_out=True`` as in ``run_test_styleclip.sh``: full kernel on w+, phi and SR block0."""
        return cls(ws=1.0, phi=1.0, sr=1.0)


class SyntheticDirectionConfig(BaseModel):
    """A direction made from the generator itself (the ``tiny-demo`` stand-in for an InterfaceGAN boundary), or,
    for a generator that ships one (``tiny-face``), its shipped direction (:func:`innout_core.edit.materialise_edits`).

    Definition (:func:`synthetic_direction`): map ``samples`` seeded z with the frontal conditioning label
    (psi = 1), render each one's raw image, score it by mean luminance, and take the unit-norm difference between
    the mean w of the brighter half and of the darker half -- a class-mean ("LDA without covariance") boundary
    normal for the attribute "brightness", which any generator renders, so the edit has a visible, measurable
    effect. Saved as a ``[1, w_dim]`` float32 ``.npy`` like an InterfaceGAN boundary (:func:`save_direction`).
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field("brighter", description="edit name; output key of run_edits")
    samples: int = Field(64, ge=2, description="mapped samples scored to build the direction")
    seed: int = Field(0, description="seed of the z samples and of the renders' ray samples")
    strength: float = Field(2.2, description="step along the unit direction (the official InterfaceGAN factor)")
    layers: list[int] | None = Field(None, description="style-vector indices to edit; None = all")


class EditConfig(StageSettings):
    """What `run_edits` renders. Defaults: no semantic edit, OOD removal on, no novel view, no smoothing.
    Named presets: :meth:`preset` (``paper`` / ``official`` / ``fast`` / ``tiny-demo``)."""

    section = "edit"
    interfacegan: list[InterfaceGANEdit] = Field(default_factory=list, description="InterfaceGAN edits")
    styleclip: list[StyleCLIPEdit] = Field(default_factory=list, description="StyleCLIP mapper edits")
    synthetic: SyntheticDirectionConfig | None = Field(
        None, description="direction derived from the generator itself (tiny-demo); None = off")
    novel_view: NovelViewConfig = Field(default_factory=NovelViewConfig, description="orbit settings")
    remove_ood: bool = Field(True, description="render the 'remove_ood' output (OOD blend weights set to 0)")
    removal_masks: bool = Field(True, description="with user masks, remove by the release's rule (the mask's OOD "
                                "region dilated, b x removal_blend_scale, b = 0 on OOD rays); False or no masks: "
                                "b = 0 on every ray (paper)")
    removal_dilation: int = Field(5, ge=1, description="release removal rule: side of the square dilating the mask's "
                                  "OOD region, pixels at the neural resolution (release 5)")
    removal_blend_scale: float = Field(1.2, gt=0, description="release removal rule: factor on every blend weight "
                                       "(release 1.2)")
    smooth: SmoothConfig = Field(default_factory=SmoothConfig, description="causal smoothing factors")
