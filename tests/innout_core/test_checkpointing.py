"""Checkpointer: atomic saves, keep-last-2, fingerprint refusal, RNG round trip, bitwise resume of a toy loop."""

from __future__ import annotations

import pytest
import torch

from innout_core.checkpointing import Checkpointer, make_fingerprint, rng_state, set_rng_state
from innout_core.errors import CheckpointError


def test_rng_state_round_trip() -> None:
    g = torch.Generator().manual_seed(3)
    torch.rand(5, generator=g)
    s = rng_state(g)
    a = torch.rand(7, generator=g)
    h = torch.Generator().manual_seed(999)
    set_rng_state(h, s)
    assert torch.equal(torch.rand(7, generator=h), a)


def test_save_every_keep_two_and_latest(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck", every=3, fingerprint="abc")
    assert ck.latest() is None
    calls = []

    def state_at(i):
        def f():
            calls.append(i)
            return {"x": torch.full((2,), float(i)), "i": i}
        return f

    saved = [ck.maybe_save(i, state_at(i)) for i in range(1, 11)]
    assert saved == [i % 3 == 0 for i in range(1, 11)]
    assert calls == [3, 6, 9]  # state() only evaluated when a save happens
    assert ck.steps() == [6, 9]  # keep last 2
    assert ck.maybe_save(10, state_at(10), force=True)
    assert ck.steps() == [9, 10]
    st = ck.latest()
    assert st["step"] == 10 and st["i"] == 10 and torch.equal(st["x"], torch.full((2,), 10.0))
    # no temp files left behind
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["ckpt-00000009.pt", "ckpt-00000009.pt.sha256",
                                                                  "ckpt-00000010.pt", "ckpt-00000010.pt.sha256"]


def test_fingerprint_mismatch_refused(tmp_path) -> None:
    Checkpointer(tmp_path, every=1, fingerprint=make_fingerprint(torch.ones(3), {"lr": 1e-3})).maybe_save(
        1, lambda: {"a": 1})
    other = Checkpointer(tmp_path, every=1, fingerprint=make_fingerprint(torch.zeros(3), {"lr": 1e-3}))
    with pytest.raises(CheckpointError, match="other inputs or config"):
        other.latest()
    same = Checkpointer(tmp_path, every=1, fingerprint=make_fingerprint(torch.ones(3), {"lr": 1e-3}))
    assert same.latest()["a"] == 1


def test_fingerprint_sensitivity() -> None:
    base = make_fingerprint(torch.arange(4.0), {"steps": 10, "w": [1, 2]})
    assert base == make_fingerprint(torch.arange(4.0), {"w": [1, 2], "steps": 10})  # key order irrelevant
    assert base != make_fingerprint(torch.arange(4.0), {"steps": 11, "w": [1, 2]})
    assert base != make_fingerprint(torch.arange(4.0).double(), {"steps": 10, "w": [1, 2]})
    x = torch.arange(4.0)
    x[2] = 2.0000002
    assert base != make_fingerprint(x, {"steps": 10, "w": [1, 2]})


def test_corrupt_newest_falls_back_and_all_corrupt_errors(tmp_path) -> None:
    ck = Checkpointer(tmp_path, every=1, fingerprint="f")
    ck.maybe_save(1, lambda: {"v": 1})
    ck.maybe_save(2, lambda: {"v": 2})
    ck.path(2).write_bytes(b"garbage")
    assert ck.latest()["v"] == 1
    ck.path(1).write_bytes(b"garbage too")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        ck.latest()


def test_failed_state_leaves_previous_checkpoint(tmp_path) -> None:
    ck = Checkpointer(tmp_path, every=1, fingerprint="f")
    ck.maybe_save(1, lambda: {"v": 1})

    def boom():
        raise RuntimeError("killed while building state")

    with pytest.raises(RuntimeError):
        ck.maybe_save(2, boom)
    assert ck.steps() == [1] and ck.latest()["v"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001.pt", "ckpt-00000001.pt.sha256"]


def _toy_train(ck: Checkpointer | None, total: int, stop_at: int | None = None) -> torch.Tensor:
    """A tiny stochastic Adam loop that resumes from ``ck``; returns the final parameter."""
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8, generator=g))
    opt = torch.optim.Adam([p], lr=0.1)
    start = 0
    if ck is not None and (st := ck.latest()) is not None:
        with torch.no_grad():
            p.copy_(st["p"])
        opt.load_state_dict(st["opt"])
        set_rng_state(g, st["rng"])
        start = st["step"]
    for step in range(start, total):
        if stop_at is not None and step == stop_at:
            return p.detach()
        noise = torch.randn(8, generator=g)
        loss = ((p - noise) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ck is not None:
            ck.maybe_save(step + 1, lambda: {"p": p.detach().clone(), "opt": opt.state_dict(), "rng": rng_state(g)})
    return p.detach()


def test_toy_resume_bitwise(tmp_path) -> None:
    ref = _toy_train(None, 10)
    ck = Checkpointer(tmp_path, every=4, fingerprint="toy")
    _toy_train(ck, 10, stop_at=6)  # "killed" after step 6, last checkpoint at 4
    assert ck.latest()["step"] == 4
    resumed = _toy_train(Checkpointer(tmp_path, every=4, fingerprint="toy"), 10)
    assert torch.equal(resumed, ref)


def test_damaged_checkpoint_is_skipped_for_the_previous_one(tmp_path):
    """A checkpoint altered after it was written (same size, one byte) is not resumed from: its sha256 differs."""
    ck = Checkpointer(tmp_path, every=1, fingerprint="f")
    for step in (1, 2):
        ck.maybe_save(step, lambda step=step: {"x": torch.full((4,), float(step))})
    newest = ck.path(2)
    data = bytearray(newest.read_bytes())
    data[-40] ^= 0xFF
    newest.write_bytes(bytes(data))
    assert ck.latest()["step"] == 1
    ck.path(1).write_bytes(ck.path(1).read_bytes()[:50])  # truncated too: none readable
    with pytest.raises(CheckpointError, match="sha256 differs"):
        ck.latest()


@pytest.mark.parametrize("damage", ["delete", "empty"])
def test_checkpoint_without_its_sha256_is_not_resumed(tmp_path, damage):
    """A checkpoint whose sha256 file is gone (deleted or emptied) is skipped for the previous one: torch.load checks
    no checksum, so one byte altered as well would resume from another number (the soak's two faults on one
    stage's files: delete or truncate the sidecar, alter the checkpoint)."""
    ck = Checkpointer(tmp_path, every=1, fingerprint="f")
    for step in (1, 2):
        ck.maybe_save(step, lambda step=step: {"x": torch.full((4,), float(step))})
    newest = ck.path(2)
    sidecar = newest.with_name(newest.name + ".sha256")
    sidecar.unlink() if damage == "delete" else sidecar.write_bytes(b"")
    data = bytearray(newest.read_bytes())
    i = data.index(torch.full((4,), 2.0).numpy().tobytes())  # the tensor's bytes: 2.0 -> another float
    data[i + 3] ^= 0x01
    newest.write_bytes(bytes(data))
    st = ck.latest()
    assert st["step"] == 1 and torch.equal(st["x"], torch.full((4,), 1.0))
