"""bench/soak.py, small: one video through a seeded schedule of every fault kind (worker and command kills,
deleted / truncated / altered outputs of done stages and files of stages not done, a full disk on one write) ends
done, equal to a clean run, with no leftover process and no stale lock."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import load_script
from tests.flows.conftest import prefect_env  # noqa: F401 - the session's Prefect server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def soak():
    return load_script(REPO / "bench" / "soak.py", "bench_soak")


def test_schedule_covers_every_kind_and_is_seeded(soak):
    a, b = soak.schedule(random.Random(3), 24), soak.schedule(random.Random(3), 24)
    assert a == b and sum(len(r) for r in a) == 24
    flat = [k for r in a for k in r]
    assert {flat.count(k) for k in soak.KINDS} <= {2, 3}  # balanced passes over every kind
    assert not set(a[0]) & set(soak.DONE)  # no done stage to damage before the first command
    assert all(r.count("command_kill") <= 1 and r.count("disk_full") <= 1 for r in a)
    # one pending-stage fault per round from round 0 on: each such round stops its command mid-stage
    assert all(sum(k in soak.PENDING for k in r) <= 1 for r in a) and set(a[0]) & set(soak.PENDING)


def test_pending_candidates_are_files_of_stages_not_done(soak, tmp_path):
    """A pending-stage fault picks among the files of a stage whose record is not done (its record and temp files
    excepted), never a done stage's; truncation and alteration skip empty files."""
    from innout_core.store import StageRecord, write_record

    run = tmp_path / "run"
    done, running = run / "videos" / "v" / "frames", run / "videos" / "v" / "invert-w"
    (done / "png").mkdir(parents=True)
    (done / "png" / "f0.png").write_bytes(b"png")
    write_record(done, StageRecord(stage="frames", video="v", status="done", outputs={"png": "png"}))
    (running / "ckpt").mkdir(parents=True)
    for name, data in (("ckpt/ckpt-00000002.pt", b"state"), ("ckpt/ckpt-00000002.pt.sha256", b"ab"),
                       ("progress.json", b""), (".result.1234abcd.tmp.safetensors", b"partial")):
        (running / name).write_bytes(data)
    write_record(running, StageRecord(stage="invert-w", video="v", status="running"))
    rel = lambda ps: sorted(p.relative_to(running).as_posix() for p in ps)  # noqa: E731
    assert rel(soak.fault_candidates(run, "delete_pending")) == [
        "ckpt/ckpt-00000002.pt", "ckpt/ckpt-00000002.pt.sha256", "progress.json"]
    assert rel(soak.fault_candidates(run, "alter_pending")) == ["ckpt/ckpt-00000002.pt",
                                                                "ckpt/ckpt-00000002.pt.sha256"]


def test_small_soak_ends_equal_to_a_clean_run(soak, prefect_env, tmp_path):  # noqa: F811
    r = soak.run_soak(tmp_path, videos=1, frames=2, workers=1, faults=9, seed=1, max_reruns=3,
                      api_url=prefect_env["PREFECT_API_URL"], throughput=False, config={"methods": ["w"]})
    assert r["videos_lost"] == [] and r["verify_exit"] == 0, r["commands"]
    assert r["reruns_to_done"] is not None and r["reruns_to_done"] <= 3, r["commands"]
    assert r["results_differing"] == 0 and r["comparison"]["files_compared"] > 5, r["comparison"]
    assert r["leftover_processes"] == [] and r["stale_locks"] == 0
    by_kind = r["faults_by_kind"]
    assert all(v["scheduled"] == 1 for v in by_kind.values()), by_kind
    # the command kill, the full disk, and every file fault land, those on stages not done included: each
    # pending-stage round stops its command while a stage runs with a fresh checkpoint, then damages its files
    for kind in ("command_kill", "disk_full", *soak.DONE, *soak.PENDING):
        assert by_kind[kind]["applied"] == 1, (kind, r["faults"])
    pending = [f for f in r["faults"] if f["kind"] in soak.PENDING]
    assert all(f["target"].startswith("videos/") for f in pending), pending
    assert r["faults_applied"] >= 8, r["faults"]  # a worker kill needs a running stage when it fires
