"""Shared figure helpers: Agg-backed Figures, one house style, grids, atomic writing (PNG, PDF, SVG, ...).

Everything here uses matplotlib's object API (``matplotlib.figure.Figure``), never pyplot, so
no global figure state leaks and nothing opens a window; a notebook shows a returned Figure
inline by evaluating it.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.atomic import write_bytes
from cnnlab.errors import OutputError

DPI = 120  # pixels per inch of every saved PNG (and of the pixels in other formats)

# One look for every picture: readable sizes at 120 dpi, light grid, no top/right spines.
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.alpha": 0.3,
    "image.interpolation": "nearest",  # a 7x7 map must look like 49 pixels, not a blur
    # text is drawn as written: a class or folder named "under_$5" is no mathtext formula (which
    # would fail to parse or lose its $ signs); no house figure uses mathtext or a log axis
    "text.parse_math": False,
}

RED = "#c62828"    # wrong prediction
GREEN = "#2e7d32"  # right prediction


@contextmanager
def house_style():
    """Apply the house rcParams while artists are created (restored afterwards)."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure with an Agg canvas attached, sized in inches at the house dpi."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The Figure rendered as PNG bytes (for embedding in report.html)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def figure_format(path: str | os.PathLike) -> str:
    """The file format a figure path's suffix names ('png' for x.png, 'pdf' for x.PDF), checked up front.

    The formats are matplotlib's (``FigureCanvasBase.get_supported_filetypes()``: png, pdf, svg,
    jpg, eps, ...); call this before long work whose result a bad name would throw away.

    Raises:
        OutputError: the name has no suffix, or one matplotlib cannot write (e.g. .txt), or it is
            .pgf and the TeX program matplotlib needs for it is not installed.
    """
    path = Path(path)
    fmt = path.suffix[1:].lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        names = ", ".join(f".{s}" for s in sorted(supported))
        what = f"matplotlib cannot write .{fmt} files" if fmt else "the name has no suffix to say the format"
        raise OutputError(f"cannot save a figure as {path}: {what}; end the name in one of {names}")
    if fmt == "pgf":
        tex = matplotlib.rcParams["pgf.texsystem"]
        if shutil.which(tex) is None:
            raise OutputError(f"cannot save a figure as {path}: matplotlib needs {tex} for .pgf and it is not "
                              "installed; install it or end the name in .pdf or .svg")
    return fmt


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write the Figure atomically (temp file in the same folder, then os.replace) in the format its
    suffix names: .png, .pdf, .svg, .jpg, ... (see figure_format), at the house dpi on white.

    Args:
        fig: the Figure to write.
        path: destination file; its parent folders are created.

    Returns:
        The path written.

    Raises:
        OutputError: the suffix names no format matplotlib writes, or the file or its folder cannot
            be written (no permission, a file in the way, a read-only or missing place).
    """
    path = Path(path)
    fmt = figure_format(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=fig.dpi, facecolor="white")
    write_bytes(path, buf.getvalue())
    return path


def tile_axes(fig: Figure, n: int, cols: int = 8):
    """n image axes in a grid `cols` wide (spare cells hidden), ticks off; returns the n axes."""
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def to_display(image, mean=None, std=None) -> np.ndarray:
    """An image as float (H, W) or (H, W, 3) in [0, 1] for imshow.

    Accepts uint8 (C, H, W) / (H, W) tensors or arrays (divided by 255), or float ones already in
    [0, 1]; with mean and std, a float image is taken as normalised and mapped back first.
    """
    x = torch.as_tensor(np.asarray(image)) if not torch.is_tensor(image) else image
    x = x.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    else:
        x = x.float()
        if mean is not None and std is not None:
            c = x.shape[0] if x.dim() == 3 else 1
            m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)[:c]
            s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)[:c]
            x = x * s.view(-1, 1, 1) + m.view(-1, 1, 1) if x.dim() == 3 else x * s + m
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)  # (C, H, W) -> (H, W[, C])
    return x.clamp(0, 1).numpy()


def show_image(ax, image, mean=None, std=None):
    """imshow an image (grey for one channel), returning the AxesImage."""
    arr = to_display(image, mean, std)
    cmap = "gray" if arr.ndim == 2 else None
    return ax.imshow(arr, cmap=cmap, vmin=0.0, vmax=1.0)
