"""Atomic checkpoint files: a crash or kill at any moment leaves the previous good checkpoint in place."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from cnnlab.atomic import atomic_write
from cnnlab.errors import CheckpointError, ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "cnnlab-checkpoint"
_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Save a training state atomically; it must hold only tensors and plain values (weights_only-loadable).

    Args:
        path: the checkpoint file (usually RUN/checkpoint.pt).
        state: Trainer.state_dict(), plus anything JSON-like the caller adds.
    """
    payload = {"format": _FORMAT, "version": _VERSION, "state": state}
    # serialised in memory first: torch's zip writer turns a full disk into a RuntimeError
    # ("unexpected pos ..."), while a plain write of the bytes raises OSError(ENOSPC) -> OutputError
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    return atomic_write(path, lambda f: f.write(data))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with torch.load(weights_only=True) and check it holds a Trainer.state_dict();
    every failure is a CheckpointError.

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
        # weights_only refuses a pickle that names classes or functions (it could run code on loading);
        # random damage reads as an unsupported operand instead
        if any(m in str(e) for m in ("Unsupported global", "unrecognized function")):
            raise CheckpointError(f"checkpoint {path} holds code or objects that are not weights, so it was "
                                  f"refused for safety: resume only from checkpoints `cnnlab train` wrote") from None
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}): "
                              f"restart the run without --resume or restore the file from a backup") from None
    if not (isinstance(payload, dict) and payload.get("format") == _FORMAT and "state" in payload):
        raise CheckpointError(f"{path} is not a cnnlab checkpoint: point --resume at a run directory "
                              f"written by `cnnlab train`")
    if payload.get("version", 0) > _VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['version']}, newer than this "
                              f"cnnlab understands ({_VERSION}): upgrade cnnlab")
    _check_state(payload["state"], path)
    return payload["state"]


# what Trainer.state_dict() holds, and what resuming reads at once: key -> allowed types
_STATE = {"model": (dict,), "optimizer": (dict,), "scheduler": (dict, type(None)), "ema": (dict, type(None)),
          "epoch": (int,), "step_in_epoch": (int,), "global_step": (int,), "partial": (dict,),
          "history": (list,), "rng": (dict,), "callbacks": (dict,)}
_PARTIAL = ("loss_sum", "correct", "count", "seconds", "lr")
_RNG = ("torch", "numpy", "python")


def _check_state(state: Any, path: Path) -> None:
    """CheckpointError unless state has every field of Trainer.state_dict() with its type (a forged or
    damaged file would otherwise fail with a KeyError or TypeError deep inside the resume)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} {what}: the file is damaged or was not written by "
                               f"`cnnlab train`; restart the run without --resume")

    if not isinstance(state, dict):
        raise bad(f"holds a {type(state).__name__} where the training state should be")
    for key, types in _STATE.items():
        if key not in state:
            raise bad(f"lacks the training state's '{key}'")
        value = state[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise bad(f"has a {type(value).__name__} as its {key}")
        if types == (int,) and value < 0:
            raise bad(f"has {key} {value}, below 0")
    lacking = [k for k in _PARTIAL if k not in state["partial"]] + [k for k in _RNG if k not in state["rng"]]
    if lacking:
        raise bad(f"lacks the training state's '{lacking[0]}'")
    if not all(isinstance(row, dict) and "epoch" in row for row in state["history"]):
        raise bad("has a history row that is not an epoch's figures")


def state_mismatch(expected: dict[str, Any], got: dict[str, Any]) -> str:
    """How a saved state_dict differs from a model's: the first 3 missing, unexpected or reshaped
    entries and how many in all; '' when they fit."""
    def first(what: str, names: list[str]) -> list[str]:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return [f"{what} {', '.join(names[:3])}{more}"] if names else []

    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    reshaped = [f"{k} {tuple(getattr(got[k], 'shape', ()))} saved, {tuple(t.shape)} here"
                for k, t in expected.items()
                if k in got and isinstance(t, torch.Tensor) and getattr(got[k], "shape", None) != t.shape]
    return "; ".join(first("missing", missing) + first("unexpected", unexpected) +
                     first("other shapes:", reshaped))


def check_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """ConfigError when the checkpoint's optimizer is another kind than `optimizer` (Adam's state
    loads into SGD without complaint, and SGD's step then fails on the missing momentum buffer)."""
    ours = type(optimizer).__name__
    saved = state.get("optimizer_class")
    if saved is None:  # a checkpoint from before the class was recorded: compare the hyperparameters
        groups = state["optimizer"].get("param_groups") or [{}]
        theirs = set(groups[0] if isinstance(groups[0], dict) else {}) - {"params"}
        mine = set(optimizer.param_groups[0]) - {"params"}
        # a torch upgrade only adds keys; another optimizer has keys of its own on both sides
        saved = "another optimizer" if theirs - mine and mine - theirs else ours
    if saved != ours:
        raise ConfigError(f"the checkpoint was trained with {saved}, but this run's optimizer is {ours}: "
                          "put the optimizer in config.json back, or start a new run")
