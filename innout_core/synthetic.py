"""Ground-truth face videos: a generator's face from a known latent, seen by known cameras, with a known 3D occluder
composited by the same volume rendering as In-N-Out (`composite.composite_march`).

For every frame the face field is rendered once (EG3D's stratified + importance samples); the occluder -- an
analytic density/colour field (box, sphere or horizontal bar) placed just in front of the face surface and moving
from frame to frame -- is evaluated at the same samples with blend weight b = its occupancy. The composite is the
occluded input; the same samples marched with b = 0 give the clean frame; the occluder's composite weights
(``CompositeMarch.ood_weights``) summed along each ray give the true occluder opacity. Both go through the
generator's super-resolution exactly as ``G.synthesis`` does. Deterministic given the config's seed.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from innout_core.composite import composite_march
from innout_core.eg3d.camera import intrinsics_matrix, lookat_cam2world, make_label
from innout_core.errors import BadInputError

__all__ = [
    "OccluderConfig",
    "SyntheticVideoConfig",
    "GroundTruthVideo",
    "occluder_field",
    "make_ground_truth_video",
    "save_ground_truth_video",
    "benchmark_videos",
    "static_occluder_video",
    "ground_truth_suite",
]

OccluderKind = Literal["box", "sphere", "bar"]


class OccluderConfig(BaseModel):
    """A solid analytic occluder in front of the face (world units; the face spans about [-0.3, 0.3])."""

    model_config = ConfigDict(extra="forbid")
    kind: OccluderKind = Field("box", description="'box' (square plate), 'sphere' or 'bar' (horizontal stick)")
    size: float = Field(0.12, gt=0, description="half-width of box/bar height, or sphere radius, world units")
    thickness: float = Field(0.12, gt=0, description="half-depth of box/bar along the view axis, world units")
    bar_length: float = Field(0.5, gt=0, description="half-length of the bar, world units")
    offset: tuple[float, float] = Field((0.05, 0.0), description="(x, y) of the centre at the first frame, world units")
    motion: tuple[float, float] = Field((0.08, 0.04), description="(x, y) amplitude of the sinusoidal motion")
    gap: float = Field(0.04, ge=0, description="space between the face surface and the occluder's back, world units")
    density: float = Field(1000.0, gt=0, description="raw sigma inside (softplus(sigma - 1) per world unit)")
    sharpness: float = Field(80.0, gt=0, description="boundary sharpness of the occupancy sigmoid, 1/world units")
    color: tuple[float, float, float] | None = Field(None, description="RGB in [0,1]; None = drawn from the seed")
    stripes: float = Field(0.25, ge=0, le=1, description="contrast of a stripe texture on the occluder (0 = flat)")
    enter_frame: int = Field(0, ge=0, description="first frame that shows the occluder (earlier frames are clean)")


class SyntheticVideoConfig(BaseModel):
    """One ground-truth video."""

    model_config = ConfigDict(extra="forbid")
    n_frames: int = Field(8, ge=1, description="number of frames")
    seed: int = Field(0, description="seed of the latent, the occluder colour and the ray samples")
    resolution: int | None = Field(None, ge=8, description="neural rendering resolution (None = the generator's)")
    truncation_psi: float = Field(0.7, ge=0, le=1, description="truncation of the face latent towards w_avg")
    latent_motion: float = Field(0.05, ge=0, description="per-frame latent wobble, fraction of a second sample")
    yaw_range: float = Field(0.15, ge=0, description="camera yaw amplitude, radians")
    pitch_range: float = Field(0.08, ge=0, description="camera pitch amplitude, radians")
    occluder: OccluderConfig = Field(default_factory=OccluderConfig, description="the occluder")


@dataclass
class GroundTruthVideo:
    """A rendered video with everything known."""

    frames: Tensor  # [T,3,H,W] float32 in about [-1,1]: face + occluder (the input)
    clean: Tensor  # [T,3,H,W] float32: the same render without the occluder
    masks: Tensor  # [T,1,H,W] float32 in {0,1}: 1 = face (occluder opacity < 0.5), 0 = occluder
    cameras: Tensor  # [T,25] float32 EG3D labels
    ws: Tensor  # [T,14,512] float32 true latents
    opacity: Tensor  # [T,1,R,R] float32 in [0,1]: occluder opacity at the neural resolution
    raw: Tensor  # [T,3,R,R] composite raw RGB (neural resolution), about [-1,1]
    clean_raw: Tensor  # [T,3,R,R]

    def occluded(self, min_fraction: float = 0.01) -> Tensor:
        """[T] bool: frames where the occluder covers at least ``min_fraction`` of the pixels."""
        return (1 - self.masks).flatten(1).mean(dim=1) >= min_fraction


def _frontal_label(G: nn.Module, n: int) -> Tensor:
    r = G.rendering
    cam = lookat_cam2world(0.0, 0.0, radius=r.avg_camera_radius, lookat=tuple(r.avg_camera_pivot))
    return make_label(cam.reshape(-1, 4, 4)[:1], intrinsics_matrix()).repeat(n, 1)


def occluder_field(points: Tensor, centre: Tensor, cfg: OccluderConfig, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The occluder's fields at world points.

    Args:
        points: ``[N, P, 3]`` world coordinates.
        centre: ``[N, 3]`` occluder centre per item.
        cfg: shape and appearance.
        features: ``[C]`` feature vector in [0,1]; channels 0-2 are the colour (the decoder's RGB channels).
    Returns:
        colours ``[N, P, C]`` in [0,1], raw sigma ``[N, P, 1]``, blend b = occupancy ``[N, P, 1]`` in [0,1].
    """
    q = points - centre[:, None, :]
    if cfg.kind == "sphere":
        sdf = q.norm(dim=-1) - cfg.size
    else:
        half = (cfg.size, cfg.size, cfg.thickness) if cfg.kind == "box" else (cfg.bar_length, cfg.size * 0.4,
                                                                               cfg.thickness)
        d = q.abs() - torch.tensor(half, dtype=q.dtype, device=q.device)
        sdf = d.clamp(min=0).norm(dim=-1) + d.amax(dim=-1).clamp(max=0)
    occ = torch.sigmoid(-cfg.sharpness * sdf)[..., None]
    sigma = cfg.density * occ
    feats = features.to(points).expand(*points.shape[:2], -1).clone()
    if cfg.stripes > 0:
        stripe = 1 - cfg.stripes * 0.5 * (1 + torch.sin(q[..., 0:1] * 40.0 + q[..., 1:2] * 25.0))
        feats[..., :3] = feats[..., :3] * stripe
    return feats, sigma, occ


def _synthesise(G: nn.Module, ws: Tensor, feature_image: Tensor, generator: torch.Generator) -> Tensor:
    """SR image from composite features as ``G.synthesis`` does it. feature_image [N,C,R,R] -> [N,3,H,W]."""
    return G.superresolve(feature_image[:, :3], feature_image, ws, noise_mode=G.rendering.superresolution_noise_mode,
                          generator=generator)


def _face_front(G: nn.Module, ws: Tensor, c: Tensor, R: int, generator: torch.Generator,
                front_opacity: float = 0.05) -> Tensor:
    """World z where the face starts: along the central rays of the first frame, the depth at which the face's
    accumulated opacity first exceeds ``front_opacity`` (median over the central quarter of the image)."""
    from innout_core.eg3d.rendering import ray_march

    planes = G.backbone_planes(ws[:1], noise_mode="const")
    s = G.render(planes, c[:1], resolution=R, generator=generator, march=False).samples
    _, _, w = ray_march(s.colors, s.densities, s.depths)  # [1,M,S-1,1]
    cum = w[0, :, :, 0].cumsum(dim=-1)
    mid = (s.depths[0, :, 1:, 0] + s.depths[0, :, :-1, 0]) / 2
    first = (cum < front_opacity).sum(dim=-1).clamp(max=mid.shape[-1] - 1)
    depth = mid.gather(-1, first[:, None])[:, 0]
    pts = s.origins[0] + depth[:, None] * s.directions[0]  # [M,3]
    grid = torch.arange(R * R, device=depth.device)
    row, col = grid // R, grid % R
    central = ((row - R / 2).abs() < R / 4) & ((col - R / 2).abs() < R / 4) & (cum[:, -1] > front_opacity)
    if not bool(central.any()):
        return torch.tensor(0.25)
    return pts[central, 2].median()


@torch.no_grad()
def make_ground_truth_video(G: nn.Module, cfg: SyntheticVideoConfig, generator: torch.Generator | None = None
                            ) -> GroundTruthVideo:
    """Render a ground-truth video.

    Args:
        G: frozen TriPlaneGenerator (``tiny`` for the embedded default).
        cfg: video settings.
        generator: RNG; None = a fresh one seeded with ``cfg.seed`` (same seed -> bitwise-same video).
    Returns:
        :class:`GroundTruthVideo` on G's device.
    """
    device = next(G.parameters()).device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    T = cfg.n_frames
    R = int(cfg.resolution or G.neural_rendering_resolution)
    oc = cfg.occluder

    # latents: one face plus a small wobble towards a second sample
    z = torch.randn(2, G.z_dim, generator=generator, device=generator.device).to(device)
    c_front = _frontal_label(G, 2).to(device)
    w2 = G.mapping(z, c_front, truncation_psi=cfg.truncation_psi)
    phase = torch.arange(T, device=device, dtype=torch.float32) * (2 * math.pi / max(T, 1))
    ws = w2[:1] + cfg.latent_motion * torch.sin(phase).view(T, 1, 1) * (w2[1:] - w2[:1])

    # cameras: a small yaw/pitch arc around the frontal view
    r = G.rendering
    yaw = cfg.yaw_range * torch.sin(phase)
    pitch = cfg.pitch_range * torch.sin(phase + math.pi / 3)
    cam2world = lookat_cam2world(yaw, pitch, radius=r.avg_camera_radius, lookat=tuple(r.avg_camera_pivot))
    cameras = make_label(cam2world, intrinsics_matrix()).to(device)

    # occluder appearance and path
    colour = torch.rand(3, generator=generator, device=generator.device).to(device) * 0.8 + 0.1
    if oc.color is not None:
        colour = torch.tensor(oc.color, device=device)
    features = torch.rand(64, generator=generator, device=generator.device).to(device)  # >= C feature channels
    z_face = _face_front(G, ws, cameras, R, generator)
    half_depth = oc.size if oc.kind == "sphere" else oc.thickness
    near_z = r.avg_camera_radius - r.ray_start  # camera on the sphere of avg radius about the origin
    cz = min(float(z_face) + oc.gap + half_depth, near_z - half_depth - 0.02)
    mx = oc.offset[0] + oc.motion[0] * torch.sin(phase)
    my = oc.offset[1] + oc.motion[1] * torch.cos(phase)
    centres = torch.stack([mx, my, torch.full_like(mx, cz)], dim=-1)
    hidden = torch.arange(T, device=device) < oc.enter_frame
    centres[hidden] = torch.tensor([0.0, 0.0, 50.0], device=device)  # far outside every ray's depth range

    frames, clean, opac, raw, clean_raw = [], [], [], [], []
    for t in range(T):
        planes = G.backbone_planes(ws[t : t + 1], noise_mode="const")
        s = G.render(planes, cameras[t : t + 1], resolution=R, generator=generator, march=False).samples
        n, m, S, C = s.colors.shape
        feat = features[:C].clone()
        feat[:3] = colour
        oc_col, oc_sig, oc_b = occluder_field(s.points().reshape(n, m * S, 3), centres[t : t + 1], oc, feat)
        oc_col, oc_sig, oc_b = oc_col.view(n, m, S, C), oc_sig.view(n, m, S, 1), oc_b.view(n, m, S, 1)
        comp = composite_march(s.colors, s.densities, oc_col, oc_sig, oc_b, s.depths)
        plain = composite_march(s.colors, s.densities, oc_col, oc_sig, torch.zeros_like(oc_b), s.depths)
        f_img = comp.rgb.permute(0, 2, 1).reshape(n, C, R, R)
        c_img = plain.rgb.permute(0, 2, 1).reshape(n, C, R, R)
        frames.append(_synthesise(G, ws[t : t + 1], f_img, generator))
        clean.append(_synthesise(G, ws[t : t + 1], c_img, generator))
        opac.append(comp.ood_weights.sum(dim=-2).permute(0, 2, 1).reshape(n, 1, R, R).clamp(0, 1))
        raw.append(f_img[:, :3])
        clean_raw.append(c_img[:, :3])
    frames_t, clean_t = torch.cat(frames), torch.cat(clean)
    opacity = torch.cat(opac)
    H = frames_t.shape[-1]
    up = F.interpolate(opacity, size=(H, H), mode="bilinear", align_corners=False) if H != R else opacity
    masks = (up < 0.5).float()
    return GroundTruthVideo(frames=frames_t, clean=clean_t, masks=masks, cameras=cameras.float(), ws=ws.float(),
                            opacity=opacity, raw=torch.cat(raw), clean_raw=torch.cat(clean_raw))


def _atomic_save(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_ground_truth_video(video: GroundTruthVideo, out_dir: str | Path, fps: float = 25) -> dict[str, Path]:
    """Write a ground-truth video (every file atomic).

    Files: ``frames.mp4`` and ``clean.mp4`` (H.264 via ffmpeg), ``frames/`` and ``clean/`` lossless PNGs,
    ``masks.npz`` (``masks`` uint8 [T,1,H,W], ``opacity`` float32 [T,1,R,R]), ``cameras.npy`` float32 [T,25],
    ``ws.npy`` float32 [T,14,512].

    Returns:
        ``{name: path}`` for every file/folder written.
    """
    from innout_core.video import encode_video, write_frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "frames_mp4": encode_video(video.frames.clamp(-1, 1).cpu(), out / "frames.mp4", fps),
        "clean_mp4": encode_video(video.clean.clamp(-1, 1).cpu(), out / "clean.mp4", fps),
    }
    write_frames(video.frames.clamp(-1, 1).cpu(), out / "frames")
    write_frames(video.clean.clamp(-1, 1).cpu(), out / "clean")
    paths["frames"], paths["clean"] = out / "frames", out / "clean"

    def save_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=video.masks.cpu().numpy().astype(np.uint8),
                                opacity=video.opacity.cpu().numpy().astype(np.float32))

    for name, arr in (("cameras", video.cameras), ("ws", video.ws)):
        p = out / f"{name}.npy"

        def save_npy(tmp: str, arr=arr) -> None:
            with open(tmp, "wb") as f:
                np.save(f, arr.detach().cpu().numpy().astype(np.float32))

        _atomic_save(p, save_npy)
        paths[name] = p
    _atomic_save(out / "masks.npz", save_npz)
    paths["masks"] = out / "masks.npz"
    return paths


def benchmark_videos(n_frames: int = 8, seed: int = 0) -> list[SyntheticVideoConfig]:
    """The embedded default's ground-truth set: three videos with different occluders (box, sphere, bar)."""
    if n_frames < 1:
        raise BadInputError(f"n_frames must be >= 1, got {n_frames}")
    return [
        SyntheticVideoConfig(n_frames=n_frames, seed=seed, occluder=OccluderConfig(kind="box", offset=(0.08, 0.05))),
        SyntheticVideoConfig(n_frames=n_frames, seed=seed + 1,
                             occluder=OccluderConfig(kind="sphere", size=0.1, offset=(-0.06, -0.04),
                                                     motion=(0.05, 0.06), enter_frame=2)),
        SyntheticVideoConfig(n_frames=n_frames, seed=seed + 2,
                             occluder=OccluderConfig(kind="bar", size=0.12, offset=(0.0, 0.02), motion=(0.03, 0.06))),
    ]


def static_occluder_video(n_frames: int = 8, seed: int = 3) -> SyntheticVideoConfig:
    """A ground-truth video whose occluder does not move in the world (only the camera arc moves it in the image):
    a box plate over the lower-left cheek, present in every frame."""
    if n_frames < 1:
        raise BadInputError(f"n_frames must be >= 1, got {n_frames}")
    return SyntheticVideoConfig(n_frames=n_frames, seed=seed,
                                occluder=OccluderConfig(kind="box", size=0.1, offset=(-0.07, -0.06), motion=(0.0, 0.0)))


def ground_truth_suite(n_frames: int = 8, seed: int = 0) -> dict[str, SyntheticVideoConfig]:
    """The ground-truth benchmark's videos by name: :func:`benchmark_videos` (``box``, ``sphere``, ``bar``; moving
    occluders) and ``static`` (:func:`static_occluder_video`, seed ``seed + 3``)."""
    moving = benchmark_videos(n_frames, seed)
    return {"box": moving[0], "sphere": moving[1], "bar": moving[2], "static": static_occluder_video(n_frames, seed + 3)}
