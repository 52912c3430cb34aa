"""`cnnlab inspect RUN IMAGE`: one image through a trained model, every picture as a PNG."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from cnnlab.atomic import make_folder
from cnnlab.errors import ConfigError
from cnnlab.explain.figures import save_figure
from cnnlab.explain.gradcam import grad_cam, gradcam_figure, gradcam_layer
from cnnlab.explain.maps import (conv_layers, conv_weight, feature_maps, filters_figure,
                                 maps_figure, resolve_conv)


def normalise(image: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (C, H, W) -> float (1, C, H, W) scaled to [0, 1] then (x - mean) / std per channel."""
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ((x - m) / s)[None]


def topk(probs: torch.Tensor, classes: Sequence[str], k: int = 3) -> list[dict]:
    """The k most probable classes: [{"index", "class", "probability"}], highest first."""
    p, i = torch.as_tensor(probs).float().topk(min(k, len(classes)))
    return [{"index": int(j), "class": str(classes[j]), "probability": float(q)}
            for q, j in zip(p.tolist(), i.tolist())]


def safe_name(layer: str) -> str:
    """A layer path usable in a file name: 'features.0' -> 'features_0'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", layer) or "model"


def _device(model):
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def inspect_image(model, image_tensor, classes, mean, std, out_dir, layers=None,
                  class_index=None, top_k: int = 3, target_layer: str | None = None) -> dict:
    """Write feature maps, activation maps, filters and Grad-CAM PNGs for one image.

    Files in out_dir: ``features_<layer>.png`` (before the activation), ``activations_<layer>.png``
    (after), ``filters_<layer>.png`` for every convolution (or the named ones), and
    ``gradcam.png`` for the class explained at target_layer (default the last one in layers, or
    the model's last convolution).

    Args:
        model: the trained classifier (eval mode is used; its mode is restored).
        image_tensor: uint8 (C, H, W) image at the model's input size (cnnlab.data.load_image reads a file).
        classes: class names.
        mean, std: the run's per-channel normalisation.
        out_dir: folder for the PNGs (created).
        layers: convolution names to show (see maps.conv_layers); None for all.
        class_index: class for Grad-CAM; default the predicted one.
        top_k: how many top predictions to return.
        target_layer: Grad-CAM layer; default the last of `layers`, else the last convolution.

    Returns:
        {"paths": {"features": [...], "activations": [...], "filters": [...],
        "gradcam": path}, "topk": [{"index", "class", "probability"}], "class_index": int,
        "target_layer": str, "layers": [names]}.
    """
    out_dir = Path(out_dir)
    if not conv_layers(model):
        raise ConfigError("this model has no convolution, so it has no feature maps, filters or "
                          "Grad-CAM to show; `cnnlab predict` gives its predictions")
    if class_index is not None and not 0 <= class_index < len(classes):
        raise ConfigError(f"class {class_index} is out of range: the model has {len(classes)} "
                          f"classes, 0 ({classes[0]}) to {len(classes) - 1} ({classes[-1]})")
    names = [resolve_conv(model, n)[0] for n in layers] if layers else conv_layers(model)
    x = normalise(image_tensor, mean, std).to(_device(model))
    # Grad-CAM first: a layer it cannot use is refused before any file is written
    target = target_layer or (names[-1] if layers else gradcam_layer(model, x))
    gc = grad_cam(model, x, target, class_index)
    first = conv_layers(model)[:1]
    make_folder(out_dir)  # a file in the way is one sentence (OutputError), before anything is removed
    for old in [*out_dir.glob("features_*.png"), *out_dir.glob("activations_*.png"),
                *out_dir.glob("filters_*.png"), out_dir / "gradcam.png"]:
        old.unlink(missing_ok=True)  # an earlier inspection's pictures would mix with these
    paths: dict = {"features": [], "activations": [], "filters": []}
    for name, lm in feature_maps(model, x, names).items():
        act = "ReLU assumed" if lm.assumed else "after the activation"
        for kind, maps, label in (("features", lm.pre, "feature maps (before the activation)"),
                                  ("activations", lm.post, f"activation maps ({act})")):
            fig = maps_figure(maps, f"layer {name}: {label}")
            paths[kind].append(str(save_figure(fig, out_dir / f"{kind}_{safe_name(name)}.png")))
        w = conv_weight(model, name)
        rgb = name in first and w.shape[1] == 3
        fig = filters_figure(w, rgb=rgb, title=f"layer {name}: filters")
        paths["filters"].append(str(save_figure(fig, out_dir / f"filters_{safe_name(name)}.png")))
    p = float(gc.probs[gc.class_index])
    fig = gradcam_figure(image_tensor, gc.cam,
                         f"Grad-CAM for '{classes[gc.class_index]}' (p={p:.2f}) at layer {target}")
    paths["gradcam"] = str(save_figure(fig, out_dir / "gradcam.png"))
    return {"paths": paths, "topk": topk(gc.probs, classes, top_k),
            "class_index": gc.class_index, "target_layer": target, "layers": names}
