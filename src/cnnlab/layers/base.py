"""The Layer base class: build from a known input shape, shape arithmetic, config, and the registry."""

from __future__ import annotations

import difflib
import inspect

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers.shapes import shape_str

# Layer class name (and Keras aliases) -> class; filled by @register, read by layer_from_config.
LAYERS: dict[str, type[Layer]] = {}
ALIASES: dict[str, str] = {}


def closest(name: str, options) -> str:
    """A ' (did you mean X?)' hint with the closest valid option, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.5)
    if not match:
        lowered = {o.lower(): o for o in options}
        match = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.5)
        match = [lowered[m] for m in match]
    return f" (did you mean {match[0]}?)" if match else ""


def register(*aliases: str):
    """Class decorator: make a Layer constructible by name from configs and model files."""

    def wrap(cls):
        LAYERS[cls.__name__] = cls
        for alias in aliases:
            ALIASES[alias] = cls.__name__
        return cls

    return wrap


def layer_class(name: str) -> type[Layer]:
    """The Layer class called `name` (Keras names like MaxPooling2D accepted); ConfigError if unknown."""
    if name in LAYERS:
        return LAYERS[name]
    if name in ALIASES:
        return LAYERS[ALIASES[name]]
    hint = closest(name, [*LAYERS, *ALIASES])
    for alias, real in ALIASES.items():
        hint = hint.replace(f"mean {alias}?", f"mean {real}?")  # suggest our name, not Keras' alias
    raise ConfigError(
        f"unknown layer {name!r}{hint}; "
        f"the layers are {', '.join(sorted(LAYERS))}."
    )


def layer_arguments(cls: type[Layer]) -> list[str]:
    """Constructor argument names a config may give for this class."""
    params = inspect.signature(cls.__init__).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.name != "self" and p.kind in kinds]


def check_arguments(cls: type[Layer], args: dict) -> None:
    """ConfigError naming an argument `cls` does not take, with the closest valid one."""
    valid = layer_arguments(cls)
    for key in args:
        if key not in valid and key != "input_shape":  # Keras' input_shape=, which every layer takes
            raise ConfigError(
                f"{cls.__name__} has no argument {key!r}{closest(key, valid)}; "
                f"it takes {', '.join(valid)}."
            )


def check_call(cls: type[Layer], args: tuple, kwargs: dict) -> None:
    """ConfigError, instead of Python's TypeError, when `cls(*args, **kwargs)` does not fit its constructor."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return  # *args or **kwargs: Python's own checks are all there is
    check_arguments(cls, kwargs)
    name = cls.__name__
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(args) > len(positional):
        raise ConfigError(f"{name} takes {len(positional)} arguments by position ({', '.join(positional) or 'none'}) "
                          f"but got {len(args)}; give the others by name, like padding='same'.")
    by_position = positional[:len(args)]
    twice = [key for key in by_position if key in kwargs]
    if twice:
        raise ConfigError(f"{name} got {twice[0]} twice, by position and by name; give it once.")
    missing = [p.name for p in params if p.default is p.empty and p.name not in by_position and p.name not in kwargs]
    if missing:
        raise ConfigError(f"{name} needs {' and '.join(missing)}; it takes {', '.join(layer_arguments(cls))}.")


def number(value, what: str) -> float:
    """`value` as a float; ConfigError if it is not a number ('1e-5', the string a YAML 1.1 reader makes, is one)."""
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(f"{what} must be a number like 0.001, got {value!r}.")


def layer_from_config(spec) -> Layer:
    """Build a Layer from {'Conv2D': {...}}, {'type': 'Conv2D', ...} or a bare 'Flatten'."""
    name, args = split_spec(spec)
    cls = layer_class(name)
    check_arguments(cls, args)
    return cls.from_config(args)


def split_spec(spec) -> tuple[str, dict]:
    """(type name, arguments) of a layer spec in any of the three accepted forms."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "type" in spec:
        args = {k: v for k, v in spec.items() if k != "type"}
        return str(spec["type"]), args
    if isinstance(spec, dict) and len(spec) == 1:
        (name, args), = spec.items()
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ConfigError(
                f"the arguments of {name} must be a mapping like {{filters: 16}}, got {args!r}."
            )
        return str(name), dict(args)
    raise ConfigError(
        f"a layer must be written as {{Conv2D: {{filters: 16, kernel_size: 3}}}}, "
        f"{{type: Conv2D, filters: 16, ...}} or a bare name like Flatten, got {spec!r}."
    )


def layer_to_config(layer: Layer, compact: bool = True) -> dict:
    """{'Conv2D': {args}}, the canonical form; `compact` leaves out arguments equal to their default."""
    args = layer.get_config()
    if compact:
        params = inspect.signature(type(layer).__init__).parameters
        args = {
            k: v for k, v in args.items()
            if k not in params or params[k].default is inspect.Parameter.empty or params[k].default != v
        }
    return {type(layer).__name__: args}


class _LayerType(type):
    """Makes `Conv2D(...)` check its arguments first and take Keras' `input_shape=` (see Layer)."""

    def __call__(cls, *args, **kwargs):
        given = None
        if "input_shape" in kwargs and "input_shape" not in layer_arguments(cls):
            given = kwargs.pop("input_shape")
        check_call(cls, args, kwargs)
        layer = super().__call__(*args, **kwargs)
        if given is not None:
            layer.given_input_shape = given
        return layer


class Layer(nn.Module, metaclass=_LayerType):
    """A Keras-named layer: knows its output shape from `build(input_shape)` before any data flows.

    Shapes exclude the batch: (C, H, W) for images, (F,) for vectors. Every layer takes Keras'
    `input_shape=` too (`Conv2D(32, 3, input_shape=(1, 28, 28))`, channels first): Sequential
    reads it from its first layer. Wrong or missing constructor arguments are a ConfigError
    naming the closest valid one, as in model files, rather than Python's TypeError.
    """

    def __init__(self):
        super().__init__()
        self.given_input_shape = None  # Keras' input_shape= argument, set by _LayerType after __init__
        self.built = False
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self._label: str | None = None  # "layer 3 (Conv2D)", set by the model that holds it

    @property
    def label(self) -> str:
        """How errors name this layer: 'layer 3 (Conv2D)' inside a model, else the class name."""
        return self._label or type(self).__name__

    def set_label(self, path: str) -> None:
        """Name this layer by its position in the model, e.g. path '3' or '3.block.1'."""
        self._label = f"layer {path} ({type(self).__name__})"

    def build(self, input_shape) -> tuple[int, ...]:
        """Create parameters for `input_shape` (no batch) and return the output shape; ShapeError if unfit.

        Args:
            input_shape: (C, H, W) or (F,), without the batch dimension.
        """
        shape = tuple(int(d) for d in input_shape)
        if self.built and shape == self.input_shape:
            return self.output_shape
        out = tuple(int(d) for d in self._build(shape))
        self.input_shape, self.output_shape, self.built = shape, out, True
        return out

    def _build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Subclasses: check the shape, create parameters, return the output shape."""
        return input_shape

    def need_rank(self, input_shape, rank: int, fix: str) -> None:
        """ShapeError unless the input has `rank` dims (3: C x H x W, 1: features)."""
        if len(input_shape) != rank:
            kind = "an image C x H x W" if rank == 3 else "a vector of features"
            raise ShapeError(f"{self.label} needs {kind} but gets {shape_str(input_shape)}; {fix}")

    def ensure_built(self, x: torch.Tensor) -> None:
        """Fallback for layers used outside Sequential: build from the first batch's shape."""
        if not isinstance(x, torch.Tensor):  # Keras' functional style: Conv2D(32, 3)(Input(...))
            raise ConfigError(f"{type(self).__name__} was called on a {type(x).__name__}, not a batch of images: "
                              "cnnlab has no Keras functional API; list the layers in "
                              "cnnlab.Sequential([...], input_shape=(C, H, W)) instead")
        if not self.built:
            self.build(tuple(x.shape[1:]))
            self.to(x.device)

    def arithmetic(self) -> list[str]:
        """The lecture formula with this layer's numbers, one string per spatial dim ([] if none)."""
        return []

    def receptive_field(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((span_h, span_w), (stride_h, stride_w)) for windowed layers, None for pointwise ones."""
        return None

    def get_config(self) -> dict:
        """JSON-able constructor arguments; `type(self)(**get_config())` rebuilds the layer."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """Rebuild a layer from get_config()'s dict."""
        return cls(**config)

    def extra_repr(self) -> str:
        (args,) = layer_to_config(self).values()
        return ", ".join(f"{k}={v!r}" for k, v in args.items())
