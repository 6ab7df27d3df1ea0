"""innout on SLURM: dask-jobqueue submits one job per Dask worker (one GPU each) and `innout run` sends its videos
to them through ``dask: {cluster: address}`` (as ``deployments/dask-address.yaml``).

dask-jobqueue is not a dependency of innout; install it once into innout's venv:

    .venv/bin/pip install dask-jobqueue

Then, on the login node, from the repository (repo, venv, manifest videos and run directory on a shared filesystem,
seen at the same paths from every node):

    .venv/bin/python deployments/dask-slurm.py datasets/mine.yaml --jobs 8 --partition gpu --account myproj \\
        --walltime 24:00:00 -- --run-dir /shared/runs/mine

The Dask scheduler runs inside this process, so keep it alive for the whole run (tmux, or ``sbatch`` this command
on a CPU node). Arguments after ``--`` go to ``innout run``. A video whose worker dies (pre-emption, a node lost)
is rescheduled by Dask on another worker and resumes from its last finished stage (a SIGKILLed worker is tested in
``tests/flows/test_dask_address.py``); give jobs a walltime longer than one video. ``innout retry RUN`` needs a live
scheduler: instead, run this script again with the same manifest and ``--run-dir`` (finished stages are skipped).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "deployments" / "dask-address.yaml"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """(options of this script, arguments for ``innout run`` after ``--``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="dataset manifest YAML")
    p.add_argument("--config", type=Path, default=BASE_CONFIG,
                   help="innout config to run with (its dask section is replaced) [%(default)s]")
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs = Dask workers = videos in flight [%(default)s]")
    p.add_argument("--partition", help="SLURM partition (#SBATCH -p)")
    p.add_argument("--account", help="SLURM account (#SBATCH -A)")
    p.add_argument("--walltime", default="24:00:00", help="per job [%(default)s]")
    p.add_argument("--cores", type=int, default=8, help="CPU cores per job [%(default)s]")
    p.add_argument("--memory", default="64GB", help="memory per job [%(default)s]")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per job (one video per GPU) [%(default)s]")
    p.add_argument("--interface", help="network interface of the workers and scheduler, e.g. ib0")
    return p.parse_args(argv), rest


def slurm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster``: one worker process per job, ``--gres=gpu:N`` booked and
    advertised to Dask as the ``GPU`` resource that every innout video task asks for."""
    kw: dict[str, Any] = dict(
        cores=args.cores, memory=args.memory, processes=1, walltime=args.walltime,
        job_extra_directives=[f"--gres=gpu:{args.gpus}"],
        worker_extra_args=["--resources", f"GPU={args.gpus}"],
        job_script_prologue=[f"cd {REPO}", f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}"],
        python=sys.executable, log_directory=str(REPO / "runs" / "slurm-logs"),
    )
    for key, value in (("queue", args.partition), ("account", args.account), ("interface", args.interface)):
        if value:
            kw[key] = value
    return kw


def address_config(base: Path, address: str) -> dict[str, Any]:
    """The innout config ``base`` with its Dask section pointing at the scheduler ``address``."""
    doc = yaml.safe_load(base.read_text("utf-8")) or {}
    doc["dask"] = {"cluster": "address", "address": address}
    return doc


def main(argv: list[str] | None = None) -> int:
    """Start the SLURM cluster, run innout on it, close the cluster; returns ``innout run``'s exit code."""
    args, rest = parse_args(argv)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("error: dask-jobqueue is not installed: .venv/bin/pip install dask-jobqueue", file=sys.stderr)
        return 2
    with SLURMCluster(**slurm_kwargs(args)) as cluster:
        cluster.scale(jobs=args.jobs)
        print(f"scheduler {cluster.scheduler_address}; {args.jobs} SLURM job(s) submitted", file=sys.stderr)
        fd, cfg = tempfile.mkstemp(prefix="innout-slurm-", suffix=".yaml")
        try:
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(address_config(args.config, cluster.scheduler_address), f, sort_keys=False)
            innout = Path(sys.executable).with_name("innout")
            return subprocess.call([str(innout), "run", str(args.manifest), "--config", cfg, *rest])
        finally:
            os.unlink(cfg)


if __name__ == "__main__":
    sys.exit(main())
