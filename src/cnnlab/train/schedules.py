"""Learning-rate schedules by name, stepped once per batch so warm-up and one-cycle are smooth.

constant, step, exponential and cosine are one LambdaLR (stateless factor of the step, so resume
only needs last_epoch); onecycle is torch's OneCycleLR. Reduce-on-plateau acts per epoch on top of
them: see callbacks.ReduceLROnPlateau.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cnnlab.errors import ConfigError
from cnnlab.train.config import SCHEDULES, check_choice

DEFAULT_GAMMA = {"step": 0.1, "exponential": 0.95}  # step: per step_size epochs; exponential: per epoch


def schedule_factor(name: str, step: int, *, steps_per_epoch: int, total_steps: int, warmup_steps: int = 0,
                    step_size: int = 10, gamma: float | None = None, min_ratio: float = 0.0) -> float:
    """lr / base lr at optimizer step `step` (0-based) for constant | step | exponential | cosine.

    The warm-up is linear, (step + 1) / warmup_steps, so the first step already moves; the main
    schedule then runs over the remaining steps, counted from the end of the warm-up.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = step - warmup_steps  # steps since the warm-up ended
    if name == "constant":
        return 1.0
    g = DEFAULT_GAMMA.get(name, 0.1) if gamma is None else gamma
    if name == "step":  # torch StepLR(step_size) stepped per epoch
        return g ** ((t // steps_per_epoch) // step_size)
    if name == "exponential":  # torch ExponentialLR(gamma) per epoch, here continuous between epochs
        return g ** (t / steps_per_epoch)
    if name == "cosine":  # torch CosineAnnealingLR(T_max=remaining steps, eta_min)
        span = max(total_steps - warmup_steps, 1)
        return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * min(t, span) / span)) / 2
    raise ConfigError(f"schedule '{name}' has no factor form: use make_scheduler")


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                   warmup_epochs: float = 0.0, *, step_size: int = 10, gamma: float | None = None,
                   min_lr: float = 0.0) -> LRScheduler:
    """Build a per-batch scheduler: call .step() after every optimizer step.

    Args:
        name: constant | step | exponential | cosine | onecycle (ConfigError names the closest otherwise).
        optimizer: its param groups' current lr is the base (the peak for onecycle).
        steps_per_epoch: batches per epoch (len of the training batches).
        epochs: the run's total epochs; cosine and onecycle span them.
        warmup_epochs: linear warm-up length in epochs (fractions allowed); for onecycle it sets
            the rising phase (pct_start = warmup_epochs / epochs, else torch's 0.3).
        step_size: step schedule: epochs between lr drops.
        gamma: lr factor per drop (step, default 0.1) or per epoch (exponential, default 0.95).
        min_lr: cosine: the lr reached at the end.
    """
    check_choice("schedule", name, SCHEDULES)
    if steps_per_epoch < 1 or epochs < 1:
        raise ConfigError(f"a schedule needs at least one step: got {steps_per_epoch} batches x {epochs} epochs")
    total = steps_per_epoch * epochs
    warm = int(round(warmup_epochs * steps_per_epoch))
    if not 0 <= warm < total:
        raise ConfigError(f"warmup_epochs={warmup_epochs} must be >= 0 and shorter than the {epochs} epochs")
    if name == "onecycle":
        pct = warm / total if warm else 0.3
        beta_or_momentum = "betas" in optimizer.defaults or optimizer.defaults.get("momentum", 0) > 0
        # the 1cycle policy cycles momentum 0.95 -> 0.85 -> 0.95 against the lr (Smith 2018, as
        # torch and fastai do), replacing --momentum / adam's beta1; Muon's filters keep their own
        # momentum (muon_momentum), which OneCycleLR would overwrite in every group alike
        muon = any(g.get("muon") for g in optimizer.param_groups)
        return OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
                          pct_start=pct, cycle_momentum=beta_or_momentum and not muon)
    lambdas = []
    for group in optimizer.param_groups:
        ratio = min_lr / group["lr"] if group["lr"] > 0 else 0.0

        def factor(step: int, ratio: float = ratio) -> float:
            return schedule_factor(name, step, steps_per_epoch=steps_per_epoch, total_steps=total,
                                   warmup_steps=warm, step_size=step_size, gamma=gamma, min_ratio=ratio)
        lambdas.append(factor)
    return LambdaLR(optimizer, lambdas)
