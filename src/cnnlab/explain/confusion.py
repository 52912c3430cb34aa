"""Evaluation pictures: the confusion matrix (counts and row-normalised) and the top-loss grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from cnnlab.errors import DataFormatError
from cnnlab.explain.figures import GREEN, RED, house_style, new_figure, show_image, tile_axes

CMAP = "Blues"


def _text_color(rgba) -> str:
    """Black or white, whichever reads better on a cell of this colour (WCAG luminance)."""
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4 else "black"


def row_normalise(cm) -> np.ndarray:
    """Each row divided by its sum (the recall view); an empty row stays zero."""
    cm = np.asarray(cm, dtype=np.float64)
    sums = cm.sum(1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def _matrix(ax, values: np.ndarray, classes: Sequence[str], fmt, title: str, vmax: float):
    cmap = colormaps[CMAP]
    im = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax)
    k = len(classes)
    small = k > 12  # shrink cell text for many classes
    for i in range(k):
        for j in range(k):
            v = values[i, j]
            ax.text(j, i, fmt(v), ha="center", va="center", fontsize=6 if small else 8,
                    color=_text_color(cmap(v / vmax if vmax else 0.0)))
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return im


def confusion_figure(cm, classes: Sequence[str], title: str | None = None) -> Figure:
    """Counts (left) and row-normalised fractions (right), class names on both axes.

    Args:
        cm: (K, K) counts, rows = true class, columns = predicted class.
        classes: the K class names.
        title: optional figure title.

    Returns:
        A Figure with two matrix Axes (plus colour bars); cell text is black or white by contrast.
    """
    cm = np.asarray(torch.as_tensor(cm).cpu(), dtype=np.int64)
    k = len(classes)
    if cm.shape != (k, k):
        raise DataFormatError(f"The confusion matrix has shape {cm.shape} but there are {k} "
                              "classes; pass a (K, K) matrix and K class names.")
    side = max(4.5, 0.45 * k + 2.0)  # inches per matrix: ~0.45 in per class keeps digits legible
    with house_style():
        fig = new_figure(2 * side + 1.0, side)
        ax_c, ax_n = fig.subplots(1, 2)
        im = _matrix(ax_c, cm, classes, lambda v: f"{int(v)}", "Counts", max(1, cm.max()))
        fig.colorbar(im, ax=ax_c, shrink=0.8)
        im = _matrix(ax_n, row_normalise(cm), classes,
                     lambda v: "0" if v == 0 else f"{v:.2f}", "Normalised by true class", 1.0)
        fig.colorbar(im, ax=ax_n, shrink=0.8)
        if title:
            fig.suptitle(title)
    return fig


def top_losses_figure(images, y_true, y_pred, p_pred, classes: Sequence[str], *,
                      losses=None, mean=None, std=None, max_cols: int = 8) -> Figure:
    """A grid of examples titled 'true / pred (p)', in red where the prediction is wrong.

    Args:
        images: (N, C, H, W) uint8, or float normalised with mean/std given.
        y_true: (N,) true labels.
        y_pred: (N,) predicted labels.
        p_pred: (N,) probability of the predicted class.
        classes: class names.
        losses: optional (N,) per-example losses, shown under each title.
        mean, std: per-channel normalisation to undo for float images.
        max_cols: grid width.
    """
    n = len(images)
    if n == 0:
        raise DataFormatError("top_losses_figure got no images; pass at least one example.")
    cols = min(n, max_cols)
    rows = -(-n // cols)
    with house_style():
        fig = new_figure(max(5.0, 1.5 * cols), 1.95 * rows + 0.4)
        for i, ax in enumerate(tile_axes(fig, n, cols)):
            show_image(ax, images[i], mean, std)
            t, p = int(y_true[i]), int(y_pred[i])
            sep = " /\n" if len(str(classes[t])) + len(str(classes[p])) > 14 else " / "
            text = f"{classes[t]}{sep}{classes[p]} ({float(p_pred[i]):.2f})"
            if losses is not None:
                text += f"\nloss {float(losses[i]):.2f}"
            ax.set_title(text, fontsize=8, color=RED if t != p else GREEN)
        fig.suptitle("Highest-loss test images: true / predicted (probability)")
    return fig
