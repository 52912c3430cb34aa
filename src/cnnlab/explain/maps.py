"""What each convolution sees: feature maps (before the activation), activation maps (after),
and the filters themselves, for any nn.Module.

Layer names are module paths from ``model.named_modules()``. A cnnlab ``Conv2D`` (any module
holding ``.conv: nn.Conv2d`` and ``.activation``) is listed under its own path; its ``.conv``
output is the feature map and the wrapper's output is the activation map ("path.conv" is
accepted too). For a bare ``nn.Conv2d``, or a Conv2D without an activation of its own (Identity:
the zoo's ResNets, or Keras' Conv2D -> BatchNormalization -> Activation), the activation map is
the output of the activation module that runs next, after any normalisation layers (Conv -> BN ->
ReLU as in VGG-BN/ResNet);
when no activation module runs next (a functional F.relu, a residual add in between), it is
ReLU applied to the conv (or following norm) output, and ``LayerMaps.assumed`` says so.
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import ConfigError, DataFormatError
from cnnlab.explain.figures import house_style, new_figure, tile_axes

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
               nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardtanh, nn.Softplus)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


class LayerMaps(NamedTuple):
    """One convolution's maps for one image: pre = feature map, post = activation map."""

    pre: torch.Tensor   # (C, H, W) conv output
    post: torch.Tensor  # (C, H, W) after the activation
    assumed: bool = False  # True when post is ReLU(pre) because no activation module was found


def _is_wrapper(m: nn.Module) -> bool:
    """A cnnlab Conv2D, recognised by shape rather than class so any look-alike works too."""
    return isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(
        getattr(m, "activation", None), nn.Module)


def _activates(m: nn.Module) -> bool:
    """A wrapper that applies its own activation (not Identity): its output is the activation map."""
    return _is_wrapper(m) and not isinstance(m.activation, nn.Identity)


def conv_layers(model: nn.Module) -> list[str]:
    """Names of every convolution, in definition order (a cnnlab Conv2D by its own path)."""
    names, wrapped = [], set()
    for name, m in model.named_modules():
        if _is_wrapper(m):
            names.append(name)
            wrapped.add(id(m.conv))
        elif isinstance(m, nn.Conv2d) and id(m) not in wrapped:
            names.append(name)
    return names


def resolve_conv(model: nn.Module, name: str) -> tuple[str, nn.Module, nn.Conv2d]:
    """(canonical name, wrapper or conv, the nn.Conv2d) for a layer name; ConfigError if unknown."""
    modules = dict(model.named_modules())
    valid = conv_layers(model)
    canonical = name[: -len(".conv")] if name.endswith(".conv") and name[:-5] in valid else name
    if canonical not in valid:
        raise ConfigError(f"Layer {name!r} is not a convolution of this model; valid names: "
                          f"{', '.join(valid) or '(none: the model has no Conv2d)'}.")
    m = modules[canonical]
    return canonical, m, (m.conv if _is_wrapper(m) else m)


def conv_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The (out, in, kh, kw) kernel tensor of the named convolution, detached on the CPU."""
    return resolve_conv(model, name)[2].weight.detach().cpu()


def _as_batch(x: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """(1, C, H, W) float: a uint8 image as the dataset holds it is scaled to [0, 1], then normalised
    as the model was trained (input_mean / input_std of a loaded run, as the facade does)."""
    x = torch.as_tensor(x)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise DataFormatError(f"Expected one image (C, H, W) or (1, C, H, W), got shape "
                              f"{tuple(x.shape)}; pass a single normalised image.")
    if x.dtype == torch.uint8:
        from cnnlab.facade_inputs import normalise

        x = normalise(model, x.float() / 255.0)
    elif not x.is_floating_point():
        raise DataFormatError(f"Expected a uint8 or float image, got {x.dtype}; convert it with .float()")
    return x


def run_watched(model: nn.Module, x: torch.Tensor, hook, modules) -> None:
    """One eval-mode, gradient-free forward pass of x with `hook` as a forward hook on each of
    `modules`; the model's mode is restored and the hooks removed afterwards."""
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def feature_maps(model: nn.Module, x: torch.Tensor, layers=None) -> dict[str, LayerMaps]:
    """Feature and activation maps of every convolution (or the named ones) for one image.

    Args:
        model: any nn.Module; run in eval mode, its mode restored afterwards.
        x: one image, (C, H, W) or (1, C, H, W), on the model's device: float and normalised as in
            training, or uint8 as the dataset holds it (then scaled and normalised here).
        layers: layer names from conv_layers(model) (or module paths ending in .conv); None for
            all.

    Returns:
        {name: LayerMaps(pre (C, H, W), post (C, H, W), assumed)} on the CPU, in layer order.
    """
    x = _as_batch(x, model)
    names = conv_layers(model) if layers is None else list(layers)
    targets = [resolve_conv(model, n) for n in names]
    captured: dict[int, torch.Tensor] = {}  # id(module) -> first output, image 0
    # leaf calls in execution order: (module, its output's image 0, the input tensor, the output tensor);
    # the tensors themselves, to tell whether a module was fed the one before's output
    events: list[tuple[nn.Module, torch.Tensor, torch.Tensor | None, torch.Tensor]] = []

    def keep(module, inputs, out):
        if torch.is_tensor(out) and out.dim() == 4:
            t = out[0].detach().clone()  # clone: a later in-place ReLU would overwrite it
            captured.setdefault(id(module), t)
            if not list(module.children()):
                events.append((module, t, inputs[0] if inputs and torch.is_tensor(inputs[0]) else None, out))

    hooked = {id(m): m for _, w, c in targets for m in (w, c)}
    if not all(_activates(w) for _, w, _ in targets):  # watch every leaf to find what follows
        hooked.update({id(m): m for m in model.modules() if not list(m.children())})
    run_watched(model, x, keep, hooked.values())
    out = {}
    for name, wrapper, conv in targets:
        if id(conv) not in captured:
            raise ConfigError(f"Layer {name!r} did not run in the forward pass, so it has no "
                              "feature map; pick a layer the model uses.")
        pre = captured[id(conv)].cpu()
        if _activates(wrapper):
            out[name] = LayerMaps(pre, captured[id(wrapper)].cpu())
        else:
            post, assumed = _following_activation(events, conv, pre)
            out[name] = LayerMaps(pre, post.cpu(), assumed)
    return out


def _following_activation(events, conv, pre) -> tuple[torch.Tensor, bool]:
    """The output of the activation module that runs on conv's output (through norms and identities
    fed one by the other), or ReLU of that output, assumed, when something else comes between: a
    residual add (ResNet's bn2 + identity), a pooling, a functional F.relu."""
    i = next(i for i, event in enumerate(events) if event[0] is conv)
    last, fed = pre, events[i][3]  # fed: the tensor the next module must take for the chain to go on
    for m, t, inp, out in events[i + 1:]:
        if inp is not fed or t.shape != pre.shape:
            break
        if isinstance(m, (*NORMS, nn.Identity)):
            last, fed = t, out
            continue
        if isinstance(m, ACTIVATIONS):
            return t, False
        break
    return torch.relu(last), True


def normalize_channels(maps) -> tuple[np.ndarray, np.ndarray]:
    """Each channel scaled to its own [0, 1]; constant channels set to 0.5.

    Returns:
        (scaled (C, H, W) float32, constant (C,) bool).
    """
    a = np.asarray(torch.as_tensor(maps).detach().cpu().float())
    lo = a.min(axis=(1, 2), keepdims=True)
    hi = a.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    constant = (span <= 1e-7 * np.maximum(1.0, np.abs(hi))).reshape(-1)
    scaled = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 0.5)
    scaled[constant] = 0.5
    return scaled.astype(np.float32), constant


def maps_figure(maps, title: str | None = None, *, max_channels: int = 64,
                cmap: str = "viridis") -> Figure:
    """A labelled grid of one layer's maps, each channel normalised to its own min/max.

    Args:
        maps: (C, H, W) feature or activation maps (e.g. feature_maps(...)[name].pre).
        title: figure title, e.g. "features.0: feature maps (before ReLU)".
        max_channels: show at most this many channels (the first ones).
        cmap: colormap; a constant channel is drawn mid-grey and labelled 'const'.
    """
    maps = torch.as_tensor(maps)
    if maps.dim() != 3:
        raise DataFormatError(f"maps_figure needs (C, H, W) maps, got shape {tuple(maps.shape)}.")
    c = maps.shape[0]
    n = min(c, max_channels)
    scaled, constant = normalize_channels(maps[:n])
    cols = min(8, max(1, int(np.ceil(np.sqrt(n)))))
    rows = -(-n // cols)
    with house_style():
        fig = new_figure(max(5.0, 1.15 * cols + 0.3), 1.2 * rows + 0.8)
        for i, ax in enumerate(tile_axes(fig, n, cols)):
            if constant[i]:
                ax.imshow(scaled[i], cmap="gray", vmin=0.0, vmax=1.0)
                ax.set_title(f"{i} const", fontsize=7.5, color="#666666")
            else:
                ax.imshow(scaled[i], cmap=cmap, vmin=0.0, vmax=1.0)
                ax.set_title(str(i), fontsize=7.5)
        shown = f" (first {n} of {c} channels)" if n < c else f" ({c} channels)"
        fig.suptitle(textwrap.fill((title or "maps") + shown, 60))
    return fig


def filters_figure(conv_weight, rgb: bool = False, title: str | None = None, *,
                   max_filters: int = 64, max_inputs: int = 8) -> Figure:
    """The kernels of one convolution as small images.

    With rgb=True and 3 input channels each filter is one colour tile scaled to its own
    min/max (the first layer of an RGB model). Otherwise each (filter, input channel) kernel is
    a tile on a shared red (+) / blue (-) scale centred at zero, so sizes compare across tiles.

    Args:
        conv_weight: (out, in, kh, kw) tensor, an nn.Conv2d, or a cnnlab Conv2D layer.
        rgb: show 3-input-channel filters in colour.
        title: figure title.
        max_filters: at most this many output filters (rows, or tiles in the RGB/1-input view).
        max_inputs: at most this many input channels per filter (columns).
    """
    if isinstance(getattr(conv_weight, "conv", None), nn.Conv2d):  # cnnlab's Conv2D holds torch's as .conv
        conv_weight = conv_weight.conv
    w = conv_weight.weight if isinstance(conv_weight, nn.Conv2d) else conv_weight
    w = torch.as_tensor(w).detach().cpu().float()
    if w.dim() != 4:
        raise DataFormatError(f"filters_figure needs (out, in, kh, kw) weights, got shape "
                              f"{tuple(w.shape)}.")
    o, i = w.shape[:2]
    with house_style():
        if rgb and i == 3:
            shown = w[:max_filters]
            fig = _rgb_filters(shown)
        elif i == 1:
            shown = w[:max_filters]
            fig = _grey_filters(shown[:, 0])
        else:
            shown = w[: min(o, max_filters, 16), :max_inputs]
            fig = _filter_matrix(shown)
        ttl = title or "filters"
        trimmed = []  # say what was left out, as maps_figure does
        if shown.shape[0] < o:
            trimmed.append(f"first {shown.shape[0]} of {o} filters")
        if shown.shape[1] < i and not (rgb and i == 3) and i != 1:
            trimmed.append(f"first {shown.shape[1]} of {i} inputs")
        more = f"; {', '.join(trimmed)}" if trimmed else ""
        fig.suptitle(f"{ttl} ({o} x {i} x {w.shape[2]}x{w.shape[3]}{more})")
    return fig


def _rgb_filters(w: torch.Tensor) -> Figure:
    n = w.shape[0]
    rows, cols = -(-n // min(8, n)), min(8, n)
    fig = new_figure(max(4.0, 1.0 * cols + 0.3), 1.0 * rows + 0.7)
    for k, ax in enumerate(tile_axes(fig, n, cols)):
        f = w[k]
        f = (f - f.min()) / (f.max() - f.min()).clamp_min(1e-12)
        ax.imshow(f.permute(1, 2, 0).numpy())
        ax.set_title(str(k), fontsize=7.5)
    return fig


def _grey_filters(w: torch.Tensor) -> Figure:
    """Single-input-channel kernels (n, kh, kw) on one diverging scale."""
    n = w.shape[0]
    cols = min(8, n)
    rows = -(-n // cols)
    vmax = float(w.abs().max()) or 1.0
    fig = new_figure(max(4.0, 1.0 * cols + 1.0), 1.0 * rows + 0.7)
    axes = tile_axes(fig, n, cols)
    for k, ax in enumerate(axes):
        im = ax.imshow(w[k].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(str(k), fontsize=7.5)
    fig.colorbar(im, ax=axes, shrink=0.6)
    return fig


def _filter_matrix(w: torch.Tensor) -> Figure:
    """Rows = output filters, columns = input channels, one diverging scale."""
    o, i = w.shape[:2]
    vmax = float(w.abs().max()) or 1.0
    fig = new_figure(max(4.0, 0.65 * i + 1.6), 0.65 * o + 0.7)
    axes = fig.subplots(o, i, squeeze=False)
    for r in range(o):
        for c in range(i):
            ax = axes[r, c]
            im = ax.imshow(w[r, c].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(f"in {c}", fontsize=7.5)
            if c == 0:
                ax.set_ylabel(f"out {r}", fontsize=7.5)
    fig.colorbar(im, ax=axes, shrink=0.6)
    return fig
