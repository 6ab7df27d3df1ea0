"""`prefect deploy` of deployments/prefect.yaml registers the three deployments with their schedule, and a process
worker executes a `tables` run from it (against the session's local server)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from innout_core import store
from tests.flows.conftest import REPO

pytestmark = pytest.mark.slow

_QUERY = """
import asyncio, json, sys
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as c:
        if sys.argv[1] == "deployments":
            out = {}
            for d in await c.read_deployments():
                flow = await c.read_flow(d.flow_id)
                out[f"{flow.name}/{d.name}"] = {"crons": [getattr(s.schedule, "cron", None) for s in d.schedules],
                                                 "pool": d.work_pool_name, "parameters": d.parameters}
            print(json.dumps(out))
        else:
            r = await c.read_flow_run(sys.argv[2])
            print(json.dumps({"state": r.state.type.value, "message": r.state.message}))
asyncio.run(main())
"""


def _run(env, *args: str, timeout: float = 180) -> str:
    p = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _metrics_run(run) -> None:
    for vid in ("a", "b"):
        rows = [dict(run=run.name, video=vid, method=m, variant="", mode="video", frame=i, edit="", lpips=None,
                     ssim=0.5 + i / 10, psnr=20.0 + i + (m == "w+"), id_sim=None, id_sim_edit=None, seconds=2.0,
                     reason="lpips: no weights") for m in ("w", "w+") for i in range(2)]
        store.write_metrics(store.metrics_path(run, vid), rows, {"psnr": "dB", "ssim": "window 11"})


def test_deploy_registers_and_worker_runs_tables(prefect_env, tmp_path):
    env = dict(prefect_env)
    prefect = str(REPO / ".venv" / "bin" / "prefect") if (REPO / ".venv/bin/prefect").exists() else "prefect"
    _run(env, prefect, "work-pool", "create", "process", "--type", "process", "--overwrite")
    _run(env, prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", timeout=240)
    deps = json.loads(_run(env, sys.executable, "-c", _QUERY, "deployments"))
    assert {"dataset/dataset-run", "tables/tables", "retry-failed/retry-failed"} <= set(deps)
    assert deps["dataset/dataset-run"]["crons"] == ["0 2 * * *"]
    assert all(d["pool"] == "process" for d in deps.values())
    assert {"manifest", "config"} <= set(deps["dataset/dataset-run"]["parameters"])

    run = tmp_path / "runs" / "dep"
    _metrics_run(run)
    out = _run(env, prefect, "deployment", "run", "tables/tables", "--param", f"run_dir={run}")
    flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    worker = subprocess.Popen([prefect, "worker", "start", "--pool", "process", "--run-once"], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = worker.communicate(timeout=240)
    finally:
        if worker.poll() is None:
            import os
            import signal

            os.killpg(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        state = json.loads(_run(env, sys.executable, "-c", _QUERY, "run", flow_run_id))
        if state["state"] in ("COMPLETED", "FAILED", "CRASHED") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert state["state"] == "COMPLETED", (state, log[-3000:])
    assert (run / "tables" / "tables.md").is_file() and "PSNR" in (run / "tables" / "tables.md").read_text()
