"""Sequential: a list of cnnlab layers whose every shape is known as soon as the input shape is."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.facade import KerasFacade
from cnnlab.layers import Activation, Conv2D, Input, Layer, MaxPool2D, layer_from_config, layer_to_config, register
from cnnlab.layers.base import split_spec
from cnnlab.layers.shapes import ShapeWarning, shape_str
from cnnlab.native import conv1pool


def _check_shape(shape, where: str) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) not in (1, 3) or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape
    ):
        raise ConfigError(f"{where} must be (C, H, W) like (1, 28, 28) or (F,), got {shape!r}.")
    return tuple(shape)


def _hooked(module: nn.Module) -> bool:
    """True when module or any submodule has forward or backward hooks (an inspection is watching it)."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in module.modules())


def _unwatched(*layers: Layer) -> bool:
    """True when no hook, the layers' own or a global one, would see their outputs or gradients
    (the fused paths skip the layers' __call__, which is what runs hooks)."""
    module = nn.modules.module
    if (module._global_forward_hooks or module._global_forward_pre_hooks
            or module._global_backward_hooks or module._global_backward_pre_hooks):
        return False
    return not any(_hooked(layer) for layer in layers)


def _pool_first_applies(layer: Layer, nxt: Layer) -> bool:
    """Whether `layer` ends in a ReLU that `nxt`, a MaxPool2D, may swap with (see Sequential.forward)."""
    if type(nxt) is not MaxPool2D:
        return False
    if isinstance(layer, Activation):
        relu = layer.name.lower() == "relu"
    else:
        relu = isinstance(layer, Conv2D) and str(layer.activation_name).lower() == "relu"
    return relu and _unwatched(layer, nxt)


def _linear_conv_then_pool(layer: Layer, nxt: Layer) -> bool:
    """Whether `layer` is a Conv2D without activation directly followed by max pooling (fastnet's
    blocks), with nothing watching either."""
    return (type(nxt) is MaxPool2D and isinstance(layer, Conv2D) and isinstance(layer.activation, nn.Identity)
            and _unwatched(layer, nxt))


def _first_block_in_one_pass(layer: Layer, pool: MaxPool2D, x: torch.Tensor, relu: bool) -> torch.Tensor | None:
    """pool(relu(layer(x))) (or pool(layer(x))) through native/conv1pool.c when layer is a 3x3 'same'
    Conv2D of a one-channel batch and pool a plain 2x2 one (a grayscale CNN's first block); else None."""
    if not isinstance(layer, Conv2D) or pool.pool_size != (2, 2) or pool.strides != (2, 2):
        return None
    if any(layer._extra_pads(x.shape[-2], x.shape[-1])) or any(pool._pads(x)):
        return None
    return conv1pool.conv_relu_pool_if_fits(layer.conv, x, relu)


class Sequential(KerasFacade, Layer):
    """Layers applied one after another; builds (infers every shape) once the input shape is known.

    With Keras's compile / fit / evaluate / predict (cnnlab.facade). An ordinary nn.Module: children
    are named "0", "1", ... like nn.Sequential, so state_dict keys, torch.compile, ONNX export and
    hooks work as usual. Build errors name the layer by that number.

    Args:
        layers: Layers in order; an Input(shape) first gives the input shape (and is not kept).
        input_shape: (C, H, W) channels first, or (F,); no batch dimension.
        name: a name for summaries and run directories.
    """

    def __init__(self, layers=None, input_shape=None, name: str | None = None):
        super().__init__()
        self.name = name
        self._path = ""  # "3.block" when nested in a Residual, for error labels
        self._declared_shape = None if input_shape is None else _check_shape(input_shape, "input_shape")
        for layer in layers or []:
            self.add(layer)
        if self._declared_shape is not None and not self.built:
            self.build(self._declared_shape)

    # -- the list --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Layer:
        return list(self._modules.values())[index]

    @property
    def layers(self) -> list[Layer]:
        """The layers in order (Input markers are not kept)."""
        return list(self._modules.values())

    def add(self, layer: Layer) -> None:
        """Append a layer and, when the input shape is known, build it at once (Keras' model.add).

        Args:
            layer: a cnnlab Layer; Input(shape) is accepted only before any other layer.
        """
        if isinstance(layer, Input):
            if len(self):
                raise ConfigError(f"Input{list(layer.shape)} must come first, not after layer {len(self) - 1}; "
                                  "move it to the start of the list.")
            if self._declared_shape is not None and self._declared_shape != layer.shape:
                raise ConfigError(f"Input{list(layer.shape)} disagrees with input_shape="
                                  f"{list(self._declared_shape)}; give the input shape once.")
            self._declared_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise ConfigError(f"Sequential takes cnnlab layers (Conv2D, Dense, ...), got "
                              f"{type(layer).__name__} at position {len(self)}; wrap torch modules in a Layer.")
        index = len(self)
        if getattr(layer, "given_input_shape", None) is not None:  # (absent from layers pickled before it existed)  # Keras' Conv2D(32, 3, input_shape=(1, 28, 28))
            self._take_input_shape(layer, index)
        self.add_module(str(index), layer)
        layer.set_label(f"{self._path}.{index}" if self._path else str(index))
        if self.built:
            self.output_shape = layer.build(self.output_shape)
        elif self._declared_shape is not None and index == 0:
            self.build(self._declared_shape)

    def _take_input_shape(self, layer: Layer, index: int) -> None:
        """Declare the input shape given as `input_shape=` to the first layer, as Keras does."""
        what = f"input_shape of layer {index} ({type(layer).__name__})"
        if index:
            raise ConfigError(f"{what} is read only on the first layer; move it there, or give "
                              "Sequential(..., input_shape=(C, H, W)).")
        shape = _check_shape(layer.given_input_shape, what)
        if self._declared_shape is not None and self._declared_shape != shape:
            raise ConfigError(f"{what}, {list(shape)}, disagrees with input_shape={list(self._declared_shape)}; "
                              "give the input shape once.")
        self._declared_shape = shape

    def set_label(self, path: str) -> None:
        super().set_label(path)
        self._path = path
        for index, layer in enumerate(self):
            layer.set_label(f"{path}.{index}")

    # -- shapes ----------------------------------------------------------------------------------

    def build(self, input_shape) -> tuple[int, ...]:
        """Infer every layer's shape and create its weights; ShapeError names the first layer that cannot fit.

        Args:
            input_shape: (C, H, W) or (F,), without the batch dimension.
        """
        shape = _check_shape(tuple(input_shape), "input_shape")
        again = self.built and shape == self.input_shape  # e.g. summarize() after load_model_file: warn once
        self.input_shape = shape
        out = shape
        try:
            for layer in self:
                out = layer.build(out)
        except ShapeError as err:
            hint = _channels_last_hint(shape)
            if hint and not self._path:
                raise ShapeError(f"{str(err).rstrip('.')}; {hint}") from None
            raise
        self.output_shape, self.built = out, True
        if not self._path:
            self._declared_shape = shape
            hint = _channels_last_hint(shape)
            if hint and not again:  # the shapes worked out, but probably not as meant: (28, 28, 1) is 28 channels
                warnings.warn(f"input_shape {shape} reads as {shape[0]} channels of {shape[1]}x"
                              f"{shape[2]} images; {hint}", ShapeWarning,
                              stacklevel=5)  # build <- add <- __init__ <- _LayerType.__call__ <- Sequential(...)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *input_shape) -> (N, *output_shape).

        A ReLU (a Conv2D's own or an Activation layer) directly followed by max pooling runs as
        pooling then ReLU, on a quarter of the pixels for 2x2 windows: max(relu(a), relu(b), ...) =
        relu(max(a, b, ...)), values and gradients both, since ReLU never reorders its inputs (the
        one difference: a window of -0.0 and negatives gives -0.0 where ReLU first gives +0.0).
        On the 2-core CPU this takes ~5% off a seed-cnn training step (docs/speed.md); on channels-last
        CPU tensors both then run as one pass of cnnlab's C kernel (MaxPool2D.relu_forward), and a
        grayscale image's 3x3 'same' convolution joins them (native/conv1pool.c; also when the
        convolution has no activation, as in fastnet). Both are skipped whenever a layer involved
        has hooks, so activation maps and Grad-CAM see the layers as written.
        """
        self.ensure_built(x)
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if nxt is not None and _pool_first_applies(layer, nxt):
                fused = _first_block_in_one_pass(layer, nxt, x, relu=True)
                if fused is None:
                    pre = layer.pre_activation(x) if isinstance(layer, Conv2D) else x
                    fused = nxt.relu_forward(pre)  # relu(pool(pre)), one pass where it can
                x, i = fused, i + 2
                continue
            fused = None
            if nxt is not None and _linear_conv_then_pool(layer, nxt):
                fused = _first_block_in_one_pass(layer, nxt, x, relu=False)
            x, i = (fused, i + 2) if fused is not None else (layer(x), i + 1)
        return x

    def summary(self, input_shape=None):
        """The summary table (print it, or .to_dict() for JSON); see cnnlab.summary.summarize."""
        from cnnlab.summary import summarize

        shape = input_shape or self.input_shape
        if shape is None:
            raise ShapeError("the model has no input shape yet; pass input_shape=(C, H, W) to Sequential or summary().")
        return summarize(self, tuple(shape))

    # -- configs ---------------------------------------------------------------------------------

    def get_config(self) -> dict:
        return self.to_config()

    def extra_repr(self) -> str:
        shape = self.input_shape or self._declared_shape
        return f"input_shape={shape_str(shape)}" if shape else ""

    def to_config(self, compact: bool = True) -> dict:
        """{'name', 'input_shape', 'layers': [{'Conv2D': {...}}, ...]}, JSON/YAML-able.

        Args:
            compact: leave out arguments that equal their defaults.
        """
        config = {}
        if self.name:
            config["name"] = self.name
        shape = self.input_shape or self._declared_shape
        if shape is not None:
            config["input_shape"] = list(shape)
        config["layers"] = [layer_to_config(layer, compact) for layer in self]
        return config

    @classmethod
    def from_config(cls, config) -> Sequential:
        """Rebuild a model from to_config()'s dict (or a bare list of layer configs).

        Args:
            config: {'input_shape': [...], 'layers': [...], 'name': ...}; each layer as
                {'Conv2D': {...}}, {'type': 'Conv2D', ...} or a bare name like 'Flatten'.
        """
        if isinstance(config, list):
            config = {"layers": config}
        if not isinstance(config, dict) or "layers" not in config:
            raise ConfigError("a model config needs a 'layers' list (and usually 'input_shape').")
        unknown = set(config) - {"name", "input_shape", "layers"}
        if unknown:
            raise ConfigError(f"a model config has no key {sorted(unknown)[0]!r}; use name, input_shape and layers.")
        layers = []
        for index, spec in enumerate(config["layers"]):
            try:
                layers.append(layer_from_config(spec))
            except ConfigError as err:
                raise ConfigError(f"layer {index} ({split_spec(spec)[0] if _named(spec) else '?'}): {err}") from None
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name"))


def _named(spec) -> bool:
    try:
        split_spec(spec)
    except ConfigError:
        return False
    return True


def _channels_last_hint(shape) -> str:
    """Catch Keras' (H, W, C) order: (28, 28, 1) is probably meant as (1, 28, 28)."""
    if len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] > 4:
        return f"input shapes are channels first (C, H, W): did you mean {(shape[2], shape[0], shape[1])}?"
    return ""


def check_num_classes(model: nn.Module, num_classes: int) -> None:
    """ShapeError unless the model ends in a vector of `num_classes` scores (checked before training).

    Args:
        model: a built Sequential, or any module with `.output_shape` or `.input_shape`.
        num_classes: the dataset's number of classes.
    """
    out = getattr(model, "output_shape", None)
    if out is None and getattr(model, "input_shape", None) is not None:
        with torch.no_grad():
            param = next(model.parameters(), None)
            device = param.device if param is not None else "cpu"
            was_training = model.training
            model.eval()
            out = tuple(model(torch.zeros((1, *model.input_shape), device=device)).shape[1:])
            model.train(was_training)
    if out is None:
        raise ShapeError("the model has no input shape yet; build it with input_shape=(C, H, W) before training.")
    last = _last_layer_label(model)
    if len(out) != 1:
        raise ShapeError(
            f"{last} gives {shape_str(out)}, not one score per class; end the model with Flatten() and "
            f"Dense({num_classes})."
        )
    if out[0] != num_classes:
        raise ShapeError(
            f"{last} gives {out[0]} outputs but the dataset has {num_classes} classes; "
            f"make the last layer Dense({num_classes}) (or pick the dataset with {out[0]} classes)."
        )


def _last_layer_label(model: nn.Module) -> str:
    if isinstance(model, Sequential) and len(model):
        return model[-1].label
    return f"the model's last layer ({type(model).__name__})"


register("Model")(Sequential)  # nested models in configs: {Sequential: {layers: [...]}}
