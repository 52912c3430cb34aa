"""What every bench line carries: the device's name, the versions and the thread count."""

from __future__ import annotations

import os
import platform

import torch

import cnnlab


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' for a GPU, 'AMD EPYC (2 cores)' for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({cpu_name()})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()} ({cores} cores)"


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (other work on the machine skews timings), None where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device) -> dict:
    """The fields every bench result starts with."""
    return {"device": device_name(device), "torch": torch.__version__, "cnnlab": cnnlab.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}
