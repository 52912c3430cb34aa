"""Weight initialisation by Keras name, the kernel-regulariser penalty, and an EMA of the weights."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn

from cnnlab.train.config import INITS, check_choice

# Keras VarianceScaling: (scale, fan mode, distribution) per initializer name; see
# https://keras.io/api/layers/initializers/ . "normal" is Keras' truncated normal at +-2 std.
_SCHEMES = {
    "he_normal": (2.0, "fan_in", "normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "lecun_normal": (1.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}
# std of a unit normal truncated to [-2, 2]; Keras divides by it so the kept draws have the target std
_TRUNC_STD = 0.87962566103423978


def variance_scaling_(weight: torch.Tensor, scheme: str) -> torch.Tensor:
    """Fill a Conv/Dense weight in place the way Keras' initializer of that name does."""
    check_choice("weight init", scheme, INITS)
    scale, mode, dist = _SCHEMES[scheme]
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)  # conv: channels * kh * kw
    n = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
    with torch.no_grad():
        if dist == "uniform":
            limit = math.sqrt(3.0 * scale / n)
            return weight.uniform_(-limit, limit)
        std = math.sqrt(scale / n) / _TRUNC_STD
        return nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def init_weights(model: nn.Module, scheme: str | None) -> int:
    """Re-initialise every Conv and Linear weight by a Keras name and zero their biases; returns how many.

    Args:
        model: any module; BatchNorm and other layers keep their own initialisation.
        scheme: he_normal | he_uniform | glorot_normal | glorot_uniform | lecun_normal | lecun_uniform,
            or None to leave the layers' own initialisation (returns 0).
    """
    if scheme is None:
        return 0
    check_choice("weight init", scheme, INITS)
    count = 0
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            variance_scaling_(m.weight, scheme)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            count += 1
    return count


def regularizing_modules(model: nn.Module) -> list[nn.Module]:
    """The outermost modules defining regularization_loss() (a parent that defines it covers its children).

    cnnlab layers whose kernel_regularizer is None are left out: their penalty is a constant 0.
    """
    found, stack = [], [model]
    while stack:
        m = stack.pop()
        if callable(getattr(m, "regularization_loss", None)):
            if getattr(m, "kernel_regularizer", "unset") is not None:  # cnnlab layers without one add 0
                found.append(m)
        else:
            stack.extend(reversed(list(m.children())))
    return found


def regularization_loss(model: nn.Module, modules: list[nn.Module] | None = None) -> torch.Tensor | None:
    """Sum of the L1/L2 kernel-regulariser penalties of the model's layers (None when no layer has one).

    Args:
        model: the model; its layers with a kernel_regularizer define regularization_loss().
        modules: regularizing_modules(model), precomputed to skip the walk every step.
    """
    modules = regularizing_modules(model) if modules is None else modules
    terms = [m.regularization_loss() for m in modules]
    terms = [t for t in terms if t is not None]
    return torch.stack([torch.as_tensor(t).float().reshape(()) for t in terms]).sum() if terms else None


def _unwrap(model: nn.Module) -> nn.Module:
    """The original module under torch.compile's wrapper (same state_dict keys either way)."""
    return getattr(model, "_orig_mod", model)


class ModelEMA:
    """Exponential moving average of a model's weights: shadow = decay * shadow + (1 - decay) * weights.

    With warmup (TensorFlow's ExponentialMovingAverage num_updates rule), the decay used at update n
    is min(decay, (1 + n) / (10 + n)), so early averages are not dominated by the initial weights.
    Every floating-point tensor of the state is averaged: the parameters and BatchNorm's running
    mean and variance, as timm's ModelEmaV2 and airbench's Lookahead do, so the averaged weights are
    evaluated with statistics averaged alike. Integer buffers (BN's batch counter) are copied.
    (This class first copied the live statistics; that EMA cost the GPU recipes 0.3 to 1.3 points,
    docs/speed.md, "gpu-recipe". Whether averaging them wins those back awaits a GPU.)
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = True) -> None:
        """Args:
            model: the model being trained; the shadow starts as a copy of its weights.
            decay: weight kept per update (0.999 averages about the last 1000 steps).
            warmup: use min(decay, (1 + n) / (10 + n)) at update n.
        """
        self.model = model
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in _unwrap(model).state_dict().items()}
        self._cached: tuple | None = None  # see _pairs

    def current_decay(self) -> float:
        """The decay the next update will use."""
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def _pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(shadow floats, live floats, shadow others, live others), built once: state_dict()
        returns the same tensor objects each time (loads copy into them), and rebuilding it per step
        is Python work a GPU step would wait on."""
        if self._cached is None:
            live = _unwrap(self.model).state_dict()
            avg = [k for k in live if self.shadow[k].is_floating_point()]
            averaged = set(avg)
            rest = [k for k in live if k not in averaged]
            self._cached = ([self.shadow[k] for k in avg], [live[k].detach() for k in avg],
                            [self.shadow[k] for k in rest], [live[k].detach() for k in rest])
        return self._cached

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        d = self.current_decay()
        shadow_p, live_p, shadow_rest, live_rest = self._pairs()
        if shadow_p:
            if all(s.dtype == v.dtype for s, v in zip(shadow_p, live_p)):
                torch._foreach_lerp_(shadow_p, live_p, 1.0 - d)  # s + (1-d)(v - s) = d*s + (1-d)*v
            else:
                for s, v in zip(shadow_p, live_p):
                    s.lerp_(v.to(s.dtype), 1.0 - d)
        if shadow_rest:
            torch._foreach_copy_(shadow_rest, live_rest)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Load the averaged weights into the model (for saving or final evaluation)."""
        _unwrap(model or self.model).load_state_dict(self.shadow)

    @contextlib.contextmanager
    def applied(self) -> Iterator[nn.Module]:
        """Within the block the model holds the averaged weights; its own come back afterwards."""
        inner = _unwrap(self.model)
        backup = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        self.copy_to()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                inner.load_state_dict(backup)

    def state_dict(self) -> dict:
        """Shadow tensors and counters (tensors and plain values only)."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned."""
        self.decay, self.warmup, self.num_updates = state["decay"], state["warmup"], state["num_updates"]
        with torch.no_grad():
            for k, v in state["shadow"].items():
                self.shadow[k].copy_(v)
