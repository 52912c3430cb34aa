"""Learning-rate range test (Smith 2015, "Cyclical Learning Rates", section 3.3; fastai's lr_find).

Train a few steps while the lr grows exponentially from start_lr to end_lr, record the
exponentially smoothed loss, stop when it diverges, and suggest the lr where it falls fastest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.outputs import as_logits, ends_in_softmax
from cnnlab.train.regularize import regularization_loss
from cnnlab.train.reproduce import rng_state, set_rng_state


@dataclass
class LRFindResult:
    """The range test's curve (NaN and diverged points dropped) and its suggested learning rate."""

    lrs: list[float]
    losses: list[float]  # raw loss per step
    smoothed: list[float]  # bias-corrected exponential moving average of the losses
    suggestion: float | None  # None when too few points survived to read a slope
    stopped: str = "end_lr reached"  # or "diverged" / "loss became nan" / "loss became inf"
    notes: list[str] = field(default_factory=list)


def _forever(batches: Iterable) -> Iterator:
    """Cycle over the batches epoch after epoch (set_epoch when the batches have it)."""
    epoch = 0
    while True:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        if hasattr(batches, "start_at"):
            batches.start_at(0)
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ConfigError("the learning-rate finder got no batches: the training set is empty")
        epoch += 1


def suggest_lr(lrs: list[float], smoothed: list[float]) -> float | None:
    """The lr of steepest descent of the smoothed loss (per log10 lr), before the loss minimum.

    The first 10% of points are skipped (bias-corrected averages of a few losses are noisy). When
    the minimum comes too early to have a slope before it, fall back to the minimum's lr / 10 (the
    rule of thumb of fastai v1). None with fewer than 5 points.
    """
    if len(lrs) < 5:
        return None
    loss = np.asarray(smoothed)
    i_min = int(loss.argmin())
    skip = len(lrs) // 10
    if i_min - skip < 2:
        return lrs[i_min] / 10
    slope = np.gradient(loss, np.log10(lrs))  # d loss / d log10(lr)
    return float(lrs[skip + int(slope[skip:i_min + 1].argmin())])


def lr_range_test(model: nn.Module, loss_fn: Callable, optimizer_factory: Callable, batches: Iterable,
                  start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100, smoothing: float = 0.98,
                  diverge_factor: float = 4.0) -> LRFindResult:
    """Run the range test; the model's weights and the global RNG states are restored afterwards.

    Args:
        model: on the batches' device; trained for at most num_steps steps, then put back as it was.
        loss_fn: (logits, y) -> mean loss; the layers' regulariser penalties are added as in training.
        optimizer_factory: params -> optimizer (its lr is overwritten every step); created here,
            used, and discarded, so the caller's own optimizer is never touched. Parameter groups
            with their own lr (bias_lr_scale, Muon's filters) keep their ratio to the first
            group's, whose lr is the one swept, plotted and suggested.
        batches: the training batches, cycled if num_steps exceeds one epoch.
        start_lr, end_lr: the exponential ramp's ends.
        num_steps: steps from start_lr to end_lr.
        smoothing: the moving average's beta (0 = no smoothing).
        diverge_factor: stop when the smoothed loss exceeds this times the best so far.
    """
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"the lr finder needs 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if num_steps < 2 or not 0 <= smoothing < 1:
        raise ConfigError(f"the lr finder needs num_steps >= 2 and 0 <= smoothing < 1, got {num_steps}, {smoothing}")
    inner = getattr(model, "_orig_mod", model)
    saved = {k: v.detach().clone() for k, v in inner.state_dict().items()}
    rng, was_training = rng_state(), model.training
    optimizer = optimizer_factory(model.parameters())
    first = optimizer.param_groups[0]["lr"]
    scales = [group["lr"] / first if first else 1.0 for group in optimizer.param_groups]
    ratio = (end_lr / start_lr) ** (1 / (num_steps - 1))  # lr multiplier per step
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, "end_lr reached"
    softmax = ends_in_softmax(model)  # a model ending in softmax hands the loss its log-probabilities
    model.train()
    try:
        for step, (x, y) in zip(range(num_steps), _forever(batches)):
            lr = start_lr * ratio ** step
            for group, scale in zip(optimizer.param_groups, scales):
                group["lr"] = lr * scale
            loss = loss_fn(as_logits(model(x), softmax), y)
            reg = regularization_loss(model)
            loss = loss if reg is None else loss + reg
            value = loss.item()
            if not math.isfinite(value):
                stopped = f"loss became {'nan' if math.isnan(value) else 'inf'}"
                break
            avg = smoothing * avg + (1 - smoothing) * value
            smooth = avg / (1 - smoothing ** (len(losses) + 1))  # bias correction for the zero start
            if smooth > diverge_factor * best:
                stopped = "diverged"
                break
            best = min(best, smooth)
            lrs.append(lr), losses.append(value), smoothed.append(smooth)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        with torch.no_grad():
            inner.load_state_dict(saved)
        for p in model.parameters():  # the sweep's last (near-divergent) gradients, as fastai's LRFinder drops them
            p.grad = None
        model.train(was_training)
        set_rng_state(rng)
    result = LRFindResult(lrs, losses, smoothed, suggest_lr(lrs, smoothed), stopped)
    if len(set(scales)) > 1:
        result.notes.append("the optimizer's groups moved together, keeping their lr ratios: the suggestion "
                            "is for lr, the others (bias_lr_scale, muon_lr) scale with it")
    if result.suggestion is None:
        result.notes.append(f"only {len(lrs)} usable points: lower start_lr or raise num_steps")
    return result


def plot_lr_find(result: LRFindResult):
    """Loss against learning rate (log scale) with the suggestion marked; a matplotlib Figure (Agg, not shown)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)  # attaches an Agg canvas: savefig works with no display and no pyplot state
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="smoothed loss")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="C3", linestyle="--",
                   label=f"suggested lr {result.suggestion:.2e}")
    ax.set_xscale("log")
    if result.smoothed:
        # zoom on the useful part: a diverging last step would otherwise flatten the whole curve
        low, start = min(*result.smoothed, *result.losses), result.smoothed[0]
        ax.set_ylim(low - 0.1 * (start - low) - 1e-3, start + 0.5 * (start - low) + 1e-3)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test ({len(result.lrs)} steps, {result.stopped})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
