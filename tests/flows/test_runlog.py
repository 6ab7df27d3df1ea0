"""The run's log file collects records of the root, Prefect and Dask loggers, and detaches afterwards."""

from __future__ import annotations

import logging

from flows.runlog import run_log


def test_run_log_collects_and_detaches(tmp_path):
    with run_log(tmp_path) as path:
        logging.getLogger("prefect.flow_runs").warning("flow warning %d", 1)
        logging.getLogger("distributed.nanny").error("worker died")
        logging.getLogger("innout.tasks").warning("stage failed: a.mp4")
    logging.getLogger("prefect").warning("after the block")
    text = path.read_text()
    assert path == tmp_path / "logs" / "innout.log"
    for needle in ("prefect.flow_runs: flow warning 1", "distributed.nanny: worker died", "stage failed: a.mp4"):
        assert text.count(needle) == 1, needle  # once, however the loggers propagate
    assert "after the block" not in text
    assert all(not isinstance(h, logging.FileHandler) or h.baseFilename != str(path)
               for name in ("", "prefect", "distributed") for h in logging.getLogger(name).handlers)
