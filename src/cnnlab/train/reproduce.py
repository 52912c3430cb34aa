"""Reproducibility and hardware: the device choice, seeding, and every RNG's state for an exact resume."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from cnnlab.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit device that is absent is a ConfigError.

    Args:
        name: auto | cpu | cuda | cuda:N | mps.
    """
    mps = _mps_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}': use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but this torch sees no CUDA GPU (CPU-only build "
                          f"or no driver): use --device auto or --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not mps:
        raise ConfigError(f"device '{name}' was asked for but MPS (Apple GPU) is not available: use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device '{name}' is not supported: use auto, cpu, cuda or mps")
    return device


_deterministic_by_us = False  # whether a deterministic run switched torch's global flags on


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally switch on deterministic algorithms.

    Args:
        seed: the run's seed.
        deterministic: torch.use_deterministic_algorithms(True, warn_only=True) (an op without a
            deterministic version warns instead of failing), cuDNN deterministic and no autotuning.
            A later run without it switches off what a deterministic run switched on (the flags
            are process-wide), and leaves flags the user set alone.
    """
    global _deterministic_by_us
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        _deterministic_by_us = True
    elif _deterministic_by_us:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        _deterministic_by_us = False


def rng_state() -> dict[str, Any]:
    """Every global RNG's state as tensors and plain values (torch.load(weights_only=True) reads it)."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss_next": gauss_next},
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
             "mps": torch.mps.get_rng_state() if _mps_available() else None}
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if state.get("mps") is not None and _mps_available():
        torch.mps.set_rng_state(state["mps"].cpu())


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
