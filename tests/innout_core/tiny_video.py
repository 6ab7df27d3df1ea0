"""Small known inputs on the `tiny` generator shared by the method tests (stage A, stage B, fast path)."""

from __future__ import annotations

import torch

from innout_core.eg3d.camera import orbit_labels
from innout_core.eg3d.configs import build_generator
from innout_core.joint import StageAResult
from innout_core.ood import OODField

#: Occluder rows/cols at 128 px, and its colour in [-1, 1].
OCC = (slice(40, 80), slice(30, 90))
OCC_RGB = (0.9, -0.6, 0.3)


def clean_video(n: int = 2):
    """(G, frames [n,3,128,128] in [-1,1], cameras [n,25], ws [n,10,512]) rendered from known latents."""
    G = build_generator("tiny")
    c = orbit_labels(n, 0.3, 0.1)
    z = torch.randn(n, G.init_kwargs["z_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = G.mapping(z, c)
        frames = G.synthesis(ws, c, noise_mode="const", generator=torch.Generator().manual_seed(0)).image.clamp(-1, 1)
    return G, frames, c, ws


def occluded_video(n: int = 2):
    """(G, frames with a solid occluder pasted in, cameras, ws, masks [n,1,128,128] with 1 = face)."""
    G, clean, c, ws = clean_video(n)
    frames = clean.clone()
    frames[:, :, OCC[0], OCC[1]] = torch.tensor(OCC_RGB).view(1, 3, 1, 1)
    masks = torch.ones(n, 1, 128, 128)
    masks[:, :, OCC[0], OCC[1]] = 0
    return G, frames, c, ws, masks


def untrained_stage_a(n: int = 2):
    """(G, a stage-A result with a random OOD field at neural resolution 16, clean frames, cameras)."""
    G, frames, c, ws = clean_video(n)
    ood = OODField(n, 32, 16, generator=torch.Generator().manual_seed(1))
    sa = StageAResult(ood_state=ood.ood_state(), phi=ood.phi.detach().clone(), ws=ws, losses=[], seconds=0.0,
                      neural_resolution=16)
    return G, sa, frames, c


def known_face_stage_a(G, steps: int) -> tuple[StageAResult, torch.Tensor]:
    """(a ``steps``-step stage-A result, cameras [2,25]) on 2 frames of a known face of ``G`` (psi 0.7), neural
    resolution 16, 8^2 OOD planes, no masks, the release's constant SR noise."""
    from innout_core.joint import JointConfig, run_stage_a

    c = orbit_labels(2, 0.2, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), c, truncation_psi=0.7)
        frames = G.synthesis(ws, c, noise_mode="const", generator=torch.Generator().manual_seed(1)).image.clamp(-1, 1)
    cfg = JointConfig.preset("tiny-demo").model_copy(
        update={"steps": steps, "neural_resolution": 16, "ood_resolution": 8, "mask_mode": "none",
                "checkpoint_every": 0, "sr_noise": "const"})
    return run_stage_a(G, frames, c, ws, cfg, torch.Generator().manual_seed(2)), c
