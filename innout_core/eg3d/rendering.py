"""EG3D volume rendering in plain PyTorch: tri-plane sampling, ray sampler, stratified and importance sampling,
the MipRayMarcher2 ray marcher and the two-pass ImportanceRenderer (docs/eg3d.md §6, §8, §9, §14).

Everything here reproduces the official NVlabs/eg3d renderer (`renderer.py`, `ray_sampler.py`, `ray_marcher.py`)
on the reference data in `tests/data/eg3d-reference/` (cases c–f, and the intermediates of case h). Conventions:
N = batch, M = rays per item, S = samples per ray, P = points per item, C = feature channels; all float tensors
are float32 unless the caller passes another float dtype; depths are world units along unit-length rays.

Randomness: exactly the official draws, in the official order and shapes (docs/eg3d.md §14), each from the caller's
``torch.Generator`` (``None`` uses torch's global generator, as the official code does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_CHUNK",
    "DecodeFn",
    "RaySamples",
    "RenderOutput",
    "RenderingConfig",
    "project_onto_planes",
    "ray_march",
    "march_weights",
    "render_planes",
    "sample_from_planes",
    "sample_importance",
    "sample_pdf",
    "sample_rays",
    "sample_stratified",
]

DecodeFn = Callable[[Tensor], tuple[Tensor, Tensor]]
"""sampled features [N, 3, P, C] -> (rgb [N, P, C'], raw sigma [N, P, 1])."""

DEFAULT_CHUNK = 1 << 18
"""Points per item decoded at once by `render_planes` (results do not depend on it). Measured on the 2-core CPU
at ffhq512-128 (786K points per pass, 2 threads, same process, interleaved): with the other core idle (load ~2)
64K-point chunks take 1.6 CPU s per render vs 2.55 for 256K (intermediates stay in cache), but with it busy
(load 3.5-4) 64K takes 4.9 vs 3.2 for 256K and 3.9 for 128K: every op is a 2-thread parallel region that waits
out a scheduler slice when one thread is descheduled, so fewer, larger ops win. 256K is kept for the shared
machine; without autograd the chunks are written into preallocated outputs (no list + concatenated copy)."""

# Which two world axes give (u, v) on plane 0, 1, 2: (x, y), (x, z), (z, x) — the official plane axes (docs/eg3d.md §6).
_PLANE_UV_AXES = (0, 1, 0, 2, 2, 0)


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderingConfig:
    """Typed view of the official ``rendering_kwargs`` dict (docs/eg3d.md §1.2).

    ``from_kwargs`` keeps unknown (training-only) keys verbatim in ``extra`` and remembers the source dict, so
    ``to_kwargs`` gives back exactly the dict it was built from (same keys, order and value types) unless a field
    was changed with ``dataclasses.replace``.
    """

    ray_start: float = 2.25  # near bound of the stratified samples, world units
    ray_end: float = 3.3  # far bound of the stratified samples, world units
    depth_resolution: int = 48  # stratified (coarse) samples per ray
    depth_resolution_importance: int = 48  # importance (fine) samples per ray; 0 disables the fine pass
    box_warp: float = 1.0  # side length of the tri-plane cube, world units (coords are scaled by 2/box_warp)
    clamp_mode: str = "softplus"  # density activation; MipRayMarcher2 only supports 'softplus'
    disparity_space_sampling: bool = False  # stratified samples uniform in 1/depth instead of depth
    white_back: bool = False  # composite onto a white background (rgb += 1 - acc)
    density_noise: float = 0.0  # std of Gaussian noise added to raw sigma (training only; draws extra randn)
    avg_camera_radius: float = 2.7  # camera distance from the world origin used by scripts, world units
    avg_camera_pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)  # LookAt point used by scripts, world units
    image_resolution: int = 512  # final (super-resolved) image side, pixels
    superresolution_noise_mode: str = "none"  # noise mode the generator forces on the SR
    sr_antialias: bool = True  # antialias of the SR input resize (only when neural res != 128)
    c_gen_conditioning_zero: bool = False  # zero the mapping's camera label
    c_scale: float = 1.0  # factor on the mapping's camera label
    extra: dict = field(default_factory=dict)  # keys this view does not model (gpc_reg_prob, density_reg, ...)
    _source: tuple = field(default=(), repr=False, compare=False)  # (key, value) pairs of the dict it came from

    def __post_init__(self) -> None:
        if isinstance(self.ray_start, str) or isinstance(self.ray_end, str):
            raise ValueError("rendering: ray_start/ray_end 'auto' is not supported (only fixed bounds, as for FFHQ)")
        if self.clamp_mode != "softplus":
            raise ValueError(f"rendering: clamp_mode {self.clamp_mode!r} unsupported; MipRayMarcher2 needs 'softplus'")
        if self.depth_resolution < 2:
            raise ValueError(f"rendering: depth_resolution must be >= 2, got {self.depth_resolution}")
        if self.depth_resolution_importance < 0:
            raise ValueError(f"rendering: depth_resolution_importance must be >= 0, got "
                             f"{self.depth_resolution_importance}")
        if not self.box_warp > 0:
            raise ValueError(f"rendering: box_warp must be > 0, got {self.box_warp}")

    def with_sample_mult(self, mult: int) -> RenderingConfig:
        """This config with ``mult`` times the stratified and importance samples per ray (``gen_3d.py
        --sample_mult``); a new object, ``self`` is unchanged."""
        if mult < 1:
            raise ValueError(f"rendering: sample_mult must be >= 1, got {mult}")
        if mult == 1:
            return self
        return replace(self, depth_resolution=self.depth_resolution * mult,
                       depth_resolution_importance=self.depth_resolution_importance * mult)

    @classmethod
    def _field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in ("extra", "_source")]

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> RenderingConfig:
        """Build from an official ``rendering_kwargs`` dict; absent keys take the official defaults."""
        if not isinstance(kwargs, dict):
            raise ValueError(f"rendering_kwargs must be a dict, got {type(kwargs).__name__}")
        names = set(cls._field_names())
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in names:
                known[key] = tuple(float(v) for v in value) if key == "avg_camera_pivot" else value
            else:
                extra[key] = value
        return cls(**known, extra=extra, _source=tuple(kwargs.items()))

    def to_kwargs(self) -> dict:
        """The official dict: inverse of `from_kwargs` (source keys, order and value types kept when unchanged)."""
        source = dict(self._source)
        out: dict[str, Any] = {}
        defaults = RenderingConfig()
        values = {name: getattr(self, name) for name in self._field_names()}
        for key, src_value in source.items():
            if key in values:
                out[key] = src_value if _same_value(src_value, values[key]) else _official_value(key, values[key])
            elif key in self.extra:
                out[key] = self.extra[key]
        for key, value in values.items():
            if key not in out and (not source or not _same_value(value, getattr(defaults, key))):
                out[key] = _official_value(key, value)
        for key, value in self.extra.items():
            if key not in out:
                out[key] = value
        return out


def _same_value(a: Any, b: Any) -> bool:
    """Equal as config values: [0, 0, 0.2] == (0.0, 0.0, 0.2) and 1 == 1.0, but True != 1."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _official_value(key: str, value: Any) -> Any:
    return list(value) if key == "avg_camera_pivot" else value


# ----------------------------------------------------------------------------------------------------------------
# Tri-plane sampling
# ----------------------------------------------------------------------------------------------------------------


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def project_onto_planes(points: Tensor, box_warp: float) -> Tensor:
    """Grid coordinates of points on the three planes (the official plane axes, docs/eg3d.md §6).

    Args:
        points: [N, P, 3] float, world units.
        box_warp: side length of the tri-plane cube; the cube [-box_warp/2, box_warp/2]^3 maps to [-1, 1].
    Returns:
        [N, 3, P, 2] float (u, v) per plane: plane 0 (x, y), plane 1 (x, z), plane 2 (z, x), scaled by 2/box_warp.
        u indexes the plane's width (columns), v its height (rows).
    """
    _check(points.dim() == 3 and points.shape[-1] == 3, f"project_onto_planes: points must be [N,P,3], "
                                                          f"got {list(points.shape)}")
    n, p, _ = points.shape
    scaled = ((2 / box_warp) * points).transpose(1, 2)  # [N, 3, P]: a row per axis, so the pick copies rows
    idx = torch.tensor(_PLANE_UV_AXES, device=points.device)
    return scaled.index_select(1, idx).view(n, 3, 2, p).transpose(-1, -2)


def sample_from_planes(planes: Tensor, points: Tensor, box_warp: float) -> Tensor:
    """Bilinear tri-plane features at points (grid_sample, zeros padding, align_corners=False; docs/eg3d.md §6).

    Args:
        planes: [N, 3, C, H, W] float.
        points: [N, P, 3] float, world units.
        box_warp: tri-plane cube side length.
    Returns:
        [N, 3, P, C] features (a transposed view of grid_sample's [N*3, C, 1, P] output; call ``.contiguous()``
        if you need a contiguous tensor). Points outside the cube on a plane get 0 there.
    """
    _check(planes.dim() == 5 and planes.shape[1] == 3, f"sample_from_planes: planes must be [N,3,C,H,W], "
                                                         f"got {list(planes.shape)}")
    _check(points.dim() == 3 and points.shape[-1] == 3 and points.shape[0] == planes.shape[0],
           f"sample_from_planes: points must be [N,P,3] with N={planes.shape[0]}, got {list(points.shape)}")
    n, _, c, h, w = planes.shape
    return _sample_planes4(planes.reshape(n * 3, c, h, w), points, box_warp)


def _sample_planes4(planes4: Tensor, points: Tensor, box_warp: float) -> Tensor:
    """`sample_from_planes` on planes already viewed as [N*3, C, H, W] (any memory format) -> [N, 3, P, C]."""
    n3, c = planes4.shape[:2]
    n, p = points.shape[:2]
    grid = project_onto_planes(points, box_warp).reshape(n3, 1, p, 2).to(planes4.dtype)
    out = F.grid_sample(planes4, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # [N*3,C,1,P]
    return out.view(n, 3, c, p).transpose(-1, -2)


# ----------------------------------------------------------------------------------------------------------------
# Rays and depth samples
# ----------------------------------------------------------------------------------------------------------------


def sample_rays(cam2world: Tensor, intrinsics: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """One ray per pixel centre (official RaySampler, docs/eg3d.md §8).

    Args:
        cam2world: [N, 4, 4] float OpenCV camera-to-world.
        intrinsics: [N, 3, 3] float normalised K (fx, skew, cx; 0, fy, cy; 0, 0, 1), image side = 1.
        resolution: R, rays per image side.
    Returns:
        origins [N, R*R, 3] (the camera centre, repeated) and unit directions [N, R*R, 3]; ray m is pixel
        (row m // R, col m % R), row 0 = top of the image.
    """
    _check(cam2world.dim() == 3 and cam2world.shape[1:] == (4, 4),
           f"sample_rays: cam2world must be [N,4,4], got {list(cam2world.shape)}")
    _check(intrinsics.dim() == 3 and intrinsics.shape[1:] == (3, 3) and intrinsics.shape[0] == cam2world.shape[0],
           f"sample_rays: intrinsics must be [N,3,3] with N={cam2world.shape[0]}, got {list(intrinsics.shape)}")
    _check(isinstance(resolution, int) and resolution > 0, f"sample_rays: resolution must be a positive int, "
                                                           f"got {resolution!r}")
    n = cam2world.shape[0]
    r = resolution
    dtype, device = cam2world.dtype, cam2world.device
    origin = cam2world[:, :3, 3]
    fx, fy = intrinsics[:, 0, 0], intrinsics[:, 1, 1]
    cx, cy = intrinsics[:, 0, 2], intrinsics[:, 1, 2]
    sk = intrinsics[:, 0, 1]

    # Official: meshgrid(arange(R), arange(R), indexing='ij') * (1/R) + 0.5/R, flipped so x runs along columns.
    ar = torch.arange(r, dtype=torch.float32, device=device) * (1.0 / r) + (0.5 / r)
    ar = ar.to(dtype)
    y_cam = ar.view(1, r, 1).expand(n, r, r).reshape(n, -1)  # row
    x_cam = ar.view(1, 1, r).expand(n, r, r).reshape(n, -1)  # col
    z_cam = torch.ones_like(x_cam)

    x_lift = (x_cam - cx.unsqueeze(-1) + cy.unsqueeze(-1) * sk.unsqueeze(-1) / fy.unsqueeze(-1)
              - sk.unsqueeze(-1) * y_cam / fy.unsqueeze(-1)) / fx.unsqueeze(-1) * z_cam
    y_lift = (y_cam - cy.unsqueeze(-1)) / fy.unsqueeze(-1) * z_cam
    cam_rel = torch.stack((x_lift, y_lift, z_cam, torch.ones_like(z_cam)), dim=-1)  # [N, R*R, 4]
    world = torch.bmm(cam2world, cam_rel.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
    dirs = world - origin.unsqueeze(1)
    dirs = F.normalize(dirs, dim=2)
    origins = origin.unsqueeze(1).repeat(1, dirs.shape[1], 1)
    return origins, dirs


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)


def sample_stratified(origins: Tensor, ray_start: float, ray_end: float, n_samples: int,
                      generator: torch.Generator | None, *, disparity_space_sampling: bool = False,
                      u: Tensor | None = None) -> Tensor:
    """Stratified depths (official `sample_stratified`): ``linspace(start, end, S) + U[0,1) * (end-start)/(S-1)``.

    Draws one ``rand([N, M, S, 1])`` from ``generator`` (the official ``rand_like``), unless ``u`` is given.

    Args:
        origins: [N, M, 3] ray origins (only the shape, dtype and device are used).
        ray_start, ray_end: depth bounds, world units.
        n_samples: S >= 2.
        generator: random source; ``None`` uses torch's global generator.
        disparity_space_sampling: sample uniformly in inverse depth instead.
        u: optional injected uniforms [N, M, S, 1] in [0, 1).
    Returns:
        depths [N, M, S, 1], ascending per ray; the last may exceed ray_end by up to one step.
    """
    _check(origins.dim() == 3 and origins.shape[-1] == 3, f"sample_stratified: origins must be [N,M,3], "
                                                          f"got {list(origins.shape)}")
    _check(n_samples >= 2, f"sample_stratified: n_samples must be >= 2, got {n_samples}")
    n, m, _ = origins.shape
    shape = (n, m, n_samples, 1)
    if u is None:
        u = _uniform(shape, origins, generator)
    _check(tuple(u.shape) == shape, f"sample_stratified: u must be {list(shape)}, got {list(u.shape)}")
    if disparity_space_sampling:
        depths = torch.linspace(0, 1, n_samples, device=origins.device, dtype=origins.dtype)
        depths = depths.reshape(1, 1, n_samples, 1).repeat(n, m, 1, 1)
        depths += u * (1 / (n_samples - 1))
        return 1.0 / (1.0 / ray_start * (1.0 - depths) + 1.0 / ray_end * depths)
    depths = torch.linspace(ray_start, ray_end, n_samples, device=origins.device, dtype=origins.dtype)
    depths = depths.reshape(1, 1, n_samples, 1).repeat(n, m, 1, 1)
    depths += u * ((ray_end - ray_start) / (n_samples - 1))
    return depths


def sample_pdf(bins: Tensor, weights: Tensor, n_importance: int, generator: torch.Generator | None,
               u: Tensor | None = None) -> Tensor:
    """Inverse-CDF samples of a piecewise-constant pdf (official `sample_pdf`, det=False; docs/eg3d.md §9.5).

    Args:
        bins: [R, B] bin positions, ascending per row (B >= K + 1).
        weights: [R, K] non-negative weights (K = number of intervals used; the official call passes B - 2).
        n_importance: samples per row.
        generator: random source for ``u = rand([R, n_importance])``; ``None`` uses torch's global generator.
        u: optional injected uniforms [R, n_importance] in [0, 1).
    Returns:
        [R, n_importance] samples (not sorted), within [bins[:, 0], bins[:, K]].
    """
    _check(bins.dim() == 2 and weights.dim() == 2 and bins.shape[0] == weights.shape[0],
           f"sample_pdf: bins [R,B] and weights [R,K] needed, got {list(bins.shape)} and {list(weights.shape)}")
    n_rays, n_w = weights.shape
    _check(bins.shape[1] >= n_w + 1, f"sample_pdf: need at least K+1={n_w + 1} bins, got {bins.shape[1]}")
    eps = 1e-5
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # [R, K+1]
    if u is None:
        u = _uniform((n_rays, n_importance), weights, generator)
    _check(tuple(u.shape) == (n_rays, n_importance),
           f"sample_pdf: u must be [{n_rays},{n_importance}], got {list(u.shape)}")
    u = u.contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(inds - 1, 0)
    above = torch.clamp_max(inds, n_w)
    cdf_b, cdf_a = torch.gather(cdf, 1, below), torch.gather(cdf, 1, above)
    bins_b, bins_a = torch.gather(bins, 1, below), torch.gather(bins, 1, above)
    denom = cdf_a - cdf_b
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_b + (u - cdf_b) / denom * (bins_a - bins_b)


def sample_importance(z_vals: Tensor, weights: Tensor, n_importance: int, generator: torch.Generator | None,
                      u: Tensor | None = None) -> Tensor:
    """Importance depths from coarse weights (official `sample_importance`, docs/eg3d.md §9.4); no autograd graph.

    Args:
        z_vals: [N, M, S, 1] coarse depths, ascending per ray.
        weights: [N, M, S-1, 1] marcher weights of the coarse samples.
        n_importance: fine samples per ray.
        generator: random source for the one ``rand([N*M, n_importance])`` draw.
        u: optional injected uniforms [N*M, n_importance]; row n*M + m belongs to ray (n, m).
    Returns:
        [N, M, n_importance, 1] depths, unsorted.
    """
    _check(z_vals.dim() == 4 and z_vals.shape[-1] == 1, f"sample_importance: z_vals must be [N,M,S,1], "
                                                        f"got {list(z_vals.shape)}")
    n, m, s, _ = z_vals.shape
    _check(tuple(weights.shape) == (n, m, s - 1, 1),
           f"sample_importance: weights must be [{n},{m},{s - 1},1], got {list(weights.shape)}")
    _check(s >= 3, f"sample_importance: need >= 3 coarse samples, got {s}")
    with torch.no_grad():
        z = z_vals.reshape(n * m, s)
        w = weights.reshape(n * m, 1, s - 1).to(z_vals.dtype)  # official: .float() (half weights under autocast)
        w = F.max_pool1d(w, 2, 1, padding=1)
        w = F.avg_pool1d(w, 2, 1).reshape(n * m, s - 1)
        w = w + 0.01
        z_mid = 0.5 * (z[:, :-1] + z[:, 1:])
        out = sample_pdf(z_mid, w[:, 1:-1], n_importance, generator, u)
    return out.detach().reshape(n, m, n_importance, 1)


# ----------------------------------------------------------------------------------------------------------------
# Ray marcher
# ----------------------------------------------------------------------------------------------------------------


def march_weights(densities: Tensor, depths: Tensor) -> Tensor:
    """MipRayMarcher2 interval weights (docs/eg3d.md §9.7): ``alpha * T`` with official float32 rounding.

    Args:
        densities: [N, M, S, 1] raw sigma.
        depths: [N, M, S, 1] ascending per ray.
    Returns:
        weights [N, M, S-1, 1] in [0, 1], per-ray sum <= 1.
    """
    _check(depths.dim() == 4 and depths.shape[-1] == 1 and depths.shape[2] >= 2,
           f"march_weights: depths must be [N,M,S,1] with S >= 2, got {list(depths.shape)}")
    _check(densities.shape == depths.shape, f"march_weights: densities must be {list(depths.shape)}, "
                                            f"got {list(densities.shape)}")
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    densities_mid = F.softplus(densities_mid - 1)
    alpha = 1 - torch.exp(-(densities_mid * deltas))  # not -expm1: official float32 underflow (README case e)
    alpha_shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
    return alpha * torch.cumprod(alpha_shifted, -2)[:, :, :-1]


def _check_march_inputs(colors: Tensor, densities: Tensor, depths: Tensor) -> None:
    _check(depths.dim() == 4 and depths.shape[-1] == 1 and depths.shape[2] >= 2,
           f"ray_march: depths must be [N,M,S,1] with S >= 2, got {list(depths.shape)}")
    _check(densities.shape == depths.shape, f"ray_march: densities must be {list(depths.shape)}, "
                                            f"got {list(densities.shape)}")
    _check(colors.dim() == 4 and colors.shape[:3] == depths.shape[:3],
           f"ray_march: colors must be [N,M,S,C] with [N,M,S]={list(depths.shape[:3])}, got {list(colors.shape)}")


class _WeightedSum(torch.autograd.Function):
    """``sum_s w[..., s] * c[..., s, :]`` as a batched matmul whose backward keeps every operand contiguous.

    Autograd's own matmul backward receives the incoming gradient in whatever layout the caller's later reshapes
    left it (an image permute makes it strided), and CPU bmm then falls back to one tiny GEMM per ray (16 384 per
    call, ~40x slower). Same values as ``torch.matmul(w.unsqueeze(-2), c).squeeze(-2)``.
    """

    @staticmethod
    def forward(ctx, w: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(w, c)
        return torch.matmul(w.unsqueeze(-2), c).squeeze(-2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        w, c = ctx.saved_tensors
        g = grad.contiguous()
        grad_w = torch.matmul(c, g.unsqueeze(-1)).squeeze(-1) if ctx.needs_input_grad[0] else None
        grad_c = w.unsqueeze(-1) * g.unsqueeze(-2) if ctx.needs_input_grad[1] else None
        return grad_w, grad_c


def weighted_sum(weights: Tensor, values: Tensor) -> Tensor:
    """Per-ray weighted sum over samples. weights: [..., S]; values: [..., S, C] (same dtype). Returns [..., C]."""
    return _WeightedSum.apply(weights.contiguous(), values)


def _composite(weights: Tensor, color_parts: tuple[Tensor, ...], depths: Tensor, white_back: bool,
               sort_index: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Marcher outputs from interval weights [N,M,S-1,1] and sorted depths [N,M,S,1].

    ``sum_k w_k (c_k + c_{k+1}) / 2 == sum_j w'_j c_j`` with node weights ``w'_j = (w_{j-1} + w_j) / 2``, so the
    colour composite is one small matmul per part, with no [N,M,S-1,C] midpoint tensor. ``color_parts`` are
    [N,M,S_i,C] tensors in concat order; with ``sort_index`` (sorted position k came from concat index
    sort_index[k]) the node weights are scattered back to concat order, so unsorted colours are never gathered.
    Returns rgb [N,M,C] (*2-1), depth [N,M,1] (NaN -> inf -> clamped to the global depth range), acc [N,M,1].
    """
    w = weights.squeeze(-1)
    w_node = 0.5 * (F.pad(w, (1, 0)) + F.pad(w, (0, 1)))  # [N, M, S]
    if sort_index is not None:
        w_node = torch.zeros_like(w_node).scatter(-1, sort_index.squeeze(-1), w_node)
    rgb: Tensor | None = None
    start = 0
    for part in color_parts:
        k = part.shape[2]
        term = weighted_sum(w_node[..., start:start + k].to(part.dtype), part)
        rgb = term if rgb is None else rgb + term
        start += k
    assert rgb is not None
    acc = weights.sum(2)
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    depth = torch.sum(weights * depths_mid, -2) / acc
    depth = torch.nan_to_num(depth, float("inf"))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        rgb = rgb + 1 - acc
    return rgb * 2 - 1, depth, acc


def ray_march(colors: Tensor, densities: Tensor, depths: Tensor, *,
              white_back: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """MipRayMarcher2 (official `ray_marcher.py`, docs/eg3d.md §9.7).

    Args:
        colors: [N, M, S, C] features (decoder rgb, about [0, 1]).
        densities: [N, M, S, 1] raw sigma (before ``softplus(sigma - 1)``).
        depths: [N, M, S, 1] ascending per ray, world units.
        white_back: add ``1 - acc`` to the composite before scaling.
    Returns:
        rgb [N, M, C] = 2 * composite - 1; depth [N, M, 1] clamped to [min(depths), max(depths)] over the WHOLE
        tensor (empty rays give that global max); weights [N, M, S-1, 1].
    """
    _check_march_inputs(colors, densities, depths)
    weights = march_weights(densities, depths)
    rgb, depth, _ = _composite(weights, (colors,), depths, white_back)
    return rgb, depth, weights


# ----------------------------------------------------------------------------------------------------------------
# The two-pass renderer
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RaySamples:
    """Every sample a render evaluated, in depth order, for reuse (composite renderer).

    ``colors`` may be materialised lazily: `render_planes` keeps the coarse and fine decoder outputs unsorted and
    builds the sorted [N, M, S, C] tensor (one gather) only when ``colors`` is first read, so a plain render
    never pays for it. Assigning ``colors`` (or passing it to the constructor) stores a tensor as usual.
    """

    origins: Tensor  # [N, M, 3]
    directions: Tensor  # [N, M, 3]
    depths: Tensor  # [N, M, S, 1] sorted ascending (S = coarse + fine)
    colors: Tensor  # [N, M, S, C] decoder features after the sigmoid clamp, in [-0.001, 1.001]
    densities: Tensor  # [N, M, S, 1] raw sigma (before softplus(sigma - 1))
    sort_index: Tensor  # [N, M, S, 1] int64: position k came from concat(coarse, fine)[sort_index[k]]
    n_coarse: int

    def points(self) -> Tensor:
        """[N, M, S, 3] world positions = origins + depths * directions."""
        return self.origins.unsqueeze(-2) + self.depths * self.directions.unsqueeze(-2)


def _get_colors(self: RaySamples) -> Tensor:
    value = self.__dict__.get("_colors")
    if value is None:
        parts = self.__dict__["_color_parts"]
        value = _sort_features(parts, self.sort_index)
        if torch.is_grad_enabled() or not any(p.requires_grad for p in parts):
            # cache; a read under no_grad of a differentiable render is not cached (it would drop the graph)
            self.__dict__["_colors"] = value
            self.__dict__["_color_parts"] = None
    return value


def _set_colors(self: RaySamples, value: Tensor) -> None:
    self.__dict__["_colors"] = value
    self.__dict__["_color_parts"] = None


RaySamples.colors = property(_get_colors, _set_colors, doc="[N, M, S, C] sorted decoder features")  # type: ignore


def _lazy_samples(origins: Tensor, directions: Tensor, depths: Tensor, color_parts: tuple[Tensor, ...],
                  densities: Tensor, sort_index: Tensor, n_coarse: int) -> RaySamples:
    """RaySamples whose sorted colors are gathered from ``color_parts`` ([N, M, S_i, C], concat order) on demand."""
    samples = RaySamples.__new__(RaySamples)
    samples.__dict__.update(origins=origins, directions=directions, depths=depths, densities=densities,
                            sort_index=sort_index, n_coarse=n_coarse, _colors=None, _color_parts=color_parts)
    return samples


def _sort_features(parts: tuple[Tensor, ...], sort_index: Tensor) -> Tensor:
    """concat(parts, dim=-2) [N, M, S, C] reordered by sort_index [N, M, S, 1] (a row gather, no expanded index)."""
    n, m, s, _ = sort_index.shape
    c = parts[0].shape[-1]
    allc = parts[0] if len(parts) == 1 else torch.cat(parts, -2)
    flat = (sort_index.view(n, m, s) + torch.arange(n * m, device=sort_index.device).view(n, m, 1) * s).reshape(-1)
    return allc.reshape(n * m * s, c).index_select(0, flat).view(n, m, s, c)


@dataclass
class RenderOutput:
    """Result of `render_planes`."""

    rgb: Tensor | None  # [N, M, C] marched features (*2-1), None when march=False
    depth: Tensor | None  # [N, M, 1] world units
    acc: Tensor | None  # [N, M, 1] sum of weights, in [0, 1]
    samples: RaySamples


def _decode_points(planes4: Tensor, decode: DecodeFn, points: Tensor, box_warp: float, chunk: int | None,
                   density_noise: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Sample + decode points [N, P, 3] (``chunk`` points at a time) -> (rgb [N, P, C'], sigma [N, P, 1])."""
    n, p = points.shape[:2]
    step = p if chunk is None else chunk
    rgbs, sigmas = [], []
    rgb = sigma = None
    for start in range(0, p, step):
        part_rgb, part_sigma = decode(_sample_planes4(planes4, points[:, start:start + step], box_warp))
        if rgb is None and not rgbs and step < p and not (part_rgb.requires_grad or part_sigma.requires_grad):
            k = min(step, p - start)
            _check(part_rgb.dim() == 3 and part_rgb.shape[:2] == (n, k) and tuple(part_sigma.shape) == (n, k, 1),
                   f"render_planes: decode must return rgb [N,P,C] and sigma [N,P,1] with N={n}, P={k}; got "
                   f"{list(part_rgb.shape)} and {list(part_sigma.shape)}")
            # No autograd: write chunks straight into the outputs (no list of chunks + concatenated copy at once).
            rgb = part_rgb.new_empty((n, p, part_rgb.shape[-1]))
            sigma = part_sigma.new_empty((n, p, 1))
        if rgb is not None:
            rgb[:, start:start + step] = part_rgb
            sigma[:, start:start + step] = part_sigma
        else:
            rgbs.append(part_rgb)
            sigmas.append(part_sigma)
    if rgb is None:
        rgb = rgbs[0] if len(rgbs) == 1 else torch.cat(rgbs, 1)
        sigma = sigmas[0] if len(sigmas) == 1 else torch.cat(sigmas, 1)
    _check(rgb.dim() == 3 and rgb.shape[:2] == (n, p) and tuple(sigma.shape) == (n, p, 1),
           f"render_planes: decode must return rgb [N,P,C] and sigma [N,P,1] with N={n}, P={p}; got "
           f"{list(rgb.shape)} and {list(sigma.shape)}")
    if density_noise > 0:
        sigma = sigma + torch.randn(sigma.shape, generator=generator, dtype=sigma.dtype,
                                    device=sigma.device) * density_noise
    return rgb, sigma


def render_planes(planes: Tensor, decode: DecodeFn, origins: Tensor, directions: Tensor, cfg: RenderingConfig,
                  generator: torch.Generator | None, *, march: bool = True,
                  draws: tuple[Tensor, Tensor] | None = None, chunk: int | None = DEFAULT_CHUNK) -> RenderOutput:
    """The official ImportanceRenderer (docs/eg3d.md §9): coarse stratified pass, importance pass, merged final march.

    RNG order (docs/eg3d.md §14): draw 0 ``rand([N, M, S, 1])`` (stratified jitter), then draw 1
    ``rand([N*M, S_imp])`` (inverse-CDF u), both from ``generator``; with ``cfg.density_noise > 0`` a
    ``randn`` of each pass's sigma follows that pass's decode, as in the official ``run_model``.
    Importance sampling runs without an autograd graph (as the official code); gradients reach ``planes`` and the
    decoder through both passes' colors and densities.

    Args:
        planes: [N, 3, C, H, W] tri-plane features.
        decode: sampled features [N, 3, P, C] -> (rgb [N, P, C'], raw sigma [N, P, 1]).
        origins, directions: [N, M, 3] rays (unit directions), world units.
        cfg: rendering config (depth bounds, sample counts, box_warp, white_back, density_noise).
        generator: random source; ``None`` uses torch's global generator.
        march: False skips the final march (only the samples are returned; for the composite renderer).
        draws: optional injected (u0 [N, M, S, 1], u1 [N*M, S_imp]) instead of drawing (parity tests).
        chunk: points per item per decode call, None = all at once (memory only; results do not depend on it).
    Returns:
        RenderOutput with rgb [N, M, C'] (*2-1), depth [N, M, 1], acc [N, M, 1] and the sorted RaySamples.
    """
    _check(planes.dim() == 5 and planes.shape[1] == 3, f"render_planes: planes must be [N,3,C,H,W], "
                                                         f"got {list(planes.shape)}")
    _check(origins.dim() == 3 and origins.shape[-1] == 3 and origins.shape[0] == planes.shape[0],
           f"render_planes: origins must be [N,M,3] with N={planes.shape[0]}, got {list(origins.shape)}")
    _check(directions.shape == origins.shape, f"render_planes: directions must be {list(origins.shape)}, "
                                              f"got {list(directions.shape)}")
    _check(chunk is None or chunk > 0, f"render_planes: chunk must be > 0 or None, got {chunk}")
    _check(draws is None or len(draws) == 2, "render_planes: draws must be (u0, u1)")
    n, m, _ = origins.shape
    s_c, s_f = cfg.depth_resolution, cfg.depth_resolution_importance
    # Channels-last planes: grid_sample reads a texel's C features contiguously (same values, ~1.4x faster).
    planes4 = planes.reshape(n * 3, *planes.shape[2:]).contiguous(memory_format=torch.channels_last)

    depths_coarse = sample_stratified(origins, cfg.ray_start, cfg.ray_end, s_c, generator,
                                      disparity_space_sampling=cfg.disparity_space_sampling,
                                      u=None if draws is None else draws[0])
    o, d = origins.unsqueeze(-2), directions.unsqueeze(-2)
    pts = (o + depths_coarse * d).reshape(n, m * s_c, 3)
    rgb_c, sigma_c = _decode_points(planes4, decode, pts, cfg.box_warp, chunk, cfg.density_noise, generator)
    c_out = rgb_c.shape[-1]
    rgb_c = rgb_c.reshape(n, m, s_c, c_out)
    sigma_c = sigma_c.reshape(n, m, s_c, 1)

    if s_f == 0:
        sort_index = torch.arange(s_c, device=origins.device).view(1, 1, s_c, 1).expand(n, m, s_c, 1)
        samples = RaySamples(origins, directions, depths_coarse, rgb_c, sigma_c, sort_index, s_c)
        parts: tuple[Tensor, ...] = (rgb_c,)
    else:
        with torch.no_grad():
            weights_c = march_weights(sigma_c.detach(), depths_coarse)
        depths_fine = sample_importance(depths_coarse, weights_c, s_f, generator,
                                        u=None if draws is None else draws[1])
        pts = (o + depths_fine * d).reshape(n, m * s_f, 3)
        rgb_f, sigma_f = _decode_points(planes4, decode, pts, cfg.box_warp, chunk, cfg.density_noise, generator)
        parts = (rgb_c, rgb_f.reshape(n, m, s_f, c_out))
        all_depths = torch.cat([depths_coarse, depths_fine], -2)
        sorted_depths, idx = torch.sort(all_depths, dim=-2)
        all_sigma = torch.cat([sigma_c, sigma_f.reshape(n, m, s_f, 1)], -2)
        samples = _lazy_samples(origins, directions, sorted_depths, parts,
                                torch.gather(all_sigma, -2, idx), idx, s_c)
    if not march:
        return RenderOutput(None, None, None, samples)
    weights = march_weights(samples.densities, samples.depths)
    # Composite straight from the unsorted decoder outputs (no sorted colour tensor unless samples.colors is read).
    rgb, depth, acc = _composite(weights, parts, samples.depths, cfg.white_back,
                                 samples.sort_index if len(parts) > 1 else None)
    return RenderOutput(rgb, depth, acc, samples)
