"""ops: upfirdn2d / upsample2d / conv2d_resample / modulated_conv2d / bias_act against independent loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from innout_core.eg3d.ops import (
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)


def _np_upfirdn(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int], gain: float,
                flip: bool) -> np.ndarray:
    """Loop reference of docs/eg3d.md §13.2: zero-insert, pad (negative crops), true convolution, keep every down-th."""
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * up, w * up), np.float64)
    z[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    z = np.pad(z, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    z = z[:, :, max(-y0, 0): z.shape[2] - max(-y1, 0), max(-x0, 0): z.shape[3] - max(-x1, 0)]
    k = f.astype(np.float64) * gain
    if not flip:
        k = k[::-1, ::-1]
    fh, fw = k.shape
    oh, ow = z.shape[2] - fh + 1, z.shape[3] - fw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(fh):
        for j in range(fw):
            out += z[:, :, i:i + oh, j:j + ow] * k[i, j]
    return out[:, :, ::down, ::down]


def test_setup_filter_is_official_value():
    f = setup_filter([1, 3, 3, 1])
    expected = torch.tensor([[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]], dtype=torch.float32) / 64
    assert f.dtype == torch.float32 and torch.equal(f, expected)


@pytest.mark.parametrize(
    "up,down,pad,gain,flip,separable",
    [
        (2, 1, (2, 1, 2, 1), 4.0, False, True),  # upsample2d
        (1, 1, (1, 1, 1, 1), 4.0, False, True),  # FIR after the transposed conv
        (1, 2, (1, 1, 1, 1), 1.0, False, True),  # downsampling
        (2, 1, (3, 2, 3, 2), 4.0, False, False),  # non-separable, asymmetric pad
        (1, 1, (-1, 2, 0, -1), 1.0, True, False),  # crops, flip_filter
    ],
)
def test_upfirdn2d_matches_loop_reference(up, down, pad, gain, flip, separable):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 7, generator=g)
    f = setup_filter([1, 3, 3, 1]) if separable else torch.rand(4, 4, generator=g)
    out = upfirdn2d(x, f, up=up, down=down, padding=list(pad), flip_filter=flip, gain=gain)
    ref = _np_upfirdn(x.numpy(), f.numpy(), up, down, pad, gain, flip)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)  # float32 vs float64 sums of <= 16 terms


@pytest.mark.parametrize("pad,separable", [((1, 1, 1, 1), True), ((2, 2, 1, 1), False), ((3, 2, 3, 2), True)])
def test_upfirdn2d_channels_last_input_matches_loop_reference(pad, separable):
    # Channels-last inputs take the one-2-D-kernel depthwise path: same values, any padding.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 9, 7, generator=g).contiguous(memory_format=torch.channels_last)
    f = setup_filter([1, 3, 3, 1]) if separable else torch.rand(4, 4, generator=g)
    b = torch.randn(5, generator=g)
    out = upfirdn2d(x, f, padding=list(pad), gain=4.0, bias=b)
    ref = _np_upfirdn(x.numpy(), f.numpy(), 1, 1, pad, 4.0, False) + b.numpy().reshape(1, -1, 1, 1)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)


def test_upsample2d_fast_path_matches_reference(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 8, 6, generator=g)
    f = setup_filter([1, 3, 3, 1])
    out = upsample2d(x.to(device), f.to(device)).cpu()
    ref = _np_upfirdn(x.numpy(), f.numpy(), 2, 1, (2, 1, 2, 1), 4.0, False)
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("flip_weight", [False, True])
def test_conv2d_resample_up2_matches_definition(flip_weight):
    """up=2: zero-insert + FIR (pad 3,2, gain 4) + valid conv (docs/eg3d.md §13.3), implemented with plain F.conv2d."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6, 6, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    f = setup_filter([1, 3, 3, 1])
    y = torch.from_numpy(_np_upfirdn(x.numpy(), f.numpy(), 2, 1, (3, 2, 3, 2), 4.0, False)).float()
    ref = F.conv2d(y, w if flip_weight else w.flip([2, 3]))
    out = conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=flip_weight)
    assert out.shape == (2, 5, 12, 12)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)  # official fast path vs definition: 3.8e-6


def _modconv_loop(x, weight, styles, demodulate, noise):
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt((w.double() ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8).float()
        outs.append(F.conv2d(x[i:i + 1], w, padding=weight.shape[-1] // 2))
    y = torch.cat(outs)
    return y + noise if noise is not None else y


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_matches_per_sample_loop(fused, demodulate, device):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 8, 8, generator=g)
    weight = torch.randn(4, 6, 3, 3, generator=g)
    styles = torch.randn(3, 6, generator=g) + 1
    noise = torch.randn(3, 1, 8, 8, generator=g) if demodulate else None
    out = modulated_conv2d(x.to(device), weight.to(device), styles.to(device),
                           noise=None if noise is None else noise.to(device),
                           padding=1, demodulate=demodulate, fused_modconv=fused).cpu()
    ref = _modconv_loop(x, weight, styles, demodulate, noise)
    torch.testing.assert_close(out, ref, atol=5e-5, rtol=1e-5)


def test_modulated_conv2d_gain_and_bias_folding_equals_bias_act():
    """The folded form used by SynthesisLayer equals modconv -> bias_act(lrelu, gain sqrt2)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, 8, 8, generator=g)
    weight = torch.randn(5, 6, 3, 3, generator=g)
    styles = torch.randn(2, 6, generator=g)
    bias = torch.randn(5, generator=g)
    noise = torch.randn(2, 1, 8, 8, generator=g)
    gain = math.sqrt(2)
    ref = bias_act(modulated_conv2d(x, weight, styles, noise=noise, padding=1), bias, act="lrelu")
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=fused, out_gain=gain,
                               bias=bias * gain)
        torch.testing.assert_close(F.leaky_relu(out, 0.2), ref, atol=1e-5, rtol=1e-6)


def test_bias_act_formula_and_clamp():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 3, 3, generator=g) * 300
    b = torch.randn(4, generator=g)
    z = x + b.reshape(1, -1, 1, 1)
    expected = torch.where(z >= 0, z, 0.2 * z) * math.sqrt(2)
    torch.testing.assert_close(bias_act(x, b, act="lrelu"), expected)
    clamped = bias_act(x, b, act="lrelu", clamp=256)
    torch.testing.assert_close(clamped, expected.clamp(-256, 256))
    assert (clamped.abs() == 256).any()
    torch.testing.assert_close(bias_act(x, b), z)
    xg = x.clone().requires_grad_(True)
    bias_act(xg, b, act="lrelu", clamp=256).sum().backward()  # out-of-place path keeps autograd intact
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_standard_filter_cache_answers_only_for_its_own_tensor():
    """The [1,3,3,1] check is cached per tensor object and version: a new tensor at a reused address (same data
    pointer, same version, other values) and an in-place change are both checked afresh."""
    from innout_core.eg3d import ops

    buf = ops.setup_filter([1, 3, 3, 1]).numpy().copy()
    f1 = torch.from_numpy(buf)
    assert ops._is_standard_filter(f1) and ops._is_standard_filter(f1)  # second answer from the cache
    ptr, version = f1.data_ptr(), f1._version
    del f1
    buf[:] = 1 / 16  # written behind torch's back: a box filter now sits at the same address
    f2 = torch.from_numpy(buf)
    assert (f2.data_ptr(), f2._version) == (ptr, version)  # what the old (address, version) key saw
    assert not ops._is_standard_filter(f2)
    f3 = ops.setup_filter([1, 3, 3, 1]).clone()
    assert ops._is_standard_filter(f3)
    f3.mul_(2)  # in place: a new version of the same tensor
    assert not ops._is_standard_filter(f3)
