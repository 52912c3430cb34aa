"""Atomic checkpoint files: a crash or kill at any moment leaves the previous good checkpoint in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.atomic import atomic_write
from cnnlab.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "cnnlab-checkpoint"
_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Save a training state atomically; it must hold only tensors and plain values (weights_only-loadable).

    Args:
        path: the checkpoint file (usually RUN/checkpoint.pt).
        state: e.g. Trainer.state_dict(), plus anything JSON-like the caller adds.
    """
    payload = {"format": _FORMAT, "version": _VERSION, "state": state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with torch.load(weights_only=True); every failure is a CheckpointError.

    Args:
        path: the checkpoint file, or a run directory holding checkpoint.pt.
        map_location: where tensors land (the Trainer moves them to its device).
    """
    path = Path(path)
    run = path if path.is_dir() else path.parent
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        if not run.exists():
            raise CheckpointError(f"run directory {run} does not exist: check the path given to --resume")
        raise CheckpointError(f"no {path.name} in {run}: the run did not finish its first epoch; "
                              f"start it again without --resume")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... depending on the damage
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}): "
                              f"restart the run without --resume or restore the file from a backup") from None
    if not (isinstance(payload, dict) and payload.get("format") == _FORMAT and "state" in payload):
        raise CheckpointError(f"{path} is not a cnnlab checkpoint: point --resume at a run directory "
                              f"written by `cnnlab train`")
    if payload.get("version", 0) > _VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['version']}, newer than this "
                              f"cnnlab understands ({_VERSION}): upgrade cnnlab")
    return payload["state"]
