"""The zoo's registry: `@register` fills a dict of factories that `create` and `list_models` read.

After timm/models/_registry.py: a model is a factory function, registered under its name with a
one-line origin and its native input shape; `create(name, ...)` fills in what the caller left
out and stamps the result with `.input_shape` and `.spec` so a run can rebuild it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import ShapeWarning

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its name, where it comes from and the input it was drawn for."""

    name: str
    origin: str
    input_shape: tuple[int, int, int]  # (C, H, W), the paper's native input

    @property
    def parameters(self) -> int:
        """Parameter count at 10 classes and the native input (built on the meta device: no memory)."""
        return count_parameters(self.name, num_classes=10)


_FACTORIES: dict[str, Factory] = {}
_INFO: dict[str, ModelInfo] = {}


def register(name: str, origin: str, input_shape: tuple[int, int, int]) -> Callable[[Factory], Factory]:
    """Register a factory `f(num_classes, in_channels, input_size, **kw) -> nn.Module` under `name`.

    The decorated name becomes `create(name, ...)` with the same keywords, so `resnet18(num_classes=10)`
    and `create("resnet18", num_classes=10)` build the same, stamped, model.

    Args:
        name: the name users type (`--model NAME`), e.g. "resnet18".
        origin: one line saying where the architecture comes from (paper, year, lecture).
        input_shape: the native input (C, H, W) the model was drawn for.
    """

    def decorator(factory: Factory) -> Factory:
        if name in _FACTORIES:
            raise ValueError(f"zoo model {name!r} is registered twice")  # a programming error
        _FACTORIES[name] = factory
        _INFO[name] = ModelInfo(name, origin, tuple(int(d) for d in input_shape))

        @functools.wraps(factory)
        def build(**kw) -> nn.Module:
            return create(name, **kw)

        return build

    return decorator


def _lookup(name: str) -> Factory:
    if name in _FACTORIES:
        return _FACTORIES[name]
    close = difflib.get_close_matches(str(name), _FACTORIES, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"unknown model {name!r}; {hint}`cnnlab models` lists them")


def _size_pair(input_size: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """Accept 32, (32, 32) or [32, 32]; return (H, W)."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(
            f"input_size {input_size!r} for model {name!r} is not a size; give one positive int "
            "like 32 or a pair (H, W) like (32, 32)"
        )
    return size


def create(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    **kw,
) -> nn.Module:
    """Build a zoo model by name; the result carries `.input_shape` (C, H, W) and `.spec`.

    Args:
        name: a registered name, e.g. "lenet5", "resnet18" (`list_models()` lists them).
        num_classes: size of the output layer (logits; softmax lives in the loss).
        in_channels: image channels; None takes the model's native count (1 for LeNet, 3 for ResNet).
        input_size: H (square) or (H, W) in pixels; None takes the native size. Shapes are inferred
            from it, so a Dense layer after Flatten fits whatever the convolutions leave.
        **kw: model-specific options, e.g. `zero_init_residual=True`, `stem="small"` for ResNet.

    Raises:
        ConfigError: unknown name, unknown option, or a bad size.
    """
    factory = _lookup(name)
    native = _INFO[name].input_shape
    in_channels = native[0] if in_channels is None else in_channels
    size = _size_pair(native[1:] if input_size is None else input_size, name)
    for what, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} {value!r} for model {name!r} must be a positive int, like 10")
    standard = ("num_classes", "in_channels", "input_size")
    accepted = [p for p in inspect.signature(factory).parameters if p not in standard]
    unknown = [k for k in kw if k not in accepted]
    if unknown:
        options = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"model {name!r} has no option {unknown[0]!r}; its options are: {options}")
    with warnings.catch_warnings():
        # A zoo model's pooling that drops an edge row (seed-cnn's 7 -> 3) is its paper's choice,
        # not the user's mistake, so the ShapeWarning Sequential gives for it is not repeated here.
        warnings.simplefilter("ignore", ShapeWarning)
        model = factory(num_classes=num_classes, in_channels=in_channels, input_size=size, **kw)
    model.input_shape = (in_channels, *size)
    model.name = name  # the title summaries and run directories use
    args = {"num_classes": num_classes, "in_channels": in_channels, "input_size": list(size), **kw}
    model.spec = {"zoo": name, "args": args}
    return model


def create_from_spec(spec: dict) -> nn.Module:
    """Rebuild a model from the `.spec` a zoo model carries, e.g. one read back from model.json.

    Args:
        spec: `{"zoo": name, "args": {...}}` as stamped by `create`.
    """
    if not isinstance(spec, dict) or "zoo" not in spec:
        raise ConfigError(f"model spec {spec!r} is not a zoo spec; expected {{'zoo': name, 'args': {{...}}}}")
    return create(spec["zoo"], **dict(spec.get("args") or {}))


def count_parameters(name: str, num_classes: int = 10, **kw) -> int:
    """Number of parameters of `create(name, num_classes, **kw)`, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = create(name, num_classes=num_classes, **kw)
    return sum(p.numel() for p in model.parameters())


def list_models() -> list[ModelInfo]:
    """Every registered model, in the order the families were registered (roughly history's)."""
    return list(_INFO.values())
