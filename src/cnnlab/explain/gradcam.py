"""Grad-CAM: where in the image the evidence for a class sits.

Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization" (arXiv:1610.02391): for the target layer's activations A (K, h, w) and the class
score y_c (the logit, before softmax), the weights are alpha_k = mean_ij dy_c/dA_kij, and the map
is ReLU(sum_k alpha_k A_k), upsampled to the input size. For a model that ends in softmax (the
lectures' Keras models) the logit is the softmax's input, taken there: not log p_c, whose gradient
also carries that of log sum_j exp(y_j) and gives another map.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.outputs import final_softmax
from cnnlab.explain.figures import house_style, new_figure, show_image, to_display
from cnnlab.explain.maps import _as_batch, conv_layers, resolve_conv, run_watched


class GradCam(NamedTuple):
    cam: torch.Tensor       # (H, W) float32 in [0, 1], input resolution, CPU
    class_index: int        # the class explained
    probs: torch.Tensor     # (K,) softmax probabilities of the image, CPU


def _spatial_sizes(model: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> list[int]:
    """h * w of each module's (1, C, h, w) output for x, from one forward pass (0: no such output)."""
    sizes: dict[int, int] = {}

    def keep(module, _inputs, out):
        if torch.is_tensor(out) and out.dim() == 4:
            sizes.setdefault(id(module), out.shape[-2] * out.shape[-1])

    run_watched(model, x, keep, modules)
    return [sizes.get(id(m), 0) for m in modules]


def _target_module(model: nn.Module, name: str | None, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The module whose output is explained: the one named (a cnnlab Conv2D's path: its activation
    map; "path.conv": its convolution's output), default the activation map of the last convolution
    whose output is larger than 1x1 (LeNet-5's C5 is 120x1x1: a one-pixel map, upsampled, is flat)."""
    if name is None:
        convs = [resolve_conv(model, c)[:2] for c in conv_layers(model)]
        if not convs:
            raise ConfigError("Grad-CAM needs a convolution but this model has none; pass "
                              "target_layer= naming a layer with (C, H, W) output.")
        sizes = _spatial_sizes(model, [m for _, m in convs], x)
        spatial = [c for c, size in zip(convs, sizes) if size > 1]
        return (spatial or convs)[-1]
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        raise ConfigError(f"Layer {name!r} is not in this model; pick one of "
                          f"{', '.join(n for n in modules if n)} (convolutions: "
                          f"{', '.join(conv_layers(model))}).")
    return name, modules[name]


def gradcam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer grad_cam explains by default for image x (1, C, H, W): the last convolution whose
    output is larger than 1x1."""
    return _target_module(model, None, _as_batch(x, model))[0]


def grad_cam(model: nn.Module, x: torch.Tensor, target_layer: str | None = None,
             class_index: int | None = None) -> GradCam:
    """Grad-CAM heat map of one image for one class.

    The model runs in eval mode with its parameters' requires_grad switched off (only the target
    activations get a gradient); its mode and flags are restored afterwards.

    Args:
        model: any classifier returning logits (1, K), or probabilities if it ends in softmax.
        x: one image (C, H, W) or (1, C, H, W) on the model's device: float and normalised as in
            training, or uint8 as the dataset holds it (then scaled and normalised here).
        target_layer: a module path from named_modules() whose output is (1, C, h, w); default the
            last convolution whose output is larger than 1x1 (for a cnnlab Conv2D, its activation map).
        class_index: the class to explain; default the predicted one.

    Returns:
        GradCam(cam (H, W) in [0, 1], class_index, probs (K,)).
    """
    x = _as_batch(x, model)
    _, module = _target_module(model, target_layer, x)
    grabbed: list[torch.Tensor] = []

    def swap(_m, _inputs, out):
        if grabbed or not torch.is_tensor(out):
            return None  # explain the first call only
        leaf = out.detach().requires_grad_(True)
        grabbed.append(leaf)
        return leaf.clone()  # a non-leaf, so a later in-place ReLU stays legal

    logits_in: list[torch.Tensor] = []  # a model ending in softmax: its input, the logits

    def grab_logits(_m, inputs):
        logits_in.append(inputs[0])

    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    handles = [module.register_forward_hook(swap)]
    softmax = final_softmax(model)
    if softmax is not None:
        handles.append(softmax.register_forward_pre_hook(grab_logits))
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            out = model(x)
            logits = logits_in[-1] if logits_in else out  # (1, K)
            if not grabbed or grabbed[0].dim() != 4:
                raise ConfigError(f"Layer {target_layer!r} gave no (1, C, h, w) output for "
                                  "Grad-CAM; pick a convolutional layer.")
            probs = torch.softmax(logits.detach().float(), dim=1)[0].cpu()
            k = int(probs.argmax()) if class_index is None else int(class_index)
            if not 0 <= k < probs.numel():
                raise ConfigError(f"class_index {k} is out of range for {probs.numel()} classes; "
                                  f"pass 0..{probs.numel() - 1}.")
            (grad,) = torch.autograd.grad(logits[0, k], grabbed[0])
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    acts = grabbed[0].detach()[0].float()            # (K, h, w)
    weights = grad[0].float().mean(dim=(1, 2))       # (K,) alpha_k: spatial mean of the gradient
    cam = torch.relu((weights[:, None, None] * acts).sum(0))  # (h, w)
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear",
                        align_corners=False)[0, 0]
    top = cam.max()
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    return GradCam(cam.cpu(), k, probs)


def overlay(image, cam, *, mean=None, std=None, alpha: float = 0.45,
            cmap: str = "jet") -> np.ndarray:
    """The image blended with the coloured CAM: (H, W, 3) float in [0, 1]."""
    base = to_display(image, mean, std)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    heat = colormaps[cmap](np.asarray(torch.as_tensor(cam).cpu(), dtype=np.float32))[..., :3]
    return np.clip((1 - alpha) * base + alpha * heat, 0.0, 1.0)


def gradcam_figure(image, cam, title: str | None = None, *, mean=None, std=None,
                   alpha: float = 0.45) -> Figure:
    """The image (left) and the Grad-CAM overlay (right, jet colormap, with a colour bar).

    Args:
        image: (C, H, W) uint8, or float normalised with mean/std given.
        cam: (H, W) map in [0, 1] from grad_cam.
        title: figure title, e.g. "Grad-CAM for 'Ankle boot' (p=0.97) at layer 6".
        mean, std: per-channel normalisation to undo for float images.
        alpha: opacity of the heat map.
    """
    with house_style():
        fig = new_figure(6.4, 3.4)
        ax_img, ax_cam = fig.subplots(1, 2)
        show_image(ax_img, image, mean, std)
        ax_img.set_title("image")
        ax_cam.imshow(overlay(image, cam, mean=mean, std=std, alpha=alpha),
                      interpolation="bilinear")
        sm = ScalarMappable(norm=Normalize(0.0, 1.0), cmap="jet")  # feeds the colour bar
        ax_cam.set_title("Grad-CAM")
        for ax in (ax_img, ax_cam):
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(sm, ax=ax_cam, shrink=0.8, label="relevance")
        if title:
            fig.suptitle(title)
    return fig
