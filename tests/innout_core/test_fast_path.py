"""Fast path keeps the maths: each switch against the plain path (equality or a stated tolerance), on the tiny
generator. bf16 autocast (CPU and CUDA) is checked within a stated tolerance of fp32; the CUDA-only switches (fp16,
torch.compile) are checked to be harmless no-ops on CPU and, where a CUDA device exists, within tolerance."""

from __future__ import annotations

import pytest
import torch

from innout_core.composite import render_composite
from innout_core.eg3d.camera import orbit_labels
from innout_core.eg3d.configs import build_generator
from innout_core.joint import JointConfig, LossWeights, run_stage_a
from innout_core.ood import OODField
from innout_core.precision import cpu_has_native_bf16, maybe_compile, use_amp
from innout_core.sr_tuning import SRTuningConfig, run_stage_b
from tests.innout_core.tiny_video import occluded_video, untrained_stage_a

# fp32 re-association (matmul instead of midpoint sums, one grid_sample instead of three expands, phi folded into
# the bias): differences are rounding only, a few ulp of values of order 1.
FUSED_ATOL = 2e-5


@pytest.fixture(scope="module")
def video():
    """Tiny generator, 2 frames with a pasted occluder, user masks (1 = face)."""
    return occluded_video()


def _cfg(**kw) -> JointConfig:
    base = JointConfig.preset("tiny-demo").model_copy(
        update={"steps": 2, "neural_resolution": 16, "ood_resolution": 16, "checkpoint_every": 0,
                "mask_mode": "user", "lr_w": 1e-3})
    return base.model_copy(update=kw)


def _stage_a(video, cfg: JointConfig, seed: int = 7):
    G, frames, c, ws, masks = video
    return run_stage_a(G, frames, c, ws, cfg, torch.Generator().manual_seed(seed), masks=masks)


def test_fused_ood_query_equals_plain_values_and_gradients() -> None:
    f = OODField(3, channels=8, resolution=16, generator=torch.Generator().manual_seed(3))
    pts = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6  # some outside the cube
    idx = torch.tensor([2, 0])
    outs, grads = [], []
    for fused in (False, True):
        f.zero_grad(set_to_none=True)
        o = f.query(pts, idx, fused=fused)
        sum(x.square().sum() for x in o).backward()
        outs.append(o)
        grads.append({k: p.grad.clone() for k, p in f.named_parameters()})
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, atol=FUSED_ATOL, rtol=0)
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], atol=1e-4, rtol=1e-4, msg=k)


@pytest.mark.parametrize("form", ["official", "paper"])
@pytest.mark.parametrize("release_order", [False, True])
def test_fused_composite_equals_plain(form: str, release_order: bool) -> None:
    G = build_generator("tiny")
    c = orbit_labels(2, 0.2, 0.1)
    z = torch.randn(2, G.init_kwargs["z_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        planes = G.backbone_planes(G.mapping(z, c), noise_mode="const")
    ood = OODField(2, 32, 16, generator=torch.Generator().manual_seed(2))
    idx = torch.tensor([1, 0])
    res = {}
    for fused in (False, True):
        p = planes.clone().requires_grad_(True)
        ood.zero_grad(set_to_none=True)
        r = render_composite(G, p, c, ood, idx, torch.Generator().manual_seed(4), resolution=8, form=form,
                             release_sample_order=release_order, fused=fused)
        (r.rgb.square().sum() + r.depth.sum() + r.ood_share.sum()).backward()
        res[fused] = (r, p.grad.clone(), ood.triplanes.grad.clone())
    (r0, g0, t0), (r1, g1, t1) = res[False], res[True]
    for name in ("rgb", "depth", "acc", "ood_share", "ood_rgb", "ood_acc"):
        torch.testing.assert_close(getattr(r1, name), getattr(r0, name), atol=FUSED_ATOL, rtol=0, msg=name)
    torch.testing.assert_close(r1.blend, r0.blend, atol=FUSED_ATOL, rtol=0)  # same sample order
    torch.testing.assert_close(g1, g0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(t1, t0, atol=1e-4, rtol=1e-4)
    skip = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=8, form=form,
                            release_sample_order=release_order, with_ood_only=False)
    assert skip.ood_rgb is None and torch.equal(skip.rgb.detach(), r1.rgb.detach())


def test_stage_a_fused_matches_plain_and_unused_work_changes_nothing(video) -> None:
    plain = _stage_a(video, _cfg(fused=False, compute_unused=True))
    fast = _stage_a(video, _cfg(fused=True))
    assert [h["frame"] for h in plain.losses] == [h["frame"] for h in fast.losses]  # same RNG stream
    for hp, hf in zip(plain.losses, fast.losses):
        assert hp.keys() == hf.keys()
        for k in hp:  # Adam normalises the tiny rounding differences of the first steps: relative 1e-3
            assert hf[k] == pytest.approx(hp[k], rel=1e-3, abs=1e-6), k
    torch.testing.assert_close(fast.ws, plain.ws, atol=1e-5, rtol=0)
    # the release's zero-weight OOD-only SR is forward-only work: bitwise no effect
    extra = _stage_a(video, _cfg(fused=True, compute_unused=True))
    assert extra.losses == fast.losses
    for k in fast.ood_state:
        assert torch.equal(extra.ood_state[k], fast.ood_state[k]), k


def test_stage_a_sr_ood_weight_adds_the_release_term(video) -> None:
    weights = LossWeights(**{**_cfg().weights.model_dump(), "sr_l2_ood": 1.0})
    res = _stage_a(video, _cfg(steps=1, weights=weights))
    rec = res.losses[0]
    assert rec["sr_l2_ood"] > 0
    terms = {k: v for k, v in rec.items() if k not in ("total", "frame")}
    expected = sum(getattr(weights, k) * v for k, v in terms.items())  # records hold unweighted terms
    assert rec["total"] == pytest.approx(expected, rel=1e-5)


def test_face_plane_cache_is_bitwise_when_w_frozen(video) -> None:
    cached = _stage_a(video, _cfg(lr_w=0.0, steps=3))
    uncached = _stage_a(video, _cfg(lr_w=0.0, steps=3, plane_cache_mb=0.0))
    assert cached.losses == uncached.losses
    for k in cached.ood_state:
        assert torch.equal(cached.ood_state[k], uncached.ood_state[k]), k
    assert torch.equal(cached.ws, video[3])  # w frozen


def test_cuda_only_switches_are_off_on_cpu(video) -> None:
    cpu = torch.device("cpu")
    assert use_amp("fp16", cpu) is None and use_amp("off", cpu) is None
    # oneDNN's native bf16 kernels make it a real switch on such CPUs; emulated bf16 would only be slower
    assert use_amp("bf16", cpu) is (torch.bfloat16 if cpu_has_native_bf16() else None)
    fn = lambda x: x + 1  # noqa: E731
    assert maybe_compile(fn, True, cpu) is fn
    base = _stage_a(video, _cfg(steps=2))
    sw = _stage_a(video, _cfg(steps=2, amp="fp16", compile=True))
    assert sw.losses == base.losses  # bitwise: both switches are no-ops on CPU


# bf16 keeps an 8-bit mantissa (~3 significant digits); a loss is a mean over many pixels, so its relative error is
# far smaller than a pixel's. Measured on tiny: <= 1e-2 relative on every term; the bound leaves margin.
BF16_REL = 5e-2
#: the fine-tuned SR weights of bf16 vs fp32 stage B (assert_close); bench/gpu_suite.py restates them
SR_STATE_ATOL, SR_STATE_RTOL = 2e-3, 5e-2
#: stage-A total loss, torch.compile vs eager (fused-kernel rounding); bench/gpu_suite.py restates it
COMPILE_REL = 1e-3


def _skip_without_bf16(device: torch.device) -> None:
    if device.type == "cpu" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: the switch falls back to fp32 (covered above)")


def test_bf16_autocast_stage_a_within_tolerance(video, device) -> None:
    _skip_without_bf16(device)
    G, frames, c, ws, masks = video
    G = build_generator("tiny").to(device)
    args = (G, frames.to(device), c.to(device), ws.to(device))
    runs = {name: run_stage_a(*args, _cfg(steps=2, **kw), torch.Generator(device).manual_seed(7),
                              masks=masks.to(device))
            for name, kw in {"fp32": {}, "bf16": {"amp": "bf16"}}.items()}
    assert runs["bf16"].losses != runs["fp32"].losses  # autocast really ran
    for hp, hf in zip(runs["fp32"].losses, runs["bf16"].losses):
        for k in ("l2", "sr_l2", "total"):
            assert hf[k] == pytest.approx(hp[k], rel=BF16_REL), k


def test_bf16_autocast_stage_b_within_tolerance(device) -> None:
    _skip_without_bf16(device)
    G, sa, frames, c = untrained_stage_a()
    G = G.to(device)
    runs = {}
    for amp in ("off", "bf16"):
        cfg = SRTuningConfig.preset("tiny-demo").model_copy(update={"epochs": 2, "amp": amp})
        losses: list[dict] = []
        sd = run_stage_b(G, sa, frames.to(device), c.to(device), cfg, torch.Generator(device).manual_seed(3),
                         progress=lambda s, n, rec: losses.append(rec))
        runs[amp] = (losses, sd)
    assert runs["bf16"][0] != runs["off"][0]
    for hp, hf in zip(runs["off"][0], runs["bf16"][0]):
        assert hf["total"] == pytest.approx(hp["total"], rel=BF16_REL)
    for k, v in runs["off"][1].items():  # the fine-tuned SR weights move the same way
        torch.testing.assert_close(runs["bf16"][1][k], v, atol=SR_STATE_ATOL, rtol=SR_STATE_RTOL, msg=k)


def test_cuda_compile_within_tolerance(video, device) -> None:
    if device.type != "cuda":
        pytest.skip("torch.compile is CUDA-only; its CPU behaviour is covered by test_cuda_only_switches_are_off_on_cpu")
    G, frames, c, ws, masks = video
    G = build_generator("tiny").to(device)
    args = (G, frames.to(device), c.to(device), ws.to(device))
    runs = {name: run_stage_a(*args, _cfg(steps=2, **kw), torch.Generator(device).manual_seed(7),
                              masks=masks.to(device))
            for name, kw in {"fp32": {}, "compile": {"compile": True}}.items()}
    for hp, hf in zip(runs["fp32"].losses, runs["compile"].losses):
        assert hf["total"] == pytest.approx(hp["total"], rel=COMPILE_REL)  # fused-kernel rounding


def test_stage_b_release_equivalent_path_equals_cached() -> None:
    G, sa, frames, c = untrained_stage_a()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    runs = {}
    for name, kw in {"release": dict(cached=False, fused=False, release_render_grad=True),
                     "fast": dict(cached=True, fused=True)}.items():
        curve = []
        cfg = SRTuningConfig.preset("tiny-demo").model_copy(update={"epochs": 2, "lr": 1e-2, **kw})
        state = run_stage_b(G, sa, frames, c, cfg, torch.Generator().manual_seed(3),
                            progress=lambda s, n, rec: curve.append(rec))
        runs[name] = (state, curve)
    (s0, c0), (s1, c1) = runs["release"], runs["fast"]
    assert [r["frame"] for r in c0] == [r["frame"] for r in c1]
    for a, b in zip(c0, c1):  # same SR inputs up to fused-render rounding
        assert b["l2"] == pytest.approx(a["l2"], rel=1e-4)
    for k in s0:
        torch.testing.assert_close(s1[k], s0[k], atol=1e-4, rtol=1e-4, msg=k)
    for k, v in G.state_dict().items():  # the release-style backward never touches the caller's G
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in G.parameters())


def test_stage_b_batched_frames_is_the_mean_of_the_frame_losses() -> None:
    from innout_core.losses import l2_loss
    from innout_core.sr_tuning import _frame_generator, sr_inputs

    G, sa, frames, c = untrained_stage_a()
    curve = []
    cfg = SRTuningConfig.preset("tiny-demo").model_copy(update={"epochs": 2, "lr": 1e-2, "batch_frames": 2})
    g = torch.Generator().manual_seed(3)
    run_stage_b(G, sa, frames, c, cfg, g, progress=lambda s, n, rec: curve.append((s, n, rec)))
    assert [(s, n) for s, n, _ in curve] == [(1, 2), (2, 2)]  # an epoch of 2 frames is one step
    # independent: the first step's loss is the mean of the two frames' L2 at the initial SR, same SR inputs
    base = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(3)))
    ood = OODField.from_state(sa.ood_state, sa.phi)
    with torch.no_grad():
        per = [l2_loss(G.superresolve(*sr_inputs(G, ood, sa, c, t, _frame_generator(base, t, c.device)),
                                      noise_mode="const").clamp(-1, 1), frames[t : t + 1]) for t in range(2)]
    assert curve[0][2]["l2"] == pytest.approx(float(sum(per) / 2), rel=1e-5)
