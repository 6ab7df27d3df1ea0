"""A procedural 3D head family: an analytic density and colour field rendered in EG3D's framing.

Each identity is a :class:`HeadParams` (a few dozen numbers: proportions, expression, skin/hair/eye/lip colours)
drawn from a seeded distribution (:func:`sample_head_params`). :func:`head_field` evaluates the head at world
points as smooth signed-distance primitives -- skull with a face oval, chin, neck, ears, nose (bridge, tip, wings),
eyeballs with sclera/iris/pupil in carved sockets, upper and lower eyelids, eyebrows, lips with a mouth opening,
and a hair cap with an optional long-hair volume -- turned into EG3D raw sigma (the marcher applies
``softplus(sigma - 1)``) and a baked, view-independent shaded colour. :func:`render_head` renders it with the
project's own EG3D renderer (``eg3d.rendering``: ray sampler, stratified + importance samples, MipRayMarcher2) at
EG3D camera labels (``eg3d.camera``: radius 2.7 around the origin, looking at (0, 0, 0.2), FFHQ focal), so a
render is framed like EG3D's FFHQ renders and like ``innout_core.synthetic``'s ground-truth videos.

World frame (EG3D): +y up, +x to the image right at the frontal camera, +z toward the frontal camera; the head
fits the tri-plane box [-0.5, 0.5]^3 (about 0.36 wide, 0.55 tall without the neck, face surface near z = 0.2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor

from innout_core.eg3d.camera import (FOCAL_FFHQ, frontal_label, intrinsics_matrix, lookat_cam2world, make_label,
                                     split_label)
from innout_core.eg3d.rendering import march_weights, ray_march, sample_importance, sample_rays, sample_stratified

__all__ = [
    "PART_NAMES",
    "HeadParams",
    "HeadField",
    "HeadRender",
    "sample_head_params",
    "sample_identities",
    "mirror_symmetric",
    "head_bounds",
    "head_field",
    "head_cameras",
    "frontal_camera",
    "render_head",
]

PART_NAMES: tuple[str, ...] = ("skin", "hair", "sclera", "iris", "pupil", "lips", "mouth")
"""Part labels of :attr:`HeadField.parts` / :attr:`HeadRender.parts` (eyebrows count as hair)."""

RAW_EMPTY = -10.0  # raw sigma outside the head: softplus(-11) ~ 1.7e-5 per world unit
RAW_FULL = 400.0  # raw sigma inside: ~399 per world unit (opaque within ~0.01)
SURFACE_SOFTNESS = 0.003  # width of the sigmoid step of the density across a surface, world units
COLOUR_SOFTNESS = 0.0015  # width over which neighbouring parts' colours blend, world units
_LIGHT = (0.0, 0.5, 1.0)  # baked light direction (normalised at use); x = 0 keeps the field even in x


@dataclass(frozen=True)
class HeadParams:
    """One identity: proportions and positions in world units, expression in [0, 1] or [-1, 1], colours RGB [0, 1].

    Use :func:`sample_head_params` for draws from the family's distribution; every field can be set directly.
    """

    head_width: float = 0.175  # skull x half-axis
    head_height: float = 0.225  # skull y half-axis (upper half)
    head_depth: float = 0.22  # skull z half-axis
    head_y: float = -0.03  # skull centre y
    jaw_width: float = 0.8  # x scale of the face oval at the chin (1 = no narrowing)
    chin_length: float = 0.95  # factor on the lower half's y half-axis
    neck_radius: float = 0.09
    ear_size: float = 0.05  # ear y half-axis
    ear_y: float = -0.005  # ear centre height relative to the skull centre
    eye_y: float = 0.035  # eye centre height relative to the skull centre
    eye_separation: float = 0.062  # x of each eye centre
    eye_radius: float = 0.022
    iris_radius: float = 0.011  # iris radius on the eyeball front (xy distance from the eye axis)
    pupil_radius: float = 0.0045
    eye_openness: float = 0.8  # expression: 1 = wide open, 0.2 = nearly closed (upper lid height)
    brow_raise: float = 0.0  # expression in [-1, 1]: eyebrow height offset
    brow_thickness: float = 0.007
    brow_tilt: float = 0.0  # outer end up (>0) or down (<0), world units per unit x
    nose_length: float = 0.085  # bridge length from eye level to the tip
    nose_width: float = 0.02
    nose_protrusion: float = 0.05  # tip distance in front of the face surface
    mouth_y: float = -0.115  # mouth centre height relative to the skull centre
    mouth_width: float = 0.045  # half-width of the lips
    lip_thickness: float = 0.009
    smile: float = 0.0  # expression in [-1, 1]: mouth corners up (>0) or down (<0)
    mouth_open: float = 0.0  # expression in [0, 1]
    hairline: float = 0.12  # front hairline height relative to the skull centre
    hair_volume: float = 0.025  # hair thickness over the skull
    hair_length: float = 0.0  # 0 = short, 1 = long volume behind the head down to the neck
    hair_side: float = 0.0  # asymmetric fringe slope (0 = symmetric)
    skin_color: tuple[float, float, float] = (0.85, 0.66, 0.55)
    hair_color: tuple[float, float, float] = (0.25, 0.16, 0.1)
    iris_color: tuple[float, float, float] = (0.35, 0.22, 0.12)
    lip_color: tuple[float, float, float] = (0.7, 0.38, 0.38)

    def to_tensor(self) -> Tensor:
        """All fields flattened in declaration order (colours as 3 values): [NUM_VALUES] float32."""
        values: list[float] = []
        for f in fields(self):
            v = getattr(self, f.name)
            values.extend(v if isinstance(v, tuple) else [v])
        return torch.tensor(values, dtype=torch.float32)

    def as_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)


@dataclass
class HeadField:
    """The field at P points."""

    sigma: Tensor  # [P, 1] raw EG3D sigma in [RAW_EMPTY, RAW_FULL] (density = softplus(sigma - 1) per world unit)
    rgb: Tensor  # [P, 3] colour in [0, 1]
    parts: Tensor  # [P, len(PART_NAMES)] part weights in [0, 1], summing to 1

    @property
    def density(self) -> Tensor:
        """[P, 1] volume density per world unit, >= 0 (what MipRayMarcher2 integrates)."""
        return torch.nn.functional.softplus(self.sigma - 1)


@dataclass
class HeadRender:
    """Renders of one identity from N cameras at R x R pixels (float32)."""

    image: Tensor  # [N, 3, R, R] in [-1, 1] (black background = -1), EG3D's image convention
    alpha: Tensor  # [N, 1, R, R] accumulated opacity in [0, 1]
    depth: Tensor  # [N, 1, R, R] world units along the ray
    parts: Tensor  # [N, len(PART_NAMES), R, R] composited part weights in [0, 1] (sum = alpha)


# ----------------------------------------------------------------------------------------------------------------
# The distribution


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> tuple[float, float, float]:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


_SKIN_LIGHT, _SKIN_DARK = (0.96, 0.8, 0.7), (0.36, 0.22, 0.15)
_HAIR = ((0.06, 0.05, 0.05), (0.3, 0.18, 0.1), (0.55, 0.38, 0.2), (0.85, 0.7, 0.42), (0.6, 0.25, 0.1),
         (0.72, 0.72, 0.72))  # black, brown, light brown, blond, red, grey
_IRIS = ((0.3, 0.18, 0.08), (0.25, 0.45, 0.7), (0.3, 0.5, 0.3), (0.45, 0.5, 0.55))  # brown, blue, green, grey


def sample_head_params(generator: torch.Generator) -> HeadParams:
    """One identity from the family's distribution (every draw from ``generator``, a fixed number per call)."""
    g = generator
    skin = _mix(_SKIN_LIGHT, _SKIN_DARK, _u(g, 0, 1) ** 1.3)
    skin = tuple(min(1.0, max(0.0, c * _u(g, 0.95, 1.05))) for c in skin)  # slight hue jitter per channel
    hi = int(torch.randint(len(_HAIR), (), generator=g))
    f_hair = _u(g, 0.8, 1.2)  # one brightness factor: per-channel factors would tint grey hair
    hair = tuple(min(1.0, c * f_hair) for c in _HAIR[hi])
    ii = int(torch.randint(len(_IRIS), (), generator=g))
    f_iris = _u(g, 0.85, 1.15)
    iris = tuple(min(1.0, c * f_iris) for c in _IRIS[ii])
    redness = _u(g, 0.0, 1.0)
    lip = tuple(min(1.0, c * f) for c, f in zip(skin, (0.85 + 0.1 * redness, 0.55 - 0.1 * redness, 0.58)))
    return HeadParams(
        head_width=_u(g, 0.16, 0.19),
        head_height=_u(g, 0.21, 0.24),
        head_depth=_u(g, 0.205, 0.235),
        head_y=_u(g, -0.045, -0.01),
        jaw_width=_u(g, 0.68, 0.9),
        chin_length=_u(g, 0.88, 1.02),
        neck_radius=_u(g, 0.08, 0.105),
        ear_size=_u(g, 0.042, 0.058),
        ear_y=_u(g, -0.02, 0.01),
        eye_y=_u(g, 0.02, 0.05),
        eye_separation=_u(g, 0.055, 0.07),
        eye_radius=_u(g, 0.019, 0.025),
        iris_radius=_u(g, 0.009, 0.0125),
        pupil_radius=_u(g, 0.0035, 0.0055),
        eye_openness=_u(g, 0.35, 1.0),
        brow_raise=_u(g, -1.0, 1.0),
        brow_thickness=_u(g, 0.004, 0.01),
        brow_tilt=_u(g, -0.15, 0.2),
        nose_length=_u(g, 0.07, 0.1),
        nose_width=_u(g, 0.016, 0.026),
        nose_protrusion=_u(g, 0.035, 0.065),
        mouth_y=_u(g, -0.13, -0.1),
        mouth_width=_u(g, 0.036, 0.055),
        lip_thickness=_u(g, 0.006, 0.013),
        smile=_u(g, -0.6, 1.0),
        mouth_open=max(0.0, _u(g, -0.6, 1.0)),
        hairline=_u(g, 0.09, 0.16),
        hair_volume=_u(g, 0.01, 0.045),
        hair_length=max(0.0, _u(g, -0.5, 1.0)),
        hair_side=_u(g, -0.3, 0.3),
        skin_color=skin,  # type: ignore[arg-type]
        hair_color=hair,  # type: ignore[arg-type]
        iris_color=iris,  # type: ignore[arg-type]
        lip_color=lip,  # type: ignore[arg-type]
    )


def sample_identities(n: int, seed: int) -> list[HeadParams]:
    """``n`` identities from ``torch.Generator().manual_seed(seed)``; identity k does not depend on ``n``."""
    if n < 0:
        raise ValueError(f"sample_identities: n must be >= 0, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    return [sample_head_params(g) for _ in range(n)]


def mirror_symmetric(params: HeadParams) -> HeadParams:
    """The identity with its only asymmetric parameter (``hair_side``) zeroed: its field is even in x."""
    return replace(params, hair_side=0.0)


# ----------------------------------------------------------------------------------------------------------------
# Signed-distance primitives (approximate SDFs; exact enough for a density step of a few mm)


def _ellipsoid(q: Tensor, r: Tensor) -> Tensor:
    """Approximate SDF of an axis-aligned ellipsoid. q [P, 3] (relative to the centre), r [3] or [P, 3] -> [P]."""
    k0 = (q / r).norm(dim=-1)
    k1 = (q / (r * r)).norm(dim=-1).clamp_min(1e-9)
    return k0 * (k0 - 1) / k1


def _ellipsoid_normal(q: Tensor, r: Tensor) -> Tensor:
    return torch.nn.functional.normalize(q / (r * r), dim=-1, eps=1e-9)


def _smin(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum (union) with blend radius k."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0, 1)
    return b + (a - b) * h - k * h * (1 - h)


def _smax(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Smooth maximum (intersection / subtraction with -b)."""
    return -_smin(-a, -b, k)


def _vec(x: float, y: float, z: float, like: Tensor) -> Tensor:
    return torch.tensor([x, y, z], dtype=like.dtype, device=like.device)


def _rgb(c: tuple[float, float, float], like: Tensor) -> Tensor:
    return torch.tensor(c, dtype=like.dtype, device=like.device)


def _surface_z(p: HeadParams, x: float, y: float) -> float:
    """z of the skull's front surface at (x, y) (the oval and chin included), world units."""
    dy = y - p.head_y
    ry = p.head_height * (p.chin_length if dy < 0 else 1.0)
    sx = 1 - (1 - p.jaw_width) * min(max(-dy / ry, 0.0), 1.0) ** 2 if dy < 0 else 1.0
    t = 1 - (x / (p.head_width * sx)) ** 2 - (dy / ry) ** 2
    return -0.02 + p.head_depth * math.sqrt(max(t, 0.0))


def head_bounds(p: HeadParams, margin: float = 0.05) -> tuple[tuple[float, float], ...]:
    """Axis-aligned box ((x0, x1), (y0, y1), (z0, z1)) holding every surface of the head plus ``margin``, world units.

    Beyond ``margin`` from every surface the density is at its empty value to float precision, so
    :func:`head_field` evaluates the primitives only inside this box.
    """
    hv = p.hair_volume
    half_x = max(p.head_width + hv, p.head_width * 0.96 + 0.016, p.neck_radius) + margin
    top = p.head_y + p.head_height + 1.6 * hv + margin
    front = max(-0.02 + p.head_depth + hv, _surface_z(p, 0.0, p.head_y + p.eye_y - p.nose_length)
                + p.nose_protrusion) + margin
    back = -0.02 - p.head_depth - 1.3 * hv - margin
    return (-half_x, half_x), (-0.62 - margin, top), (back, front)


def head_field(points: Tensor, p: HeadParams) -> HeadField:
    """The head's raw sigma, shaded colour and part weights at world points.

    Points outside :func:`head_bounds` get the empty value (sigma ``RAW_EMPTY``, black, all part weights 0)
    without evaluating the primitives (most samples of a render are there).

    Args:
        points: [P, 3] float world coordinates (any P >= 0).
        p: the identity.
    Returns:
        :class:`HeadField` with sigma [P, 1], rgb [P, 3] in [0, 1], parts [P, 7] (see :data:`PART_NAMES`).
    """
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"head_field: points must be [P, 3], got {list(points.shape)}")
    (x0, x1), (y0, y1), (z0, z1) = head_bounds(p)
    inside = ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)
              & (points[:, 2] > z0) & (points[:, 2] < z1))
    sigma = torch.full((points.shape[0], 1), RAW_EMPTY, dtype=points.dtype, device=points.device)
    rgb = points.new_zeros(points.shape[0], 3)
    parts = points.new_zeros(points.shape[0], len(PART_NAMES))
    idx = inside.nonzero().squeeze(-1)
    if idx.numel():
        f = _head_field_dense(points.index_select(0, idx), p)
        sigma[idx], rgb[idx], parts[idx] = f.sigma, f.rgb, f.parts
    return HeadField(sigma=sigma, rgb=rgb, parts=parts)


def _head_field_dense(points: Tensor, p: HeadParams) -> HeadField:
    """:func:`head_field` evaluated at every point (no bounding box)."""
    x, y, z = points.unbind(-1)
    ax = x.abs()
    pa = torch.stack((ax, y, z), dim=-1)  # mirrored points for the paired features (eyes, ears, brows)
    cz = -0.02
    centre = _vec(0.0, p.head_y, cz, points)

    # skull with a face oval (x narrows toward the chin) and a chin length on the lower half
    q = points - centre
    lower = q[:, 1] < 0
    ry = torch.where(lower, torch.full_like(y, p.head_height * p.chin_length), torch.full_like(y, p.head_height))
    t = (-q[:, 1] / ry).clamp(0, 1)
    sx = 1 - (1 - p.jaw_width) * t * t * lower
    r_skull = torch.stack((p.head_width * sx, ry, torch.full_like(y, p.head_depth)), dim=-1)
    d_skull = _ellipsoid(q, r_skull)
    n_skull = _ellipsoid_normal(q, r_skull)

    # neck: vertical capped cylinder under the skull
    nz = cz - 0.03
    radial = torch.stack((x, z - nz), -1)
    d_neck = torch.maximum(radial.norm(dim=-1) - p.neck_radius,
                           torch.maximum(y - (p.head_y - 0.08), -0.62 - y))
    n_neck = torch.nn.functional.normalize(torch.stack((x, torch.zeros_like(x), z - nz), -1), dim=-1, eps=1e-9)

    # ears (mirrored): flattened ellipsoids on the skull's sides
    r_ear = _vec(0.016, p.ear_size, 0.03, points)
    q_ear = pa - _vec(p.head_width * 0.96, p.head_y + p.ear_y, cz - 0.015, points)
    d_ear = _ellipsoid(q_ear, r_ear)
    n_ear = _ellipsoid_normal(q_ear, r_ear) * torch.stack((torch.sign(x) + (x == 0), torch.ones_like(x),
                                                           torch.ones_like(x)), -1)

    # nose: sheared bridge ellipsoid, tip sphere, two wings
    eye_y = p.head_y + p.eye_y
    tip_y = eye_y - p.nose_length
    mid_y = eye_y - 0.5 * p.nose_length
    z_mid = _surface_z(p, 0.0, mid_y)
    z_tip = _surface_z(p, 0.0, tip_y) + p.nose_protrusion
    q_br = points - _vec(0.0, mid_y, z_mid, points)
    slope = (z_tip - 0.6 * p.nose_width - z_mid) / (0.5 * p.nose_length)
    q_br = q_br + torch.stack((torch.zeros_like(x), torch.zeros_like(x), slope * q_br[:, 1].clamp(max=0.5 * p.nose_length)), -1)
    r_br = _vec(p.nose_width * 0.7, 0.5 * p.nose_length, 0.012, points)
    d_bridge = _ellipsoid(q_br, r_br)
    q_tip = points - _vec(0.0, tip_y + 0.006, z_tip - p.nose_width * 0.9, points)
    d_tip = q_tip.norm(dim=-1) - p.nose_width * 0.9
    q_wing = pa - _vec(p.nose_width * 0.95, tip_y + 0.004, z_tip - 0.8 * p.nose_protrusion - 0.004, points)
    d_wing = q_wing.norm(dim=-1) - p.nose_width * 0.62
    d_nose = _smin(_smin(d_bridge, d_tip, 0.012), d_wing, 0.008)
    n_nose = torch.nn.functional.normalize(
        torch.stack((x / (p.nose_width * 2), (y - tip_y) * 0.3, torch.ones_like(x)), -1), dim=-1)

    # eyes (mirrored): socket carved into the skull, eyeball, lids, brow
    z_eye_surf = _surface_z(p, p.eye_separation, eye_y)
    e_centre = _vec(p.eye_separation, eye_y, z_eye_surf - 0.35 * p.eye_radius, points)
    q_eye = pa - e_centre
    d_eyeball = q_eye.norm(dim=-1) - p.eye_radius
    d_socket = (pa - e_centre - _vec(0.0, 0.0, 0.4 * p.eye_radius, points)).norm(dim=-1) - 1.3 * p.eye_radius
    lid_r = p.eye_radius * 1.18
    lid_shell = (q_eye.norm(dim=-1) - lid_r).abs() - 0.003
    upper_cut = e_centre[1] + p.eye_radius * (1.7 * p.eye_openness - 0.75)
    d_upper = torch.maximum(torch.maximum(lid_shell, upper_cut - pa[:, 1]), -q_eye[:, 2] - 0.3 * p.eye_radius)
    d_lower = torch.maximum(torch.maximum(lid_shell, pa[:, 1] - (e_centre[1] - 0.72 * p.eye_radius)),
                            -q_eye[:, 2] - 0.3 * p.eye_radius)
    d_lids = torch.minimum(d_upper, d_lower)
    brow_y = eye_y + 1.9 * p.eye_radius + 0.012 * p.brow_raise
    brow_x = p.eye_separation * 1.05
    z_brow = _surface_z(p, brow_x, brow_y)
    q_brow = pa - _vec(brow_x, brow_y, z_brow - 0.004, points)
    q_brow = q_brow - torch.stack((torch.zeros_like(x), p.brow_tilt * q_brow[:, 0], torch.zeros_like(x)), -1)
    r_brow = _vec(1.5 * p.eye_radius, p.brow_thickness, 0.012, points)
    d_brow = _ellipsoid(q_brow, r_brow)

    # mouth: lips bent by the smile, an opening carved into the face, a dark cavity behind it
    m_y = p.head_y + p.mouth_y
    z_m = _surface_z(p, 0.0, m_y)
    gap = 0.022 * p.mouth_open
    q_m = points - _vec(0.0, m_y, z_m - 0.004, points)
    bend = p.smile * 0.016 * (q_m[:, 0] / p.mouth_width).clamp(-1.3, 1.3) ** 2
    q_m = q_m - torch.stack((torch.zeros_like(x), bend, torch.zeros_like(x)), -1)
    up_c = _vec(0.0, p.lip_thickness * 0.9 + gap / 2, 0.0, points)
    lo_c = _vec(0.0, -(p.lip_thickness + gap / 2), 0.0, points)
    d_lip_up = _ellipsoid(q_m - up_c, _vec(p.mouth_width, p.lip_thickness * 0.9, 0.018, points))
    d_lip_lo = _ellipsoid(q_m - lo_c, _vec(p.mouth_width * 0.9, p.lip_thickness, 0.02, points))
    d_lips = _smin(d_lip_up, d_lip_lo, 0.003)
    hole_r = _vec(p.mouth_width * 0.85, gap / 2 + 1e-4, 0.05, points)
    d_hole = _ellipsoid(q_m, hole_r)
    d_cavity = _ellipsoid(q_m - _vec(0.0, 0.0, -0.03, points), _vec(p.mouth_width * 0.9, gap / 2 + 0.004, 0.02,
                                                                     points))

    # hair: an inflated skull above a hairline that slopes from the forehead down to the nape, plus long hair
    hv = p.hair_volume
    q_h = points - centre - _vec(0.0, 0.3 * hv, -0.3 * hv, points)
    r_h = _vec(p.head_width + hv, p.head_height + 1.3 * hv, p.head_depth + hv, points)
    z_front, z_back = cz + p.head_depth, cz - p.head_depth
    y_front, y_back = p.head_y + p.hairline, p.head_y - 0.16
    cut_y = y_back + (y_front - y_back) * ((z - z_back) / (z_front - z_back)).clamp(0, 1.2) + p.hair_side * x
    d_cap = torch.maximum(_ellipsoid(q_h, r_h), (cut_y - y) * 0.7)
    n_hair = _ellipsoid_normal(q_h, r_h)
    hl = p.hair_length
    q_long = points - _vec(0.0, p.head_y - 0.05 - 0.14 * hl, cz - 0.07, points)
    r_long = _vec((p.head_width + hv) * (0.5 + 0.5 * hl), 0.05 + 0.2 * hl, p.head_depth * (0.4 + 0.45 * hl),
                  points)
    d_long = torch.maximum(_ellipsoid(q_long, r_long), z - (cz + 0.02))
    d_hair_vol = _smin(d_cap, d_long, 0.02)

    # assemble the skin surface, then union the other parts
    d_skin = _smin(_smin(d_skull, d_neck, 0.05), d_ear, 0.012)
    d_skin = _smin(d_skin, d_nose, 0.014)
    d_skin = _smax(d_skin, -d_socket, 0.006)
    d_skin = _smax(d_skin, -d_hole, 0.004)
    d_skin_all = torch.minimum(d_skin, d_lids)
    d_total = torch.minimum(torch.minimum(torch.minimum(d_skin_all, d_eyeball), torch.minimum(d_lips, d_cavity)),
                            torch.minimum(d_hair_vol, d_brow))
    sigma = RAW_EMPTY + (RAW_FULL - RAW_EMPTY) * torch.sigmoid(-d_total / SURFACE_SOFTNESS)

    # colours: each part's own colour, blended by how close each part's surface is
    skin_rgb = _rgb(p.skin_color, points).expand_as(points)
    hair_tex = 0.9 + 0.1 * torch.cos(110.0 * x) * torch.cos(40.0 * z + 25.0 * y)  # strands, even in x
    hair_rgb = _rgb(p.hair_color, points) * hair_tex[:, None]
    rho = q_eye[:, :2].norm(dim=-1) * (q_eye[:, 2] > 0)  + (q_eye[:, 2] <= 0) * p.eye_radius
    w_pupil = torch.sigmoid((p.pupil_radius - rho) / 6e-4)
    w_iris = torch.sigmoid((p.iris_radius - rho) / 8e-4) - w_pupil
    w_sclera = 1 - w_iris - w_pupil
    dists = torch.stack((d_skin_all, torch.minimum(d_hair_vol, d_brow), d_eyeball, d_lips, d_cavity), -1)
    w = torch.softmax(-dists.abs() / COLOUR_SOFTNESS, dim=-1)  # [P, 5]: skin, hair, eyeball, lips, cavity
    parts = torch.stack((w[:, 0], w[:, 1], w[:, 2] * w_sclera, w[:, 2] * w_iris, w[:, 2] * w_pupil, w[:, 3],
                         w[:, 4]), -1)
    colours = torch.stack((skin_rgb, hair_rgb, _rgb((0.93, 0.92, 0.9), points).expand_as(points),
                           _rgb(p.iris_color, points).expand_as(points), _rgb((0.03, 0.03, 0.04), points).expand_as(points),
                           _rgb(p.lip_color, points).expand_as(points), _rgb((0.25, 0.06, 0.06), points).expand_as(points)),
                          1)  # [P, 7, 3]
    albedo = (parts[..., None] * colours).sum(1)

    # baked shading from the blended normals of the skin primitives (view-independent, as EG3D's decoder)
    ws = torch.softmax(-torch.stack((d_skull, d_neck, d_ear, d_nose), -1).abs() / 0.01, dim=-1)
    n_skin = (ws[:, 0:1] * n_skull + ws[:, 1:2] * n_neck + ws[:, 2:3] * n_ear + ws[:, 3:4] * n_nose)
    normal = torch.nn.functional.normalize(w[:, 0:1] * n_skin + w[:, 1:2] * n_hair + w[:, 2:3] * _ellipsoid_normal(
        q_eye, _vec(1.0, 1.0, 1.0, points)) + (w[:, 3:4] + w[:, 4:5]) * _vec(0.0, 0.0, 1.0, points), dim=-1, eps=1e-9)
    light = torch.nn.functional.normalize(_vec(*_LIGHT, points), dim=0)
    shade = 0.5 + 0.5 * (normal * light).sum(-1).clamp(min=0)
    rgb = (albedo * shade[:, None]).clamp(0, 1)
    return HeadField(sigma=sigma[:, None], rgb=rgb, parts=parts)


# ----------------------------------------------------------------------------------------------------------------
# Cameras and rendering


def frontal_camera(radius: float = 2.7, lookat: tuple[float, float, float] = (0.0, 0.0, 0.2)) -> Tensor:
    """The canonical frontal EG3D label (yaw = pitch = 0, FFHQ focal): [1, 25] float32."""
    return frontal_label(radius=radius, lookat=lookat)


def head_cameras(n: int, generator: torch.Generator, yaw_range: float = math.radians(25),
                 pitch_range: float = math.radians(12), radius: float = 2.7,
                 lookat: tuple[float, float, float] = (0.0, 0.0, 0.2)) -> Tensor:
    """``n`` EG3D labels with yaw ~ U[-yaw_range, yaw_range], pitch ~ U[-pitch_range, pitch_range] (radians).

    FFHQ-like pose range (EG3D's LookAt sampler, radius 2.7, pivot (0, 0, 0.2), focal 4.2647). Returns [n, 25].
    """
    if n < 1:
        raise ValueError(f"head_cameras: n must be >= 1, got {n}")
    yaw = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * yaw_range
    pitch = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * pitch_range
    return make_label(lookat_cam2world(yaw, pitch, radius=radius, lookat=lookat), intrinsics_matrix(FOCAL_FFHQ))


@torch.no_grad()
def render_head(params: HeadParams, cameras: Tensor, resolution: int = 128, *, n_coarse: int = 24,
                n_fine: int = 24, ray_start: float = 2.25, ray_end: float = 3.3,
                generator: torch.Generator | None = None, chunk_rays: int = 4096) -> HeadRender:
    """Render one identity with EG3D's two-pass volume renderer (stratified + importance samples, MipRayMarcher2).

    Args:
        params: the identity.
        cameras: [N, 25] EG3D labels.
        resolution: R, one ray per pixel centre.
        n_coarse, n_fine: samples per ray of the two passes (EG3D's ``depth_resolution(_importance)``).
        ray_start, ray_end: depth bounds, world units (EG3D's FFHQ values by default).
        generator: random source for jittered samples; None = deterministic samples (interval midpoints and
            evenly spaced inverse-CDF draws), so a render is a pure function of its inputs.
        chunk_rays: rays evaluated at once (memory bound only; results do not depend on it).
    Returns:
        :class:`HeadRender` (image in [-1, 1], black background).
    """
    if cameras.dim() != 2 or cameras.shape[1] != 25:
        raise ValueError(f"render_head: cameras must be [N, 25], got {list(cameras.shape)}")
    if resolution < 1 or n_coarse < 3 or n_fine < 0:
        raise ValueError(f"render_head: need resolution >= 1, n_coarse >= 3, n_fine >= 0; got {resolution}, "
                         f"{n_coarse}, {n_fine}")
    cam2world, intrinsics = split_label(cameras.float())
    origins, dirs = sample_rays(cam2world, intrinsics, int(resolution))
    n, m, _ = origins.shape
    k = len(PART_NAMES)
    out = torch.empty(n, m, 3 + k)
    acc_out, depth_out = torch.empty(n, m, 1), torch.empty(n, m, 1)
    for i in range(n):
        for s in range(0, m, chunk_rays):
            o, d = origins[i:i + 1, s:s + chunk_rays], dirs[i:i + 1, s:s + chunk_rays]
            mc = o.shape[1]
            u0 = None if generator is not None else torch.full((1, mc, n_coarse, 1), 0.5)
            depths = sample_stratified(o, ray_start, ray_end, n_coarse, generator, u=u0)
            feats, sig = _eval(params, o, d, depths)
            if n_fine > 0:
                u1 = None
                if generator is None:
                    u1 = ((torch.arange(n_fine) + 0.5) / n_fine).expand(mc, n_fine).contiguous()
                fine = sample_importance(depths, march_weights(sig, depths), n_fine, generator, u=u1)
                f_feats, f_sig = _eval(params, o, d, fine)
                depths, idx = torch.sort(torch.cat((depths, fine), -2), dim=-2)
                feats = torch.gather(torch.cat((feats, f_feats), -2), -2, idx.expand(-1, -1, -1, 3 + k))
                sig = torch.gather(torch.cat((sig, f_sig), -2), -2, idx)
            rgb, depth, weights = ray_march(feats, sig, depths)
            out[i, s:s + mc] = rgb[0]
            acc_out[i, s:s + mc] = weights.sum(2)[0]
            depth_out[i, s:s + mc] = depth[0]
    r = int(resolution)

    def img(t: Tensor) -> Tensor:
        return t.permute(0, 2, 1).reshape(n, t.shape[-1], r, r).contiguous()

    marched = img(out)
    return HeadRender(image=marched[:, :3], alpha=img(acc_out), depth=img(depth_out),
                      parts=((marched[:, 3:] + 1) / 2).clamp(0, 1))


def _eval(params: HeadParams, o: Tensor, d: Tensor, depths: Tensor) -> tuple[Tensor, Tensor]:
    """Field at the samples of rays o, d [1, M, 3] at depths [1, M, S, 1] -> features [1,M,S,3+K], sigma [1,M,S,1]."""
    _, mc, s, _ = depths.shape
    pts = (o.unsqueeze(-2) + depths * d.unsqueeze(-2)).reshape(-1, 3)
    f = head_field(pts, params)
    feats = torch.cat((f.rgb, f.parts), -1).reshape(1, mc, s, -1)
    return feats, f.sigma.reshape(1, mc, s, 1)
