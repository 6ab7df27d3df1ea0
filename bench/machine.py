"""What every benchmark JSON records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def machine_info() -> dict[str, Any]:
    """CPU, core count, load average now, GPU (None without CUDA), Python, torch and its threads, platform, date."""
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
