"""Keras-named weight initializers and l1/l2 kernel regularizers."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers.base import closest, number


def _fans(w: torch.Tensor) -> tuple[int, int]:
    # Keras and torch agree: conv (out, in, kh, kw) -> fan_in = in*kh*kw, fan_out = out*kh*kw
    return nn.init._calculate_fan_in_and_fan_out(w)


def _truncated_normal(scale: float, mode: str):
    """Keras' VarianceScaling(scale, mode, 'truncated_normal'): std = sqrt(scale / n), cut at 2 std."""

    def init(w):
        fan_in, fan_out = _fans(w)
        n = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
        std = math.sqrt(scale / n) / 0.87962566103423978  # Keras' correction for the truncation
        return nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)

    return init


# name -> in-place init function; defaults follow Keras (kernel glorot_uniform, bias zeros).
INITIALIZERS = {
    "glorot_uniform": nn.init.xavier_uniform_,
    "glorot_normal": _truncated_normal(1.0, "fan_avg"),
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, a=0.0, nonlinearity="relu"),
    "he_normal": _truncated_normal(2.0, "fan_in"),
    "lecun_normal": _truncated_normal(1.0, "fan_in"),
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "torch": None,  # keep PyTorch's own default (kaiming_uniform with a=sqrt(5))
}


def check_initializer(name: str, what: str) -> str:
    """The initializer name, or ConfigError naming the closest valid one."""
    if name not in INITIALIZERS:
        raise ConfigError(
            f"unknown {what} {name!r}{closest(name, INITIALIZERS)}; use one of {', '.join(INITIALIZERS)}."
        )
    return name


def initialize(tensor: torch.Tensor, name: str) -> None:
    """Fill `tensor` in place with the named initializer ('torch' leaves it as PyTorch made it)."""
    fn = INITIALIZERS[name]
    if fn is not None:
        with torch.no_grad():
            fn(tensor)


_CALL = re.compile(r"^\s*(l1|l2|l1_l2)\s*\((.*)\)\s*$")


def parse_regularizer(spec) -> dict[str, float] | None:
    """'l2(1e-4)', 'l1_l2(l1=1e-5, l2=1e-4)' or {'l2': 1e-4} -> {'l1': a, 'l2': b}; None stays None."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        bad = [k for k in spec if k not in ("l1", "l2")]
        if bad:
            raise ConfigError(f"kernel_regularizer takes keys l1 and l2, got {bad[0]!r}; write {{l2: 1e-4}}.")
        return {key: number(spec.get(key, 0.0), f"kernel_regularizer {key}") for key in ("l1", "l2")}
    match = _CALL.match(str(spec))
    if not match:
        raise ConfigError(
            f"kernel_regularizer must look like 'l2(1e-4)', 'l1(1e-5)' or 'l1_l2(l1=1e-5, l2=1e-4)', got {spec!r}."
        )
    kind, body = match.groups()
    try:
        if kind == "l1_l2":
            parts = dict(p.split("=") for p in body.replace(" ", "").split(",") if p)
            return {"l1": float(parts.get("l1", 0.0)), "l2": float(parts.get("l2", 0.0))}
        value = float(body) if body.strip() else 0.01  # Keras' default factor is 0.01
    except ValueError:
        raise ConfigError(f"kernel_regularizer {spec!r} has a factor that is not a number; write 'l2(1e-4)'.") from None
    return {"l1": value if kind == "l1" else 0.0, "l2": value if kind == "l2" else 0.0}


def penalty(weight: torch.Tensor, factors: dict[str, float] | None) -> torch.Tensor:
    """Keras' penalty: l1 * sum|w| + l2 * sum(w^2) (no 1/2 factor); a 0-d zero without a regularizer."""
    loss = weight.new_zeros(())
    if factors:
        if factors["l1"]:
            loss = loss + factors["l1"] * weight.abs().sum()
        if factors["l2"]:
            loss = loss + factors["l2"] * weight.pow(2).sum()
    return loss
