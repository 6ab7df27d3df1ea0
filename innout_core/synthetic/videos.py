"""Ground-truth face videos: a generator's face from a known latent, seen by known cameras, with a known 3D occluder
composited by the same volume rendering as In-N-Out (`composite.composite_march`).

For every frame the face field is rendered once (EG3D's stratified + importance samples); the occluder -- an
analytic density/colour field placed just in front of the face surface and moving from frame to frame -- is
evaluated at the same samples with blend weight b = its occupancy. Kinds: ``box``, ``sphere``, horizontal ``bar``
(the `tiny` suite), and three things a head family cannot draw: a ``hand`` (palm, four fingers, thumb), ``glasses``
(two rims, bridge, temples; see-through lenses) and a ``microphone`` (meshed ball, handle leaving the frame). The
new kinds are 2D silhouettes extruded over |z| <= ``thickness`` along the view axis so that EG3D's 12 stratified
samples per ray, 0.0875 world units apart, always hit them: the composite shares the face's samples, and only the
face steers the importance samples. The composite is the occluded input; the same samples marched with b = 0
give the clean frame; the occluder's composite weights (``CompositeMarch.ood_weights``) summed along each ray give
the true occluder opacity. Both go through the generator's super-resolution exactly as ``G.synthesis`` does.
Deterministic given the config's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from innout_core.composite import composite_march
from innout_core.eg3d.camera import frontal_label, intrinsics_matrix, lookat_cam2world, make_label
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
    "suite_names",
    "suite_preview",
    "HELD_OUT_SEED",
    "GENERATORS",
]

OccluderKind = Literal["box", "sphere", "bar", "hand", "glasses", "microphone"]
GeneratorName = Literal["tiny", "tiny-face"]
#: Generators with a ground-truth suite (:func:`ground_truth_suite`, :func:`benchmark_videos`).
GENERATORS: tuple[str, ...] = ("tiny", "tiny-face")
#: First torch seed of the held-out identities of the ``tiny-face`` suites: video k (0..4: hand, glasses, microphone,
#: bar, static) of ``ground_truth_suite(seed=s)`` draws its latents from ``HELD_OUT_SEED + 100 * s + k``.
#: ``bench/train_tiny_face.py`` (the shipped weights: seed 0) uses the torch seeds 0 (model), 1 (probe points),
#: 7 (latents, batches), 123 (preview) and 1_000_003 + identity (cameras); fresh z from this stream are identities
#: that training never fitted.
HELD_OUT_SEED = 900_000_000


class OccluderConfig(BaseModel):
    """A solid analytic occluder in front of the face (world units; the face spans about [-0.3, 0.3])."""

    model_config = ConfigDict(extra="forbid")
    kind: OccluderKind = Field("box", description="'box' (square plate), 'sphere', 'bar' (horizontal stick), 'hand' "
                               "(palm + 4 fingers + thumb), 'glasses' (rims + bridge + temples), 'microphone' "
                               "(meshed ball + handle)")
    size: float = Field(0.12, gt=0, description="half-width of box/bar height, sphere radius, hand palm half-height, "
                        "glasses rim radius (lens + rim), microphone ball radius, world units")
    thickness: float = Field(0.12, gt=0, description="half-depth along the view axis of box/bar/hand/glasses/"
                             "microphone, world units; >= 0.0875 (a depth of two sample intervals of the tiny "
                             "generators) puts a stratified sample inside on every ray")
    bar_length: float = Field(0.5, gt=0, description="half-length of the bar, world units")
    offset: tuple[float, float] = Field((0.05, 0.0), description="(x, y) of the centre at the first frame, world units")
    motion: tuple[float, float] = Field((0.08, 0.04), description="(x, y) amplitude of the sinusoidal motion")
    gap: float = Field(0.04, ge=0, description="space between the face surface and the occluder's back, world units")
    density: float = Field(1000.0, gt=0, description="raw sigma inside (softplus(sigma - 1) per world unit)")
    sharpness: float = Field(80.0, gt=0, description="boundary sharpness of the occupancy sigmoid, 1/world units")
    color: tuple[float, float, float] | None = Field(None, description="RGB in [0,1]; None = drawn from the seed")
    stripes: float = Field(0.25, ge=0, le=1, description="contrast of a stripe texture on the occluder (0 = flat)")
    enter_frame: int = Field(0, ge=0, description="first frame that shows the occluder (earlier frames are clean)")
    angle: float = Field(0.0, description="in-plane rotation about the view axis, radians (counter-clockwise)")
    swing: float = Field(0.0, ge=0, description="amplitude of a sinusoidal in-plane rotation per frame, radians")
    texture: Literal["random", "face"] = Field(
        "random", description="the occluder's feature channels beyond RGB: 'random' (drawn from the seed) or 'face' "
        "(the face's mean feature vector in the first frame, so a trained super-resolution renders the occluder "
        "smooth instead of turning random features into noise)")


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


def occluder_field(points: Tensor, centre: Tensor, cfg: OccluderConfig, features: Tensor, angle: float = 0.0
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """The occluder's fields at world points.

    Args:
        points: ``[N, P, 3]`` world coordinates.
        centre: ``[N, 3]`` occluder centre per item.
        cfg: shape and appearance.
        features: ``[C]`` feature vector in [0,1]; channels 0-2 are the colour (the decoder's RGB channels).
        angle: in-plane rotation (about the view axis z, counter-clockwise), radians; 0 = none.
    Returns:
        colours ``[N, P, C]`` in [0,1], raw sigma ``[N, P, 1]``, blend b = occupancy ``[N, P, 1]`` in [0,1].
    """
    q = points - centre[:, None, :]
    if angle != 0.0:
        q = _rotate_z(q, -angle)
    if cfg.kind in _PART_KINDS:
        return _part_kind_field(q, cfg, features)
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


# -- hand, glasses, microphone: 2D silhouettes (occluder frame: x right, y up, z toward the camera) extruded over
# |z| <= thickness, so every ray through them has stratified samples inside (12 per ray, 0.0875 apart: a depth of
# two intervals, 0.175, always holds one), with the shading of a rounded relief seen from the front

_PART_KINDS = ("hand", "glasses", "microphone")
_LIGHT = (0.0, 0.5, 1.0)  # baked light direction, as synthetic.heads
_GRAD_EPS = 2e-3  # central-difference step of the silhouette gradient, world units
MIC_HANDLE_COLOUR = (0.07, 0.07, 0.08)


def _rotate_z(q: Tensor, angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * q[..., 0] - s * q[..., 1], s * q[..., 0] + c * q[..., 1], q[..., 2]], dim=-1)


def _segment2d(x: Tensor, y: Tensor, a: tuple[float, float], b: tuple[float, float], r: float) -> Tensor:
    """Signed distance to a 2D capsule (segment a-b, radius r)."""
    px, py, dx, dy = x - a[0], y - a[1], b[0] - a[0], b[1] - a[1]
    h = ((px * dx + py * dy) / (dx * dx + dy * dy)).clamp(0, 1)
    return torch.sqrt((px - h * dx) ** 2 + (py - h * dy) ** 2) - r


def _segment3d(q: Tensor, a: tuple[float, float, float], b: tuple[float, float, float], r: float) -> Tensor:
    """Signed distance to a 3D capsule (segment a-b, radius r); q [..., 3] -> [...]."""
    at = torch.tensor(a, dtype=q.dtype, device=q.device)
    ba = torch.tensor(b, dtype=q.dtype, device=q.device) - at
    pa = q - at
    h = ((pa * ba).sum(-1) / (ba * ba).sum()).clamp(0, 1)
    return (pa - h[..., None] * ba).norm(dim=-1) - r


def _extrude(d2: Tensor, z: Tensor, half: float) -> Tensor:
    """Exact signed distance of a 2D shape (signed distance d2) extruded over |z| <= half."""
    w = torch.stack([d2, z.abs() - half], dim=-1)
    return w.amax(dim=-1).clamp(max=0) + w.clamp(min=0).norm(dim=-1)


def _hand_2d(x: Tensor, y: Tensor, cfg: OccluderConfig) -> tuple[Tensor, Tensor, Tensor]:
    """A hand seen from the palm side, fingers up, thumb to the image left: a rounded palm (half-height size),
    four finger capsules fanning out, a thumb. Returns (signed distance, part 0, relief radius = finger radius)."""
    s = cfg.size
    hw, rr, fr = 0.85 * s, 0.3 * s, 0.17 * s
    dx, dy = x.abs() - (hw - rr), y.abs() - (s - rr)
    d2 = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2) + torch.maximum(dx, dy).clamp(max=0) - rr
    for xf, length in zip((-0.64, -0.22, 0.22, 0.64), (1.0, 1.15, 1.08, 0.85)):
        x0 = xf * hw
        d2 = torch.minimum(d2, _segment2d(x, y, (x0, 0.75 * s), (x0 * 1.3, (1.0 + length) * s), fr))
    d2 = torch.minimum(d2, _segment2d(x, y, (-0.5 * hw, -0.4 * s), (-1.5 * hw, 0.35 * s), 1.2 * fr))
    return d2, torch.zeros_like(d2, dtype=torch.long), torch.full_like(d2, fr)


def _glasses_geometry(cfg: OccluderConfig) -> tuple[float, float, float]:
    """(rim outer radius R = size, rim half-width w, lens centre |x|) of ``glasses``."""
    R = cfg.size
    return R, 0.22 * R, 1.5 * R


def _glasses_2d(x: Tensor, y: Tensor, cfg: OccluderConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Two round rims (lenses empty), a bridge and two hinge stubs. Returns (signed distance, part index: 0
    everywhere (one part), relief radius: 0 everywhere (thin frames shade flat))."""
    R, w, cx = _glasses_geometry(cfg)
    d2 = (torch.sqrt((x.abs() - cx) ** 2 + y**2) - (R - w)).abs() - w  # both rims through |x|
    d2 = torch.minimum(d2, _segment2d(x, y, (-(cx - R + w), 0.3 * R), (cx - R + w, 0.3 * R), 0.7 * w))
    d2 = torch.minimum(d2, _segment2d(x.abs(), y, (cx + R - w, 0.2 * R), (cx + R + 0.6 * w, 0.2 * R), 0.8 * w))
    return d2, torch.zeros_like(d2, dtype=torch.long), torch.zeros_like(d2)


def _glasses_temples(q: Tensor, cfg: OccluderConfig) -> Tensor:
    """The two temples, 3D capsules from the hinges back (-z) and outward toward the ears (signed distance)."""
    R, w, cx = _glasses_geometry(cfg)
    qa = torch.stack([q[..., 0].abs(), q[..., 1], q[..., 2]], dim=-1)  # mirrored: one capsule serves both sides
    return _segment3d(qa, (cx + R + 0.6 * w, 0.2 * R, 0.0), (cx + 3.0 * R, 0.35 * R, -6.0 * R), 0.8 * w)


def _microphone_2d(x: Tensor, y: Tensor, cfg: OccluderConfig) -> tuple[Tensor, Tensor, Tensor]:
    """A round head (radius size) on a handle 0.42 radii wide going straight down 12 radii (out of the frame).
    Returns (signed distance, part 0 = head / 1 = handle, relief radius: the head shades as a sphere, the handle as
    a cylinder)."""
    r = cfg.size
    head = torch.sqrt(x**2 + y**2) - r
    handle = _segment2d(x, y, (0.0, -0.5 * r), (0.0, -12.0 * r), 0.42 * r)
    part = (handle < head).long()
    return torch.minimum(head, handle), part, torch.where(part == 1, 0.42 * r, r)


_SILHOUETTE = {"hand": _hand_2d, "glasses": _glasses_2d, "microphone": _microphone_2d}


def _part_kind_field(q: Tensor, cfg: OccluderConfig, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Fields of a ``hand`` / ``glasses`` / ``microphone`` at occluder-frame points q [N,P,3] (see occluder_field).

    Density: the kind's silhouette extruded over |z| <= ``cfg.thickness`` (glasses add 3D temples). Colour:
    ``features[:3]`` shaded by the normal of a rounded relief of the silhouette (horizontal at the outline, facing
    the camera at the relief radius inside; light from the front-top), the same at every depth; the microphone head
    gets a mesh of dark lines (contrast ``cfg.stripes``), its handle :data:`MIC_HANDLE_COLOUR`."""
    silhouette = _SILHOUETTE[cfg.kind]
    x, y = q[..., 0], q[..., 1]
    d2, part, rho = silhouette(x, y, cfg)
    sdf = _extrude(d2, q[..., 2], cfg.thickness)
    if cfg.kind == "glasses":
        sdf = torch.minimum(sdf, _glasses_temples(q, cfg))
    occ = torch.sigmoid(-cfg.sharpness * sdf)[..., None]
    sigma = cfg.density * occ
    gx = silhouette(x + _GRAD_EPS, y, cfg)[0] - silhouette(x - _GRAD_EPS, y, cfg)[0]
    gy = silhouette(x, y + _GRAD_EPS, cfg)[0] - silhouette(x, y - _GRAD_EPS, cfg)[0]
    g = F.normalize(torch.stack([gx, gy], dim=-1), dim=-1)
    side = torch.where(rho > 0, (1 + d2 / rho.clamp(min=1e-6)).clamp(0, 1), torch.zeros_like(d2))[..., None]
    normal = torch.cat([side * g, torch.sqrt((1 - side**2).clamp(min=0))], dim=-1)
    light = F.normalize(torch.tensor(_LIGHT, dtype=q.dtype, device=q.device), dim=0)
    shade = (0.55 + 0.45 * (normal * light).sum(-1).clamp(min=0))[..., None]
    feats = features.to(q).expand(*q.shape[:2], -1).clone()
    rgb = feats[..., :3]
    if cfg.kind == "microphone":
        period = 0.6 * cfg.size
        line = torch.maximum(torch.cos(2 * math.pi * x / period), torch.cos(2 * math.pi * y / period))
        mesh = torch.sigmoid(10.0 * (line - 0.6))[..., None]
        rgb = torch.where((part == 1)[..., None], torch.tensor(MIC_HANDLE_COLOUR, dtype=q.dtype, device=q.device),
                          rgb * (1 - cfg.stripes * mesh))
    feats[..., :3] = (rgb * shade).clamp(0, 1)
    return feats, sigma, occ


def _mean_face_features(colors: Tensor, densities: Tensor, depths: Tensor) -> Tensor:
    """The face's feature vector [C] in [0,1] averaged over a frame, weighted by the face's opacity per ray.
    colors [1,M,S,C], densities [1,M,S,1], depths [1,M,S,1]: the face's samples."""
    zeros = torch.zeros_like(densities)
    plain = composite_march(colors, densities, torch.zeros_like(colors), zeros, zeros, depths)
    return ((plain.rgb[0] + 1) / 2).sum(dim=0) / plain.acc[0].sum().clamp(min=1e-6)


def _kind_colour(kind: str, drawn: Tensor) -> Tensor:
    """The occluder colour [3] in [0,1] from the seed's draw ``drawn`` [3] in [0.1, 0.9] when the config gives none:
    box/sphere/bar use the draw; a hand gets a skin tone between light and dark (independent of the head's), glasses
    a dark frame, a microphone a slightly tinted silver."""
    if kind == "hand":
        t = (drawn[0] - 0.1) / 0.8
        light = torch.tensor((0.92, 0.72, 0.6), dtype=drawn.dtype, device=drawn.device)
        dark = torch.tensor((0.42, 0.26, 0.18), dtype=drawn.dtype, device=drawn.device)
        return light + (dark - light) * t
    if kind == "glasses":
        return drawn * 0.3
    if kind == "microphone":
        return 0.6 + 0.2 * (drawn - 0.5)
    return drawn


def _half_depth(oc: OccluderConfig) -> float:
    """The occluder's half-extent along the view axis in front of its centre (places its back behind the gap)."""
    return oc.size if oc.kind == "sphere" else oc.thickness


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
    c_front = frontal_label(G, 2).to(device)
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
    colour = _kind_colour(oc.kind, torch.rand(3, generator=generator, device=generator.device).to(device) * 0.8 + 0.1)
    if oc.color is not None:
        colour = torch.tensor(oc.color, device=device)
    features = torch.rand(64, generator=generator, device=generator.device).to(device)  # >= C feature channels
    z_face = _face_front(G, ws, cameras, R, generator)
    half_depth = _half_depth(oc)
    near_z = r.avg_camera_radius - r.ray_start  # camera on the sphere of avg radius about the origin
    cz = min(float(z_face) + oc.gap + half_depth, near_z - half_depth - 0.02)
    mx = oc.offset[0] + oc.motion[0] * torch.sin(phase)
    my = oc.offset[1] + oc.motion[1] * torch.cos(phase)
    centres = torch.stack([mx, my, torch.full_like(mx, cz)], dim=-1)
    hidden = torch.arange(T, device=device) < oc.enter_frame
    centres[hidden] = torch.tensor([0.0, 0.0, 50.0], device=device)  # far outside every ray's depth range
    angles = (oc.angle + oc.swing * torch.sin(phase + 0.7)).tolist()

    frames, clean, opac, raw, clean_raw = [], [], [], [], []
    for t in range(T):
        planes = G.backbone_planes(ws[t : t + 1], noise_mode="const")
        s = G.render(planes, cameras[t : t + 1], resolution=R, generator=generator, march=False).samples
        n, m, S, C = s.colors.shape
        if t == 0 and oc.texture == "face":
            features = _mean_face_features(s.colors, s.densities, s.depths)
        feat = features[:C].clone()
        feat[:3] = colour
        oc_col, oc_sig, oc_b = occluder_field(s.points().reshape(n, m * S, 3), centres[t : t + 1], oc, feat,
                                              angles[t])
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


def save_ground_truth_video(video: GroundTruthVideo, out_dir: str | Path, fps: float = 25) -> dict[str, Path]:
    """Write a ground-truth video (every file atomic).

    Files: ``frames.mp4`` and ``clean.mp4`` (H.264 via ffmpeg), ``frames/`` and ``clean/`` lossless PNGs,
    ``masks.npz`` (``masks`` uint8 [T,1,H,W], ``opacity`` float32 [T,1,R,R]), ``cameras.npy`` float32 [T,25],
    ``ws.npy`` float32 [T,14,512].

    Returns:
        ``{name: path}`` for every file/folder written.
    """
    from innout_core.io import atomic_path
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

    for name, arr in (("cameras", video.cameras), ("ws", video.ws)):
        p = out / f"{name}.npy"
        with atomic_path(p) as tmp, open(tmp, "wb") as f:
            np.save(f, arr.detach().cpu().numpy().astype(np.float32))
        paths[name] = p
    with atomic_path(out / "masks.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, masks=video.masks.cpu().numpy().astype(np.uint8),
                            opacity=video.opacity.cpu().numpy().astype(np.float32))
    paths["masks"] = out / "masks.npz"
    return paths


def _check_frames(n_frames: int) -> None:
    if n_frames < 1:
        raise BadInputError(f"n_frames must be >= 1, got {n_frames}")


def _check_generator(generator: str) -> None:
    if generator not in GENERATORS:
        raise BadInputError(f"no ground-truth suite for generator {generator!r}; choose one of {list(GENERATORS)}")


def _face_videos(n_frames: int, seed: int) -> dict[str, SyntheticVideoConfig]:
    """The ``tiny-face`` videos: held-out identities (seeds :data:`HELD_OUT_SEED` + 100 * seed + k) with occluders
    the head family cannot draw, and a box fixed in the world."""
    base = HELD_OUT_SEED + 100 * seed

    def video(k: int, **occluder: object) -> SyntheticVideoConfig:
        return SyntheticVideoConfig(n_frames=n_frames, seed=base + k, occluder=OccluderConfig(**occluder))

    return {
        # a hand over mouth and cheek, waving a little
        "hand": video(0, kind="hand", size=0.075, thickness=0.1, offset=(0.04, -0.12), motion=(0.05, 0.035),
                      angle=0.25, swing=0.15, stripes=0.0, texture="face"),
        # glasses on the eyes, following the head with a small jitter
        "glasses": video(1, kind="glasses", size=0.042, thickness=0.1, offset=(0.0, 0.005),
                         motion=(0.004, 0.003), sharpness=200.0, stripes=0.0, texture="face"),
        # a microphone in front of the mouth that enters after the first quarter of the video
        "microphone": video(2, kind="microphone", size=0.075, thickness=0.1, offset=(0.04, -0.12),
                            motion=(0.03, 0.02), stripes=0.6, enter_frame=max(1, n_frames // 4), texture="face"),
        "bar": video(3, kind="bar", size=0.12, offset=(0.0, 0.02), motion=(0.03, 0.06), texture="face"),
        "static": video(4, kind="box", size=0.1, offset=(-0.07, -0.06), motion=(0.0, 0.0), texture="face"),
    }


def benchmark_videos(n_frames: int = 8, seed: int = 0, generator: GeneratorName = "tiny") -> list[SyntheticVideoConfig]:
    """The demo's ground-truth set for ``generator``: three videos with different moving occluders. ``tiny``: box,
    sphere, bar (seeds ``seed``..``seed + 2``); ``tiny-face``: hand, glasses, microphone on held-out identities
    (see :func:`ground_truth_suite`)."""
    _check_frames(n_frames)
    _check_generator(generator)
    if generator == "tiny-face":
        face = _face_videos(n_frames, seed)
        return [face["hand"], face["glasses"], face["microphone"]]
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
    _check_frames(n_frames)
    return SyntheticVideoConfig(n_frames=n_frames, seed=seed,
                                occluder=OccluderConfig(kind="box", size=0.1, offset=(-0.07, -0.06), motion=(0.0, 0.0)))


def ground_truth_suite(n_frames: int = 8, seed: int = 0, generator: GeneratorName = "tiny"
                       ) -> dict[str, SyntheticVideoConfig]:
    """The ground-truth benchmark's videos for ``generator``, by name.

    ``tiny``: :func:`benchmark_videos` (``box``, ``sphere``, ``bar``; moving occluders) and ``static``
    (:func:`static_occluder_video`, seed ``seed + 3``); unchanged since the first sweep (its results are keyed by it).
    ``tiny-face``: ``hand`` (waving over mouth and cheek), ``bar``, ``glasses`` (on the eyes, small jitter),
    ``microphone`` (in front of the mouth, enters after the first quarter) and ``static`` (a box fixed in the world),
    each on a held-out identity: latents z ~ N(0, I) from torch seed ``HELD_OUT_SEED + 100 * seed + k`` (k = 0..4 for
    hand, glasses, microphone, bar, static; also the occluder colour and the ray samples) mapped with
    the frontal camera and truncated toward w_avg with psi 0.7 (``SyntheticVideoConfig.truncation_psi``)."""
    _check_frames(n_frames)
    _check_generator(generator)
    if generator == "tiny-face":
        face = _face_videos(n_frames, seed)
        return {k: face[k] for k in ("hand", "bar", "glasses", "microphone", "static")}
    moving = benchmark_videos(n_frames, seed)
    return {"box": moving[0], "sphere": moving[1], "bar": moving[2], "static": static_occluder_video(n_frames, seed + 3)}


def suite_names(generator: GeneratorName = "tiny") -> tuple[str, ...]:
    """The video names of ``ground_truth_suite(generator=generator)``, in order."""
    return tuple(ground_truth_suite(1, 0, generator))


@torch.no_grad()
def suite_preview(G: nn.Module, generator: GeneratorName = "tiny", n_frames: int = 8, seed: int = 0) -> Tensor:
    """One image of a suite for the documentation: per video (columns, suite order) the input, the occluder mask
    (white = occluder) and the clean frame (rows) at its middle occluded frame. G must be ``generator``'s network.

    Returns:
        ``[3, 3H, n_videos * W]`` float32 in [-1, 1].
    """
    cols = []
    for cfg in ground_truth_suite(n_frames, seed, generator).values():
        v = make_ground_truth_video(G, cfg)
        occ = torch.nonzero(v.occluded()).flatten()
        t = int(occ[len(occ) // 2]) if len(occ) else 0
        mask = (1 - 2 * v.masks[t]).expand(3, -1, -1)
        cols.append(torch.cat([v.frames[t].clamp(-1, 1), mask, v.clean[t].clamp(-1, 1)], dim=1))
    return torch.cat(cols, dim=2).cpu()
