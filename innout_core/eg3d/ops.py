"""StyleGAN2 custom ops in plain PyTorch: FIR resampling, resampling conv, modulated conv, bias + activation.

Reference maths: docs/eg3d.md §13. The official code runs these as CUDA plugins on the GPU and as "ref" PyTorch
paths on the CPU; the functions here compute the same values (up to float32 reordering, ~1e-6 relative) on any
device, with fast paths for the cases EG3D uses (separable 4-tap FIR, 2x up-conv via ``conv_transpose2d``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "conv2d_resample",
    "modulated_conv2d",
    "bias_act",
]

_ACT_DEFAULT_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0), "relu": math.sqrt(2.0)}


def setup_filter(f: Sequence[float] | Tensor = (1, 3, 3, 1), normalize: bool = True) -> Tensor:
    """A 1-D tap list (< 8 taps) becomes its outer product, normalised to sum 1.

    ``[1, 3, 3, 1]`` -> ``[[1,3,3,1],[3,9,9,3],[3,9,9,3],[1,3,3,1]] / 64`` (float32 [4, 4]), the
    ``resample_filter`` buffer of every official StyleGAN2 layer.
    """
    t = torch.as_tensor(f, dtype=torch.float32)
    if t.ndim == 1 and t.numel() < 8:
        t = t.outer(t)
    if normalize:
        t = t / t.sum()
    return t


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p = list(padding)
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must be an int, (px, py) or (x0, x1, y0, y1); got {padding!r}")


def _separable_taps(f: Tensor) -> tuple[Tensor, Tensor] | None:
    """(fx, fy) 1-D taps with ``outer(fy, fx) == f`` exactly, or None if f is not (exactly) separable."""
    if f.ndim != 2:
        return None
    total = f.sum()
    if float(total) == 0.0:
        return None
    fy = f.sum(dim=1)
    fx = f.sum(dim=0) / total
    if torch.equal(torch.outer(fy, fx), f):
        return fx, fy
    return None


#: id(tensor) -> (weak reference to that tensor, its ``_version`` when checked, the answer)
_STANDARD_CACHE: dict[int, tuple[weakref.ref, int, bool]] = {}


def _is_standard_filter(f: Tensor) -> bool:
    """True when f is exactly ``setup_filter([1,3,3,1])``.

    Cached per tensor object and in-place version, so the check (a device sync) runs once per filter buffer. An
    entry answers only for the very object it was computed for (its weak reference must still point to ``f``): a
    new tensor at a reused id or storage address is checked afresh.
    """
    entry = _STANDARD_CACHE.get(id(f))
    if entry is not None and entry[0]() is f and entry[1] == f._version:
        return entry[2]
    hit = f.shape == (4, 4) and torch.equal(f.detach().float().cpu(), setup_filter([1, 3, 3, 1]))
    if len(_STANDARD_CACHE) > 4096:
        _STANDARD_CACHE.clear()
    _STANDARD_CACHE[id(f)] = (weakref.ref(f), f._version, hit)
    return hit


def _channels_last(x: Tensor) -> bool:
    """True when x [N,C,H,W] is stored channels-last (and C > 1, so the layout is not ambiguous)."""
    return x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _depthwise(x: Tensor, taps: Tensor, dim: int, bias: Tensor | None = None, pad: int = 0) -> Tensor:
    """Cross-correlation of every channel of x [N,C,H,W] with 1-D taps along dim (2=H, 3=W), zero pad both ends."""
    c = x.shape[1]
    shape = [c, 1, taps.numel(), 1] if dim == 2 else [c, 1, 1, taps.numel()]
    w = taps.to(x.dtype).reshape(1, 1, *shape[2:]).expand(shape)
    padding = (pad, 0) if dim == 2 else (0, pad)
    return F.conv2d(x, w, bias=bias, groups=c, padding=padding)


def upfirdn2d(
    x: Tensor,
    f: Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    bias: Tensor | None = None,
) -> Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample every channel (official ``upfirdn2d``).

    Args:
        x: [N, C, H, W] any float dtype.
        f: FIR filter, [fh, fw] (2-D) or [ft] (1-D, applied separably on both axes); None = identity [[1]].
        up, down: integer factors. padding: ``int``, ``(px, py)`` or ``(x0, x1, y0, y1)``; negative crops.
        flip_filter: False = true convolution (official default), True = cross-correlation.
        gain: overall signal gain (the filter is scaled by ``gain ** (f.ndim / 2)``).
        bias: optional [C] added after filtering (fused for speed; not part of the official op).
    Returns:
        [N, C, (H*up + y0 + y1 - fh) // down + 1, (W*up + x0 + x1 - fw) // down + 1], dtype of x.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x [N,C,H,W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    f = f.to(device=x.device, dtype=torch.float32) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    sep = (f, f) if f.ndim == 1 else _separable_taps(f)
    if sep is not None and _channels_last(x):
        # oneDNN's channels-last depthwise conv is ~3x faster with one 2-D kernel than with two 1-D passes.
        f, sep = torch.outer(sep[1], sep[0]), None
    if sep is None and f.ndim == 2 and px0 == px1 >= 0 and py0 == py1 >= 0:
        x = F.conv2d(x, f.to(x.dtype)[None, None].expand(c, 1, *f.shape), bias=bias, groups=c, padding=(py0, px0))
        return x[:, :, ::down, ::down] if down > 1 else x
    if sep is not None and px0 == px1 >= 0 and py0 == py1 >= 0:
        fx, fy = sep  # symmetric padding: let the convs pad (no padded copy of x)
        x = _depthwise(x, fx, dim=3, pad=px0)
        x = _depthwise(x, fy, dim=2, bias=bias, pad=py0)
        return x[:, :, ::down, ::down] if down > 1 else x
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if sep is not None:
        fx, fy = sep
        x = _depthwise(x, fx, dim=3)
        x = _depthwise(x, fy, dim=2, bias=bias)
    else:
        wgt = f.to(x.dtype)[None, None].expand(c, 1, *f.shape)
        x = F.conv2d(x, wgt, bias=bias, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2, flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """FIR upsampling by ``up`` (official ``upfirdn2d.upsample2d`` with padding 0): [N,C,H,W] -> [N,C,H*up,W*up].

    The signal gain is ``gain * up**2`` so a constant image stays constant away from the borders.
    """
    if up == 2 and gain == 1.0 and _is_standard_filter(f):
        # [1,3,3,1] x2 upsampling == bilinear (align_corners=False) except at the border, where the FIR's zero padding
        # replaces bilinear's edge clamping: the outermost rows/cols get 3/4 of the bilinear value.
        y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        for dim in (2, 3):
            y.narrow(dim, 0, 1).mul_(0.75)
            y.narrow(dim, y.shape[dim] - 1, 1).mul_(0.75)
        return y
    fw = f.shape[-1]
    p = [(fw + up - 1) // 2, (fw - up) // 2]
    return upfirdn2d(x, f, up=up, padding=[p[0], p[1], p[0], p[1]], flip_filter=flip_filter, gain=gain * up * up)


def conv2d_resample(
    x: Tensor,
    w: Tensor,
    f: Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
    bias: Tensor | None = None,
) -> Tensor:
    """2-D convolution with optional FIR 2x upsampling (the cases of official ``conv2d_resample`` EG3D uses).

    Args:
        x: [N, groups*C_in, H, W]. w: [groups*C_out, C_in, kh, kw] (square kernel).
        f: FIR filter for up > 1 (``setup_filter([1,3,3,1])``). up: 1 or 2. padding: same on all sides.
        flip_weight: True = cross-correlation (F.conv2d semantics); False = true convolution.
        bias: optional [groups*C_out] added to the output (fused; not part of the official op).
    Returns:
        [N, groups*C_out, H*up + 2*padding - kh*(up==1) + ..., ...]: for 3x3, padding 1: [.., H*up, W*up].
    """
    kh, kw = w.shape[-2:]
    if up == 1:
        if not flip_weight:
            w = w.flip([2, 3])
        return F.conv2d(x, w, bias=bias, padding=padding, groups=groups)
    if up != 2 or f is None:
        raise ValueError(f"conv2d_resample supports up=1, or up=2 with a filter; got up={up}")
    if kh != kw:
        raise ValueError("conv2d_resample expects a square kernel")
    # Zero-insert x2 + FIR(pad) + conv(pad) == conv_transpose(stride 2) + FIR(remaining pad). The transposed conv is a
    # true convolution of the zero-inserted signal, so a flip_weight=True (cross-correlation) request flips w first.
    fw = f.shape[-1]
    p0 = padding + (fw + up - 1) // 2  # total left pad of the zero-inserted signal (official: pad + filter pad)
    p1 = padding + (fw - up) // 2
    if flip_weight:
        w = w.flip([2, 3])
    cout_g, cin = w.shape[0] // groups, w.shape[1]
    wt = w.reshape(groups, cout_g, cin, kh, kw).transpose(1, 2).reshape(groups * cin, cout_g, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # [N, .., 2H + kh - 2, 2W + kw - 2]
    # The transposed conv already did the (true) conv of the zero-inserted signal; the FIR only needs the rest of
    # the padding: left p0 - (k-1), right p1 - (k-2) (both 1 for 3x3, padding 1, 4 taps).
    q0, q1 = p0 - (kw - 1), p1 - (kw - 2)
    return upfirdn2d(x, f, padding=[q0, q1, q0, q1], gain=up * up, bias=bias)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    out_gain: float = 1.0,
    bias: Tensor | None = None,
) -> Tensor:
    """StyleGAN2 modulated convolution (official ``modulated_conv2d``, docs/eg3d.md §13.4), float32 maths.

    Args:
        x: [N, C_in, H, W]. weight: [C_out, C_in, kh, kw]. styles: [N, C_in].
        noise: optional tensor broadcastable to the output ([N,1,H',W'] or [H',W']), added after demodulation.
        demodulate: divide each output channel by the norm of its modulated weights (+1e-8).
        fused_modconv: True = one grouped conv with per-sample weights; False = conv of ``x*s`` then ``*d``.
        out_gain: extra positive factor applied to the conv output and to ``noise`` (lets the caller fold an
            activation gain in); 1 = official op.
        bias: optional [C_out] added after the noise (folded into the conv; the official op adds it in bias_act).
    Returns:
        [N, C_out, H*up, W*up] (for 3x3 kernels with padding 1), dtype of x.
    """
    n = x.shape[0]
    c_out, c_in, kh, kw = weight.shape
    if styles.shape != (n, c_in):
        raise ValueError(f"styles must be [N={n}, C_in={c_in}], got {tuple(styles.shape)}")
    dtype = x.dtype
    if dtype == torch.float16 and demodulate:
        # Official fp16 overflow guard; demodulation cancels both scalings (up to the 1e-8 epsilon).
        weight = weight * (1 / math.sqrt(c_in * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    dcoefs = None
    if demodulate:
        # sum_{i,k} (W[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 sum_k W[o,i,k]^2: a [N,C_in] x [C_in,C_out] product instead of
        # a pass over an [N, C_out, C_in, kh, kw] tensor (same sum, reordered).
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, C_out]
    if noise is not None:
        noise = noise.to(dtype) * out_gain if out_gain != 1.0 else noise.to(dtype)
    if fused_modconv:
        # W'_n = W * s_n (input channels) * d_n * out_gain (output channels), in one pass over the weight.
        scale = dcoefs * out_gain if dcoefs is not None else None
        if scale is None:
            coef = styles * out_gain if out_gain != 1.0 else styles
            wm = weight.unsqueeze(0) * coef.reshape(n, 1, -1, 1, 1)
        else:
            wm = weight.unsqueeze(0) * (scale.unsqueeze(2) * styles.unsqueeze(1)).reshape(n, c_out, c_in, 1, 1)
        b = bias.to(dtype).repeat(n) if bias is not None else None
        y = conv2d_resample(
            x if n == 1 else x.reshape(1, -1, *x.shape[2:]),  # n == 1: keep x's strides (channels-last detection)
            wm.reshape(-1, c_in, kh, kw).to(dtype),
            f=resample_filter,
            up=up,
            padding=padding,
            groups=n,
            flip_weight=flip_weight,
            bias=b,
        )
        if n > 1:
            y = y.reshape(n, -1, *y.shape[2:])
        if noise is not None:
            y = y.add_(noise) if not (torch.is_grad_enabled() and y.requires_grad) else y + noise
        return y
    xs = x * styles.to(dtype).reshape(n, -1, 1, 1)
    y = conv2d_resample(xs, weight.to(dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    scale = dcoefs * out_gain if dcoefs is not None else None
    if scale is None and out_gain != 1.0:
        scale = torch.full([n, c_out], out_gain, dtype=dtype, device=x.device)
    if scale is not None:
        y = y * scale.to(dtype).reshape(n, -1, 1, 1)
    if noise is not None:
        y = y + noise
    if bias is not None:
        y = y + bias.to(dtype).reshape(1, -1, 1, 1)
    return y


def bias_act(
    x: Tensor,
    b: Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` (official ``bias_act`` ref path, docs/eg3d.md §13.5).

    Args:
        x: any shape, float. b: [x.shape[dim]] or None. act: 'linear', 'relu' or 'lrelu' (alpha 0.2 default).
        gain: None = the activation's default (sqrt 2 for lrelu/relu, 1 for linear). clamp: None = no clamp.
    Works in place on a fresh intermediate when autograd does not need the inputs.
    """
    if act not in _ACT_DEFAULT_GAIN:
        raise ValueError(f"unsupported activation {act!r}")
    gain = _ACT_DEFAULT_GAIN[act] if gain is None else float(gain)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
        fresh = True
    else:
        fresh = False
    inplace = fresh and not (torch.is_grad_enabled() and x.requires_grad)
    if act == "lrelu":
        slope = 0.2 if alpha is None else float(alpha)
        x = F.leaky_relu_(x, slope) if inplace else F.leaky_relu(x, slope)
    elif act == "relu":
        x = F.relu_(x) if inplace else F.relu(x)
    if gain != 1.0:
        x = x.mul_(gain) if inplace else x * gain
        inplace = inplace or not (torch.is_grad_enabled() and x.requires_grad)
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return x
