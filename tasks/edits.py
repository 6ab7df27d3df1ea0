"""Stages ``edits-<key>``: the reconstruction and every configured edit of one result branch.

In-N-Out branches render through the composite renderer with the stage-B SR (``composite.render_composite_video``,
``edit.run_edits``: semantic edits, OOD removal, novel views). Baselines (W / W+ / PTI) apply the same InterfaceGAN
and StyleCLIP edits to their latents and render with ``inversion.render_inversion`` (their reconstruction is the
inversion stage's render). Every edit is rendered with the same ray-sample seed as its reconstruction, so an edit
differs from the reconstruction only by the edit (Table 2 compares like with like). The ``user-masks`` branch
removes the OOD content by the release's rule with its masks (``edit.removal_masks``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from innout_core.store import StageRecord, hash_file, read_record
from tasks.common import (StageOutput, VideoJob, config_hash, load_generator_cached, load_tensors, resolve_device,
                          run_stage, save_tensors, stage_generator)
from tasks.plan import Branch

__all__ = ["edits_stage", "load_blend_map", "load_edits", "run_edits_stage"]


def edits_stage(branch: Branch) -> str:
    return f"edits-{branch.key}"


def run_edits_stage(job: VideoJob, branch: Branch) -> StageRecord:
    """Write ``edits.safetensors``: ``recon`` [T,3,H,W] and ``edit.<name>`` [T',3,H,W], all in [-1,1], and for
    In-N-Out ``aux.blend_map`` [T,1,R,R] in [0,1] (the OOD share of each pixel's opacity)."""
    from innout_core.edit import (apply_interfacegan, apply_styleclip, load_direction, load_styleclip_mapper,
                                  materialise_edits)
    from innout_core.eg3d.configs import edit_direction_file

    cfg = job.config
    ecfg = cfg.edit_config()
    stage = edits_stage(branch)
    upstream = [s for s in branch.stages if s != stage]
    inputs = [(read_record(job.stage_dir(s)) or StageRecord(stage=s, video=job.id)).output_hash for s in upstream]
    edit_files = [str(e.path) for e in ecfg.interfacegan] + [str(e.path) for e in ecfg.styleclip]
    # a named generator's shipped direction (tiny-face) replaces the preset's generator-made one: hash its bytes
    shipped = edit_direction_file(cfg.generator) if cfg.checkpoint is None and ecfg.synthetic is not None else None
    if shipped is not None:
        edit_files.append(f"{shipped[0]}={hash_file(shipped[1])}")

    def body(d: Path) -> StageOutput:
        dev = resolve_device(cfg.device)
        G = load_generator_cached(cfg, dev)
        # the preset's direction (made from G, or the generator's shipped one) as a file that every branch applies
        named = None if cfg.checkpoint is not None else cfg.generator
        edits = materialise_edits(ecfg, G, d / "directions", generator=named)
        from tasks.face import load_face

        cams = load_face(job, dev, branch.mode)["cameras"]
        out: dict[str, torch.Tensor] = {}
        if branch.method == "innout":
            from innout_core.edit import run_edits
            from innout_core.composite import render_composite_video
            from tasks.innout import load_sr_state, load_stage_a

            sa = load_stage_a(job, branch.variant, branch.mode, dev)
            sr = load_sr_state(job, branch.variant, branch.mode, dev)
            recon = render_composite_video(G, sa, cams, stage_generator(job, stage + "/recon", dev), sr_state=sr)
            out["recon"] = recon.image.clamp(-1, 1)
            out["aux.blend_map"] = recon.blend_map  # [T,1,R,R] in [0,1], for the report
            user_masks = sa.masks if branch.variant == "user-masks" else None
            removal = "release rule, user masks" if (user_masks is not None and ecfg.remove_ood
                                                     and ecfg.removal_masks) else "b = 0 on every ray"
            for name, frames in run_edits(G, sa, cams, edits, stage_generator(job, stage + "/recon", dev), sr_state=sr,
                                          removal_masks=user_masks).items():
                out[f"edit.{name}"] = frames.clamp(-1, 1)
        else:
            from innout_core.inversion import render_inversion
            from tasks.inversion import invert_stage, load_inversion

            res, renders = load_inversion(job, branch.method, branch.mode, dev)
            out["recon"] = renders
            removal = None
            recon_seed = invert_stage(branch.method, branch.mode) + "/render"  # the seed of the inversion's render
            for e in edits.interfacegan:  # the same edits as In-N-Out
                direction = load_direction(e.path, w_dim=res.ws.shape[-1], n_ws=res.ws.shape[1]).to(dev)
                ws = apply_interfacegan(res.ws, direction, e.strength, e.layers)
                out[f"edit.{e.name}"] = render_inversion(G, dataclasses.replace(res, ws=ws), cams,
                                                         stage_generator(job, recon_seed, dev))
            for e in edits.styleclip:
                mapper = load_styleclip_mapper(e.path).to(dev)
                with torch.no_grad():
                    ws = apply_styleclip(res.ws, mapper, e.strength)
                out[f"edit.{e.name}"] = render_inversion(G, dataclasses.replace(res, ws=ws), cams,
                                                         stage_generator(job, recon_seed, dev))
        save_tensors(d / "edits.safetensors", out)
        info = {"edits": sorted(k[5:] for k in out if k.startswith("edit."))}
        if removal is not None and "edit.remove_ood" in out:
            info["removal"] = removal
        return StageOutput({"edits": "edits.safetensors"}, info)

    return run_stage(job, stage, inputs, config_hash(ecfg, edit_files, cfg.generator, cfg.seed), body)


def load_edits(job: VideoJob, branch: Branch, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """``{"recon": [T,3,H,W], "<edit name>": [T',3,H,W], ...}`` of a branch."""
    t = load_tensors(job.stage_dir(edits_stage(branch)) / "edits.safetensors", device)
    return {("recon" if k == "recon" else k[5:]): v for k, v in t.items() if k == "recon" or k.startswith("edit.")}


def load_blend_map(job: VideoJob, branch: Branch, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The In-N-Out branch's blend map [T,1,R,R] in [0,1]; None for baselines."""
    t = load_tensors(job.stage_dir(edits_stage(branch)) / "edits.safetensors", device)
    return t.get("aux.blend_map")
