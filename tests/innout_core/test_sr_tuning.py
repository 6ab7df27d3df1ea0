"""Stage B: cached == uncached loss curve with per-frame seeds, G untouched, bitwise resume, input checks."""

from __future__ import annotations

import pytest
import torch

from innout_core.checkpointing import Checkpointer
from innout_core.errors import BadInputError
from innout_core.sr_tuning import SRTuningConfig, run_stage_b, stage_b_fingerprint
from tests.innout_core.tiny_video import untrained_stage_a


@pytest.fixture(scope="module")
def setup():
    """Tiny generator, 2 frames, a stage-A result with a random (untrained) OOD field at neural resolution 16."""
    return untrained_stage_a()


def _cfg(**kw) -> SRTuningConfig:
    return SRTuningConfig.preset("tiny-demo").model_copy(update={"epochs": 1, "lr": 1e-2, **kw})


def _run(G, sa, frames, c, cfg, seed=3, **kw):
    curve = []
    state = run_stage_b(G, sa, frames, c, cfg, torch.Generator().manual_seed(seed),
                        progress=lambda s, n, l: curve.append(l), **kw)
    return state, curve


def test_cached_equals_uncached_with_per_frame_seeds(setup) -> None:
    G, sa, frames, c = setup
    before = {k: v.clone() for k, v in G.superresolution.state_dict().items()}
    s1, curve1 = _run(G, sa, frames, c, _cfg(epochs=2, cached=True))
    s2, curve2 = _run(G, sa, frames, c, _cfg(epochs=1, cached=False))
    assert len(curve1) == 4 and len(curve2) == 2
    assert curve1[:2] == curve2  # same frames, same samples, same updates -> identical loss curve
    assert curve1[0]["l2"] > 0
    # G itself is never modified; the returned SR state is
    for k, v in G.superresolution.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(s1[k], before[k]) for k in before)
    # the release's per-step fresh samples give different SR inputs (hence a different curve)
    _, curve3 = _run(G, sa, frames, c, _cfg(epochs=1, cached=False, per_frame_seeds=False))
    assert [r["frame"] for r in curve3] == [r["frame"] for r in curve2] and curve3 != curve2


def test_resume_bitwise(setup, tmp_path) -> None:
    G, sa, frames, c = setup
    cfg = _cfg(epochs=2, checkpoint_every=2)
    ref, curve = _run(G, sa, frames, c, cfg)
    fp = stage_b_fingerprint(sa, frames, c, cfg)

    def kill(step, total, losses):
        if step == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage_b(G, sa, frames, c, cfg, torch.Generator().manual_seed(3),
                    checkpoint=Checkpointer(tmp_path, 2, fp), progress=kill)
    res, curve2 = _run(G, sa, frames, c, cfg, seed=999, checkpoint=Checkpointer(tmp_path, 2, fp))
    for k in ref:
        assert torch.equal(res[k], ref[k]), k
    assert curve2 == curve[2:]


def test_bad_inputs(setup) -> None:
    G, sa, frames, c = setup
    with pytest.raises(BadInputError, match="cameras"):
        run_stage_b(G, sa, frames, c[:1], _cfg(), torch.Generator())
    with pytest.raises(BadInputError, match="latents"):
        run_stage_b(G, sa, frames[:1], c[:1], _cfg(), torch.Generator())
    with pytest.raises(BadInputError):
        SRTuningConfig.preset("nope")
    assert SRTuningConfig.preset("official").epochs == 100 and SRTuningConfig.preset("official").lr == 1e-3


def test_paper_reduction_sums_the_l2_over_pixels(setup) -> None:
    """Paper Eq. 9 sums the squared error over the 3*H*W pixel values; the release averages it (same first step)."""
    G, sa, frames, c = setup
    assert SRTuningConfig.preset("paper").reduction == "sum" and SRTuningConfig.preset("official").reduction == "mean"
    _, cs = _run(G, sa, frames, c, _cfg(reduction="sum"))
    _, cm = _run(G, sa, frames, c, _cfg(reduction="mean"))
    H = frames.shape[-1]
    assert cs[0]["frame"] == cm[0]["frame"]
    assert cs[0]["l2"] == pytest.approx(cm[0]["l2"] * 3 * H * H, rel=1e-5)
