"""W / W+ / PTI inversion on the `tiny` generator: schedule, initialisation, convergence, resume, PTI."""

from __future__ import annotations

import math

import pytest
import torch

from innout_core.checkpointing import Checkpointer
from innout_core.eg3d.configs import build_generator
from innout_core.errors import BadInputError, CheckpointError
from innout_core.inversion import (
    InversionConfig,
    frontal_label,
    initial_latents,
    invert_video,
    inversion_fingerprint,
    lr_factor,
    render_inversion,
)


@pytest.fixture(scope="module")
def G():
    return build_generator("tiny").requires_grad_(False)


@pytest.fixture(scope="module")
def target(G):
    """Two frames rendered from one known latent at two cameras (what W+ must recover)."""
    from innout_core.eg3d.camera import orbit_labels

    g = torch.Generator().manual_seed(11)
    cams = orbit_labels(4, 0.2, 0.1)[:2]
    ws = G.mapping(torch.randn(1, G.z_dim, generator=g), frontal_label(G), truncation_psi=0.7).repeat(2, 1, 1)
    with torch.no_grad():
        frames = G.synthesis(ws, cams, noise_mode="const", generator=g).image
    return frames, cams


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / (a - b).square().mean()))


def _cfg(method: str, **kw) -> InversionConfig:
    base = dict(steps=4, init_samples=2, init_stride=1, lr=3e-2, lr_schedule="constant")  # no warm-up in 4 steps
    base.update(kw)
    return InversionConfig.preset("tiny-demo", method).model_copy(update=base)


def test_lr_schedule_official_formula():
    # hand values: t = e/E, r = min(1, (1-t)/0.25) -> 1/2 - 1/2 cos(pi r), times min(1, t/0.05)
    assert lr_factor(0, 100, 0.05, 0.25) == 0.0
    assert lr_factor(1, 100, 0.05, 0.25) == pytest.approx(0.2)
    assert lr_factor(50, 100, 0.05, 0.25) == pytest.approx(1.0)
    assert lr_factor(90, 100, 0.05, 0.25) == pytest.approx(0.5 - 0.5 * math.cos(math.pi * 0.4))


def test_presets_and_defaults():
    d = InversionConfig()
    assert InversionConfig.preset("paper", "w+") == d  # documented default = paper
    assert (d.steps, d.lr, d.lambda_delta, d.delta_form) == (200, 1e-3, 1e-3, "paper")
    off = InversionConfig.preset("official", "pti")
    assert (off.steps, off.lr, off.residual_weight, off.delta_form, off.pti_locality) == (500, 5e-3, 0.7, "official", True)
    tiny = InversionConfig.preset("tiny-demo", "w")
    assert tiny.method == "w" and tiny.lambda_lpips == 0 and tiny.pti_lambda_lpips == 0 and tiny.init_metric == "l2"
    assert (tiny.steps, tiny.lr, tiny.lr_schedule, tiny.pti_steps) == (40, 3e-2, "official", 10)  # measured by
    # bench/ground_truth.py (lr, schedule) and on the demo's videos (40 epochs: the masked fit's best)
    with pytest.raises(BadInputError):
        InversionConfig.preset("nope", "w")


def test_init_single_sample_is_the_mapped_draw(G, target):
    frames, cams = target
    cfg = _cfg("w+", init_samples=1)
    best, score = initial_latents(G, frames, cams, cfg, torch.Generator().manual_seed(5))
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5))
    ref = G.mapping(z, frontal_label(G), truncation_psi=1.0)
    torch.testing.assert_close(best, ref.expand(2, -1, -1))
    assert score.shape == (2,) and bool((score > 0).all())


def test_wplus_improves_and_w_rows_equal(G, target):
    frames, cams = target
    cfg = _cfg("w+", lr=1e-2)
    res = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0))
    assert res.ws.shape == (2, G.num_ws, G.w_dim) and res.generator_state is None and len(res.losses) == 4
    rec = render_inversion(G, res, cams, torch.Generator().manual_seed(1))
    assert rec.shape == frames.shape and float(rec.abs().max()) <= 1
    init, _ = initial_latents(G, frames, cams, cfg, torch.Generator().manual_seed(0))  # the same first draws
    start = render_inversion(G, res.__class__(init, init[:1], None, [], 0.0), cams, torch.Generator().manual_seed(1))
    assert _psnr(rec, frames.clamp(-1, 1)) > _psnr(start, frames.clamp(-1, 1)) + 0.1
    resw = invert_video(G, frames[:1], cams[:1], _cfg("w", steps=1, init_samples=1), torch.Generator().manual_seed(0))
    assert torch.equal(resw.ws, resw.ws[:, :1].expand_as(resw.ws))
    assert resw.w_canonical.shape == (1, G.num_ws, G.w_dim)


def test_checkpoint_resume_is_bitwise_identical(G, target, tmp_path):
    frames, cams = target[0][:1], target[1][:1]
    cfg = _cfg("w+", steps=3)
    full = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0))

    class Kill(Exception):
        pass

    def killer(step, total, losses):
        if step == 2:
            raise Kill

    fp = inversion_fingerprint(frames, cams, cfg, 0)
    ck = Checkpointer(tmp_path / "ck", every=1, fingerprint=fp)
    with pytest.raises(Kill):
        invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0), checkpoint=ck, progress=killer)
    assert ck.steps() == [0, 1]
    resumed = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(123), checkpoint=ck)
    assert torch.equal(resumed.ws, full.ws) and resumed.losses == full.losses
    other = Checkpointer(tmp_path / "ck", every=2, fingerprint=inversion_fingerprint(frames, cams, _cfg("w"), 0))
    with pytest.raises(CheckpointError):
        invert_video(G, frames, cams, _cfg("w"), torch.Generator().manual_seed(0), checkpoint=other)


def test_pti_tunes_a_copy_and_beats_its_pivots(G, target):
    frames, cams = target[0][:1], target[1][:1]
    before = {k: v.clone() for k, v in G.state_dict().items()}
    cfg = _cfg("pti", steps=1, pti_steps=3, pti_lr=2e-3, pti_locality=True, locality_samples=1)
    seen = []
    res = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0), progress=lambda s, t, d: seen.append(d))
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # frozen G untouched
    assert res.generator_state is not None and "locality" in seen[-1] and len(seen) == 4
    pivots = render_inversion(G, res.__class__(res.ws, res.w_canonical, None, [], 0.0), cams, torch.Generator().manual_seed(1))
    tuned = render_inversion(G, res, cams, torch.Generator().manual_seed(1))
    assert _psnr(tuned, frames) > _psnr(pivots, frames)


def test_pti_from_pivot_equals_full_pti(G, target):
    """PTI on a given W+ pivot == PTI that runs the same W+ itself (same RNG stream after the latent phase)."""
    frames, cams = target[0][:1], target[1][:1]
    cfg = _cfg("pti", steps=1, pti_steps=1, pti_lr=2e-3)
    full = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    wplus = invert_video(G, frames, cams, cfg.model_copy(update={"method": "w+"}), g)
    tuned = invert_video(G, frames, cams, cfg, g, pivot=wplus)  # g continues where the W+ run left it
    assert torch.equal(tuned.ws, wplus.ws) and torch.equal(tuned.ws, full.ws)
    assert tuned.losses == full.losses and len(tuned.losses) == 1 + 1
    assert all(torch.equal(tuned.generator_state[k], v) for k, v in full.generator_state.items())
    with pytest.raises(BadInputError, match="only used by PTI"):
        invert_video(G, frames, cams, cfg.model_copy(update={"method": "w+"}), g, pivot=wplus)
    with pytest.raises(BadInputError, match="pivot"):
        invert_video(G, frames, cams, cfg, g, pivot=tuned)


def test_bad_inputs(G, target):
    frames, cams = target
    with pytest.raises(BadInputError, match="frames must be"):
        invert_video(G, frames[:, :, :64], cams, _cfg("w"), torch.Generator())
    with pytest.raises(BadInputError, match="cameras must be"):
        invert_video(G, frames, cams[:1], _cfg("w"), torch.Generator())


#: bf16 vs fp32 inversion: losses (relative) and the cosine of the two latent moves; bench/gpu_suite.py restates them
BF16_LOSS_REL, BF16_MOVE_COS = 1e-1, 0.97


@pytest.mark.parametrize("method", ["w+", "pti"])
def test_bf16_autocast_within_tolerance(G, target, method):
    from innout_core.precision import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: amp falls back to fp32")
    frames, cams = target
    runs = {amp: invert_video(G, frames, cams, _cfg(method, steps=3, pti_steps=2, amp=amp),
                              torch.Generator().manual_seed(0)) for amp in ("off", "bf16")}
    assert runs["bf16"].losses != runs["off"].losses  # autocast really ran
    # Adam at lr 3e-2 turns bf16's small gradient differences into sign-level step differences on near-zero
    # entries, so single latents may differ by a step; the losses (measured <= 4.5 %) and the direction of the
    # whole latent update (measured cosine 0.994) must agree.
    assert runs["bf16"].losses == pytest.approx(runs["off"].losses, rel=BF16_LOSS_REL)
    init, _ = initial_latents(G, frames, cams, _cfg(method), torch.Generator().manual_seed(0))
    moves = [(r.ws - init.mean(0, keepdim=True)).flatten() for r in (runs["off"], runs["bf16"])]
    assert torch.nn.functional.cosine_similarity(*moves, dim=0) > BF16_MOVE_COS
    assert InversionConfig.preset("fast").amp == "bf16" and InversionConfig().amp == "off"


def test_official_conditions_the_init_with_the_release_focal(G, target):
    frames, cams = target
    off = InversionConfig.preset("official", "w+")
    assert off.cond_focal == 4.4652 and InversionConfig().cond_focal == 4.2647
    assert float(frontal_label(G, 1, 4.4652)[0, 16]) == pytest.approx(4.4652)
    cfg = _cfg("w+", init_samples=1, cond_focal=4.4652)
    best, _ = initial_latents(G, frames, cams, cfg, torch.Generator().manual_seed(5))
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = G.mapping(z, frontal_label(G, 1, 4.4652), truncation_psi=1.0)
        other = G.mapping(z, frontal_label(G), truncation_psi=1.0)
    torch.testing.assert_close(best, ref.expand(2, -1, -1))
    assert (ref - other).abs().max() > 1e-4  # the tiny generator is conditioned: the focal matters


def test_subset_pass_sets_the_canonical_latent(G, target):
    """Release protocol: invert a subset first, then every frame from its canonical latent with zero residuals
    (with 0 epochs of the full pass, every frame's latent is the subset's canonical latent)."""
    frames, cams = torch.cat([target[0], target[0]]), torch.cat([target[1], target[1].flip(0)])
    assert InversionConfig.preset("official", "w+").subset_frames == 16
    cfg = _cfg("w+", subset_frames=2, subset_steps=3, steps=0)
    res = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0))
    sub = invert_video(G, frames[[0, 3]], cams[[0, 3]], _cfg("w+", steps=3), torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.ws, sub.w_canonical.expand(4, -1, -1), atol=0, rtol=0)
    assert not torch.equal(sub.w_canonical, sub.ws[:1])  # the subset pass did learn per-frame residuals


# ---------------------------------------------------------------------------------------------- masked fit


def test_masked_photometric_against_a_pixel_loop():
    """The official masked branch: sum over channels and masked pixels of the squared error (and of the LPIPS map),
    divided by the number of masked pixels; checked against an explicit loop over pixels."""
    from innout_core.inversion import masked_photometric

    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 5, 4, generator=g) * 2 - 1, torch.rand(2, 3, 5, 4, generator=g) * 2 - 1
    m = (torch.rand(2, 1, 5, 4, generator=g) > 0.4).float()
    lp = torch.rand(2, 1, 5, 4, generator=g)
    l2, lpv = masked_photometric(x, y, m, lp)
    for n in range(2):
        num = den = lnum = 0.0
        for i in range(5):
            for j in range(4):
                if m[n, 0, i, j] == 1:
                    den += 1
                    lnum += float(lp[n, 0, i, j])
                    num += sum(float(x[n, c, i, j] - y[n, c, i, j]) ** 2 for c in range(3))
        assert float(l2[n]) == pytest.approx(num / den, rel=1e-6)
        assert float(lpv[n]) == pytest.approx(lnum / den, rel=1e-6)
    ones = torch.ones_like(m)
    full, _ = masked_photometric(x, y, ones)
    plain, none = masked_photometric(x, y, None)
    torch.testing.assert_close(full, 3 * plain)  # an all-ones mask: 3x the plain MSE (summed over channels)
    assert none is None
    empty, _ = masked_photometric(x, y, torch.zeros_like(m))
    assert torch.equal(empty, torch.zeros(2))


@pytest.mark.parametrize("extra", [{}, {"subset_frames": 2, "subset_steps": 2}, {"method": "pti", "pti_steps": 2,
                                                                                   "pti_lr": 2e-3}])
def test_masked_fit_ignores_the_masked_out_pixels(G, target, extra):
    """A masked fit of frames whose masked-out region is noise equals the masked fit of the clean frames: nothing
    outside the face region reaches the latents, in the initial search, the subset pass, W+ and PTI."""
    frames, cams = torch.cat([target[0], target[0]]), torch.cat([target[1], target[1].flip(0)])
    H = frames.shape[-1]
    masks = torch.ones(4, 1, H, H)
    masks[:, :, H // 4 : H // 2, H // 3 :] = 0  # a block occluder
    masks[1, :, :, : H // 5] = 0
    noisy = torch.where(masks.bool().expand_as(frames), frames, torch.rand(frames.shape, generator=torch.Generator()
                                                                           .manual_seed(9)) * 2 - 1)
    method = extra.get("method", "w+")
    cfg = _cfg(method, steps=2, init_samples=3, **{k: v for k, v in extra.items() if k != "method"})
    clean = invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0), masks=masks)
    dirty = invert_video(G, noisy, cams, cfg, torch.Generator().manual_seed(0), masks=masks)
    assert torch.equal(clean.ws, dirty.ws) and clean.losses == dirty.losses
    if method == "pti":
        assert all(torch.equal(clean.generator_state[k], v) for k, v in dirty.generator_state.items())
    unmasked = invert_video(G, noisy, cams, cfg, torch.Generator().manual_seed(0))
    assert not torch.equal(unmasked.ws, dirty.ws)  # without the mask the noise does pull the latents


def test_masked_init_scores_the_face_region_only(G, target):
    frames, cams = target
    H = frames.shape[-1]
    masks = torch.ones(2, 1, H, H)
    masks[:, :, : H // 2] = 0
    cfg = _cfg("w+", init_samples=4)
    noisy = frames.clone()
    noisy[:, :, : H // 2] = 1.0  # a white occluder over the top half
    a, sa = initial_latents(G, frames, cams, cfg, torch.Generator().manual_seed(2), masks=masks)
    b, sb = initial_latents(G, noisy, cams, cfg, torch.Generator().manual_seed(2), masks=masks)
    assert torch.equal(a, b) and torch.equal(sa, sb)


def test_bad_masks_are_refused(G, target):
    frames, cams = target
    H = frames.shape[-1]
    cfg = _cfg("w+", steps=1)
    for bad, match in [(torch.ones(2, 1, H, H // 2), r"masks must be \[2, 1"), (torch.ones(1, 1, H, H), "one per frame"),
                       (torch.full((2, 1, H, H), 2.0), r"in \[0, 1\]"), (torch.zeros(2, 1, H, H), "no face pixel"),
                       (torch.full((2, 1, H, H), float("nan")), "finite")]:
        with pytest.raises(BadInputError, match=match):
            invert_video(G, frames, cams, cfg, torch.Generator().manual_seed(0), masks=bad)


def test_masks_enter_the_fingerprint(target):
    frames, cams = target
    H = frames.shape[-1]
    cfg = _cfg("w+")
    plain = inversion_fingerprint(frames, cams, cfg, 0)
    assert plain == inversion_fingerprint(frames, cams, cfg, 0, None)  # unmasked fits keep their fingerprint
    m1, m2 = torch.ones(2, 1, H, H), torch.ones(2, 1, H, H)
    m2[0, 0, 0, 0] = 0
    assert len({plain, inversion_fingerprint(frames, cams, cfg, 0, m1), inversion_fingerprint(frames, cams, cfg, 0, m2)}) == 3
