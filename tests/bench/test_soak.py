"""bench/soak.py, small: one video through a seeded schedule of every fault kind (worker and command kills,
deleted / truncated / altered outputs of done and pending stages, a full disk on one write) ends done, equal to a
clean run, with no leftover process and no stale lock."""

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
    assert not set(a[0]) & set(soak.ON_FILES)  # nothing to damage before the first command
    assert all(r.count("command_kill") <= 1 and r.count("disk_full") <= 1 for r in a)


def test_small_soak_ends_equal_to_a_clean_run(soak, prefect_env, tmp_path):  # noqa: F811
    r = soak.run_soak(tmp_path, videos=1, frames=2, workers=1, faults=9, seed=1, max_reruns=3,
                      api_url=prefect_env["PREFECT_API_URL"], throughput=False, config={"methods": ["w"]})
    assert r["videos_lost"] == [] and r["verify_exit"] == 0, r["commands"]
    assert r["reruns_to_done"] is not None and r["reruns_to_done"] <= 3, r["commands"]
    assert r["results_differing"] == 0 and r["comparison"]["files_compared"] > 5, r["comparison"]
    assert r["leftover_processes"] == [] and r["stale_locks"] == 0
    # one short video leaves little to hit: a worker kill needs a running stage, a pending-stage fault a file of a
    # stage that is not done; the command kill and the full disk always land
    assert r["faults_by_kind"]["command_kill"] == 1 and r["faults_by_kind"]["disk_full"] == 1, r["faults"]
    assert r["faults_applied"] >= 5, r["faults"]
