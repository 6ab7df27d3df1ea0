"""Stages ``stage-a-<variant>[-image]`` (joint OOD / w+ optimisation) and ``stage-b-<variant>[-image]`` (SR
fine-tuning) of In-N-Out, both resumable from their Checkpointer directory ``<stage>/ckpt``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from innout_core.store import StageRecord, atomic_write_text, read_record
from tasks.common import (StageOutput, VideoJob, config_hash, load_generator_cached, load_tensors, progress_writer,
                          read_json, resolve_device, run_stage, save_tensors, stage_generator)
from tasks.face import STAGE as FACE
from tasks.face import load_face
from tasks.inversion import load_inversion, load_start_masks
from tasks.plan import MASKED_VARIANTS, innout_start, masks_stage, variant_slug

__all__ = ["NO_DEPTH_NOTE", "load_depth", "load_stage_a", "load_sr_state", "run_stage_a", "run_stage_b",
           "stage_a_name", "stage_b_name"]


def _sfx(mode: str) -> str:
    return "-image" if mode == "image" else ""


def stage_a_name(variant: str, mode: str) -> str:
    return f"stage-a-{variant_slug(variant)}{_sfx(mode)}"


def stage_b_name(variant: str, mode: str) -> str:
    return f"stage-b-{variant_slug(variant)}{_sfx(mode)}"


def _hash_of(job: VideoJob, stage: str) -> str:
    rec = read_record(job.stage_dir(stage))
    return rec.output_hash if rec else ""


#: Stage-record / stage_a.json note when the paper's single-image depth loss was configured but had no input.
NO_DEPTH_NOTE = ("L_D (paper Eq. 7) off: no depth map given for this video (manifest 'depth:'); single-image "
                 "results are without the depth regulariser")


def load_depth(job: VideoJob, device: torch.device, mode: str) -> tuple[torch.Tensor, str] | None:
    """The manifest's depth maps of the selected frames, ``([T,1,h,w] float32, 'depth' | 'disparity')``; only the
    first frame in image mode; None when the entry has none."""
    import numpy as np

    from innout_core.errors import BadInputError

    path = job.video.depth
    if path is None:
        return None
    indices = read_json(job.stage_dir(FACE) / "status.json")["indices"]
    try:
        with np.load(path) as z:
            kinds = [k for k in ("depth", "disparity") if k in z.files]
            if not kinds:
                raise BadInputError(f"depth file holds {sorted(z.files)}, expected an array 'depth' or 'disparity'",
                                    path=path)
            arr = np.asarray(z[kinds[0]], dtype=np.float32)
    except (OSError, ValueError) as err:
        raise BadInputError(f"cannot read depth maps as .npz ({err})", path=path) from err
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] != 1 or not np.isfinite(arr).all():
        raise BadInputError(f"depth maps must be finite [T,1,H,W] or [T,H,W], got {list(arr.shape)}", path=path)
    if max(indices) >= arr.shape[0]:
        raise BadInputError(f"depth has {arr.shape[0]} frames but source frame {max(indices)} was selected",
                            path=path)
    d = torch.from_numpy(arr[indices]).to(device)
    return (d[:1] if mode == "image" else d), kinds[0]


def run_stage_a(job: VideoJob, variant: str, mode: str) -> StageRecord:
    """Stage A for one variant; writes ``stage_a.safetensors`` (``ood.*`` state, phi [T,32], ws [T,14,512],
    masks [T,1,H,W] when used) and ``stage_a.json`` (losses, seconds, form, ordering flag, neural resolution, what
    the masks came from, and a note when L_D is configured but no depth map was given).

    Start: variants with masks (``user-masks``, ``auto-masks``) start from the masked W+ fit with their masks
    (``invert-w+-<variant>``: the face region only, so the occluder is not already painted into the face); the
    others from the W+ fit. ``auto-masks`` takes its masks from the ``masks-auto`` stage. The paper's L_D is for
    single images only: depth maps from the manifest are used in image mode."""
    from innout_core.checkpointing import Checkpointer
    from innout_core.joint import run_stage_a as core_stage_a
    from innout_core.joint import stage_a_fingerprint
    from innout_core.store import hash_file

    cfg = job.config
    jcfg = cfg.joint_config(variant)
    stage = stage_a_name(variant, mode)
    wants_depth = mode == "image" and jcfg.weights.depth > 0
    masked = variant if variant in MASKED_VARIANTS else None
    inputs = [_hash_of(job, FACE), _hash_of(job, innout_start(variant, mode))]
    if variant == "auto-masks":
        inputs.append(_hash_of(job, masks_stage(mode)))
    if wants_depth and job.video.depth is not None:
        inputs.append(hash_file(job.video.depth))

    def body(d: Path) -> StageOutput:
        dev = resolve_device(cfg.device)
        G = load_generator_cached(cfg, dev)
        t = load_face(job, dev, mode)
        inv, _ = load_inversion(job, "w+", mode, dev, masked)
        masks = None if masked is None or jcfg.mask_mode == "none" else load_start_masks(job, variant, mode, dev)
        depth = load_depth(job, dev, mode) if wants_depth else None
        dmap, dkind = depth if depth is not None else (None, "depth")
        fp = stage_a_fingerprint(t["crops"], t["cameras"], inv.ws, jcfg, masks, dmap, inv.w_canonical)
        ckpt = Checkpointer(d / "ckpt", every=jcfg.checkpoint_every, fingerprint=fp)
        resumed = max(ckpt.steps(), default=None)
        res = core_stage_a(G, t["crops"], t["cameras"], inv.ws, jcfg, stage_generator(job, stage, dev), masks=masks,
                           depth=dmap, depth_kind=dkind, checkpoint=ckpt, progress=progress_writer(d),
                           w_canonical=inv.w_canonical)
        if variant == "auto-masks":  # what the masks stage made them from, e.g. 'residual vs canonical'
            res.mask_source = read_json(job.stage_dir(masks_stage(mode)) / "masks.json")["source"]
        tensors = {f"ood.{k}": v for k, v in res.ood_state.items()}
        tensors.update(phi=res.phi, ws=res.ws)
        if res.masks is not None:
            tensors["masks"] = res.masks
        save_tensors(d / "stage_a.safetensors", tensors)
        meta = {"losses": res.losses, "seconds": res.seconds, "form": res.form, "sr_noise": res.sr_noise,
                "release_sample_order": res.release_sample_order, "neural_resolution": res.neural_resolution,
                "mask_source": res.mask_source}
        info = {"resumed_from_step": resumed, "method_seconds": res.seconds, "mask_source": res.mask_source,
                "start": innout_start(variant, mode),
                "final_losses": {k: float(v) for k, v in (res.losses[-1] if res.losses else {}).items()}}
        if wants_depth:
            meta["depth_loss"] = info["depth_loss"] = (f"on: user {dkind} maps" if res.depth_used
                                                       else NO_DEPTH_NOTE)
        atomic_write_text(d / "stage_a.json", json.dumps(meta, default=float))
        return StageOutput({"state": "stage_a.safetensors", "meta": "stage_a.json"}, info)

    return run_stage(job, stage, inputs, config_hash(jcfg, cfg.generator, str(cfg.checkpoint), cfg.seed), body)


def load_stage_a(job: VideoJob, variant: str, mode: str, device: torch.device):
    """The saved :class:`~innout_core.joint.StageAResult` of a variant."""
    from innout_core.joint import StageAResult

    d = job.stage_dir(stage_a_name(variant, mode))
    t = load_tensors(d / "stage_a.safetensors", device)
    meta = read_json(d / "stage_a.json")
    ood = {k[4:]: v for k, v in t.items() if k.startswith("ood.")}
    return StageAResult(ood_state=ood, phi=t["phi"], ws=t["ws"], losses=meta["losses"], seconds=meta["seconds"],
                        masks=t.get("masks"), mask_source=meta.get("mask_source"), form=meta["form"],
                        sr_noise=meta.get("sr_noise", "const"),
                        release_sample_order=meta["release_sample_order"],
                        neural_resolution=meta["neural_resolution"])


def run_stage_b(job: VideoJob, variant: str, mode: str) -> StageRecord:
    """Stage B for one variant; writes ``sr.safetensors`` (fine-tuned superresolution state dict)."""
    from innout_core.checkpointing import Checkpointer
    from innout_core.sr_tuning import run_stage_b as core_stage_b
    from innout_core.sr_tuning import stage_b_fingerprint

    cfg = job.config
    scfg = cfg.sr_config()
    stage = stage_b_name(variant, mode)
    inputs = [_hash_of(job, FACE), _hash_of(job, stage_a_name(variant, mode))]

    def body(d: Path) -> StageOutput:
        import time

        dev = resolve_device(cfg.device)
        G = load_generator_cached(cfg, dev)
        t = load_face(job, dev, mode)
        sa = load_stage_a(job, variant, mode, dev)
        ckpt = Checkpointer(d / "ckpt", every=scfg.checkpoint_every,
                            fingerprint=stage_b_fingerprint(sa, t["crops"], t["cameras"], scfg))
        resumed = max(ckpt.steps(), default=None)
        t0 = time.perf_counter()
        sr = core_stage_b(G, sa, t["crops"], t["cameras"], scfg, stage_generator(job, stage, dev), checkpoint=ckpt,
                          progress=progress_writer(d))
        seconds = time.perf_counter() - t0
        save_tensors(d / "sr.safetensors", sr)
        return StageOutput({"sr": "sr.safetensors"}, {"resumed_from_step": resumed, "method_seconds": seconds})

    return run_stage(job, stage, inputs, config_hash(scfg, cfg.generator, str(cfg.checkpoint), cfg.seed), body)


def load_sr_state(job: VideoJob, variant: str, mode: str, device: torch.device) -> dict[str, torch.Tensor]:
    """The fine-tuned SR state dict of a variant."""
    return load_tensors(job.stage_dir(stage_b_name(variant, mode)) / "sr.safetensors", device)
