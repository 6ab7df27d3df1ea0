"""`dask.cluster: address` (deployments/dask-address.yaml) against a real cluster: a `dask scheduler` and two
`dask worker` processes started as separate commands, as on a cluster, sharing the run directory. One worker (its
nanny and worker process) is SIGKILLed while it runs a video; the run still completes with nothing lost. Also the
SLURM example (deployments/dask-slurm.py) builds a config innout accepts and books what the video tasks ask for."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.status import run_status
from innout_core.config import load_config
from tests.flows.conftest import FAST_CONFIG, REPO, gt_ids, stage_records, write_yaml

DASK = Path(sys.executable).with_name("dask")


def _slurm_example():
    spec = importlib.util.spec_from_file_location("dask_slurm", REPO / "deployments" / "dask-slurm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait(cond, timeout: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p in procs:
            assert p.poll() is None, f"{p.args[:3]} exited with {p.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _kill_group(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass


def test_address_configs_load(tmp_path):
    cfg = load_config(REPO / "deployments" / "dask-address.yaml")
    assert cfg.dask.cluster == "address" and cfg.dask.address.startswith("tcp://") and cfg.device == "cuda"
    slurm = _slurm_example()
    doc = slurm.address_config(slurm.BASE_CONFIG, "tcp://10.1.2.3:8786")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    got = load_config(path)
    assert got.dask.cluster == "address" and got.dask.address == "tcp://10.1.2.3:8786"
    assert got.model_dump(exclude={"dask"}) == cfg.model_dump(exclude={"dask"})


def test_slurm_example_books_the_gpu_the_tasks_ask_for(tmp_path):
    slurm = _slurm_example()
    args, rest = slurm.parse_args(["m.yaml", "--jobs", "3", "--gpus", "2", "--partition", "gpu", "--", "--run-dir",
                                   "/shared/r"])
    assert rest == ["--run-dir", "/shared/r"] and args.jobs == 3
    kw = slurm.slurm_kwargs(args)
    assert kw["processes"] == 1 and kw["queue"] == "gpu" and "account" not in kw
    assert kw["job_extra_directives"] == ["--gres=gpu:2"]
    assert kw["worker_extra_args"] == ["--resources", "GPU=2"]  # flows.dataset annotates each video with GPU=1
    assert f"export PYTHONPATH={REPO}" in " ".join(kw["job_script_prologue"])
    if importlib.util.find_spec("dask_jobqueue") is not None:  # optional: the job script SLURM would get
        from dask_jobqueue.slurm import SLURMJob

        kw["log_directory"] = str(tmp_path)  # SLURMJob creates it
        script = SLURMJob(scheduler="tcp://10.1.2.3:8786", name="w", **kw).job_script()
        assert "#SBATCH --gres=gpu:2" in script and "--resources GPU=2" in script and "#SBATCH -p gpu" in script


def test_slurm_example_without_dask_jobqueue_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # not installed, whatever this venv holds
    assert _slurm_example().main(["m.yaml"]) == 2
    assert "pip install dask-jobqueue" in capsys.readouterr().err


@pytest.mark.slow
def test_existing_cluster_survives_a_lost_worker(innout, prefect_env, gt_videos, tmp_path):
    from distributed import Client

    assert DASK.is_file(), f"{DASK}: the venv's dask command is missing"
    env = dict(prefect_env, DASK_LOGGING__DISTRIBUTED="warning")  # PREFECT_API_URL, PYTHONPATH=repo, 1 thread
    sched_file = tmp_path / "scheduler.json"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([str(DASK), *args], env=env, cwd=tmp_path, start_new_session=True,
                             stdout=(logs / f"{name}.log").open("w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sched_file))
        _wait(sched_file.exists, 90, "the scheduler file", procs)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        # --preload: the workers import the pipeline while the command starts (a cluster would keep them warm)
        workers = {name: start(name, "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                               "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--name", name,
                               "--preload", "flows.video")
                   for name in ("w0", "w1")}
        client = Client(address, timeout=60)
        try:
            ids = gt_ids(gt_videos)
            man = write_yaml(tmp_path / "m.yaml", {"name": "two", "videos": [
                {"id": v, "path": str(gt_videos / v / "frames.mp4"), "cameras": str(gt_videos / v / "cameras.npy")}
                for v in ids]})
            # one In-N-Out branch, OOD removal the only edit, no mp4s: the shortest run whose stage A is long enough to be hit
            cfg = write_yaml(tmp_path / "c.yaml", {**FAST_CONFIG, "device": "cpu", "methods": ["innout"],
                                                   "video": {"encode": False},
                                                   "edit": {"synthetic": None, "novel_view": {"enabled": False}},
                                                   "joint": {"steps": 6, "checkpoint_every": 2},
                                                   "dask": {"cluster": "address", "address": address}})
            run = tmp_path / "runs" / "two"
            proc = innout.start("run", str(man), "--config", str(cfg), "--run-dir", str(run))
            client.wait_for_workers(2, timeout=180)

            victim: list[str] = []

            def busy_worker() -> bool:  # a worker runs a video that is inside stage A: remember its name
                if not any(r.status == "running" and k[1].startswith("stage-a") for k, r in stage_records(run).items()):
                    return False
                info = client.scheduler_info(n_workers=-1)["workers"]
                victim[:] = [str(info[a]["name"]) for a, keys in client.processing().items() if keys and a in info]
                return bool(victim)

            _wait(busy_worker, 300, "a worker running stage A", [proc, *procs])
            name = victim[0]
            group = next(p for n, p in workers.items() if name.startswith(n))
            at_kill = stage_records(run)
            done_before = {k: r.output_hash for k, r in at_kill.items() if r.status == "done"}
            running = {k for k, r in at_kill.items() if r.status == "running"}
            os.killpg(group.pid, signal.SIGKILL)  # nanny and worker process: the node is gone
            group.wait(10)
            out, _ = proc.communicate(timeout=400)
            assert proc.returncode == 0, out
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1  # the lost worker stayed lost
        finally:
            client.close()

        st = run_status(run)
        assert set(st["videos"]) == set(ids)
        assert all(v["status"] == "done" for v in st["videos"].values()), st
        after = stage_records(run)
        for k, h in done_before.items():  # nothing finished before the kill was lost or redone
            assert after[k].attempts == 1 and after[k].output_hash == h, k
        assert all(after[k].status == "done" for k in running)
        if len({v for v, _ in running}) == 2:  # both videos inside a stage: the lost worker's stage ran again
            assert sorted(after[k].attempts for k in running) == [1, 2], {k: after[k].attempts for k in running}
        for v in ids:
            assert (run / "videos" / v / "metrics.parquet").stat().st_size > 0
    finally:
        for p in reversed(procs):
            _kill_group(p)
