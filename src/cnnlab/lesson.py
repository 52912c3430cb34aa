"""Teaching mode: the sliding-window computations of convolution and pooling, step by step, as text.

The numbers come from cnnlab.reference; this module only lays them out the way the lectures do.
As in the lectures and every CNN framework, "convolution" is cross-correlation: the filter is not
flipped.
"""

from __future__ import annotations

import numpy as np

from cnnlab import reference as ref
from cnnlab.errors import ConfigError, ShapeError

# The lecture's worked example (lecture 000): this input and filter give [[40, 32], [26, 25]].
LECTURE_INPUT = [[0, 1, 7, 5], [5, 5, 6, 6], [5, 3, 3, 0], [1, 1, 1, 2]]
LECTURE_KERNEL = [[1, 0, 1], [1, 2, 0], [3, 0, 1]]
LECTURE_POOL_INPUT = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]


def parse_matrix(text: str) -> list[list[float]]:
    """'0,1,7,5;5,5,6,6' (rows split by ';' or newlines, values by ',' or spaces) -> list of rows.

    Args:
        text: the matrix as typed on the command line.
    """
    rows = [r for r in (part.replace(",", " ").split() for part in text.replace("\n", ";").split(";")) if r]
    try:
        matrix = [[float(v) for v in row] for row in rows]
    except ValueError as err:
        raise ConfigError(f"matrix {text!r} has a value that is not a number ({err}); write rows like '0,1,7;5,5,6'.") from None
    if not all(np.isfinite(v) for row in matrix for v in row):
        raise ConfigError(f"matrix {text!r} holds nan or inf; the walk-through needs finite numbers.")
    if not matrix or any(len(r) != len(matrix[0]) for r in matrix):
        raise ConfigError(f"matrix {text!r} needs rows of equal length separated by ';', like '0,1,7;5,5,6'.")
    return matrix


def _array(values, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ConfigError(f"the {what} must be a 2-D matrix (one channel), got shape {a.shape}.")
    return a


def _num(v: float) -> str:
    # 10 significant digits: enough that the printed terms add up to the printed sum (4 did not:
    # -12.746 showed as -12.75), few enough to hide float64 noise (0.1 + 0.2 shows as 0.3)
    return str(int(v)) if float(v).is_integer() else f"{v:.10g}"


def _grid(a: np.ndarray, indent: str = "  ") -> list[str]:
    cells = [[_num(v) for v in row] for row in a]
    width = max(len(c) for row in cells for c in row)
    return [indent + " ".join(c.rjust(width) for c in row) for row in cells]


def _pads(padding, h, w, kh, kw, sh, sw) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for padding 'valid' | 'same' (TensorFlow's) | int."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return (*ref.same_padding(h, kh, sh), *ref.same_padding(w, kw, sw))
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return (padding,) * 4
    raise ConfigError(f"padding must be 'valid', 'same' or a number of zero pixels, got {padding!r}.")


def _formula(dim: str, size: int, before: int, after: int, k: int, s: int) -> str:
    pad = f"2*{before}" if before == after else f"{before}+{after}"
    total = size + before + after - k
    result = _num(total / s + 1)
    out = total // s + 1
    return f"O{dim} = ({size} + {pad} - {k})/{s} + 1 = {result}" + ("" if total % s == 0 else f" -> {out}")


def _stride(stride) -> tuple[int, int]:
    s = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if len(s) != 2 or min(s) < 1:
        raise ConfigError(f"stride must be a positive whole number, got {stride!r}.")
    return s


def explain_conv(input=None, kernel=None, stride=1, padding=0) -> str:
    """The convolution of one channel with one filter, window by window, then the feature map.

    Args:
        input: 2-D matrix (default: the lecture's 4x4 input).
        kernel: 2-D filter (default: the lecture's 3x3 filter, giving [[40, 32], [26, 25]]).
        stride: int or (sh, sw).
        padding: 'valid', 'same' (TensorFlow's) or a number of zero pixels on every side.
    """
    x = _array(LECTURE_INPUT if input is None else input, "input")
    k = _array(LECTURE_KERNEL if kernel is None else kernel, "kernel")
    (sh, sw), (kh, kw), (h, w) = _stride(stride), k.shape, x.shape
    pads = _pads(padding, h, w, kh, kw, sh, sw)
    formulas = [_formula("H", h, pads[0], pads[1], kh, sh), _formula("W", w, pads[2], pads[3], kw, sw)]
    if min(ref.output_size(h, kh, sh, pads[0] + pads[1]), ref.output_size(w, kw, sw, pads[2] + pads[3])) < 1:
        # the least padding P with H + 2P - FH >= 0 in both directions
        fits = max(-(-(kh - h) // 2), -(-(kw - w) // 2), 0)
        raise ShapeError(f"a {kh}x{kw} filter does not fit a {h}x{w} input ({'; '.join(formulas)}); "
                         f"use padding={fits} or more, or 'same', or a smaller filter.")
    y = ref.conv2d_forward(x[None, None], k[None, None], None, (sh, sw), pads)[0, 0]
    xp = np.pad(x, ((pads[0], pads[1]), (pads[2], pads[3])))
    lines = ["Convolution (cross-correlation: the filter slides without flipping, as in every CNN framework)",
             f"input {h}x{w}:", *_grid(x), f"filter {kh}x{kw}:", *_grid(k)]
    if any(pads):
        lines += [f"input with zero padding (top {pads[0]}, bottom {pads[1]}, left {pads[2]}, right {pads[3]}):",
                  *_grid(xp)]
    lines += [f"stride {sh}x{sw}; " + ", ".join(formulas), ""]
    where = " of the padded input" if any(pads) else ""
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            window = xp[i * sh: i * sh + kh, j * sw: j * sw + kw]
            terms = " + ".join(f"{_num(a)}*{_num(b)}" for a, b in zip(window.ravel(), k.ravel()))
            lines.append(f"out[{i}][{j}]: rows {i * sh}-{i * sh + kh - 1}, columns {j * sw}-{j * sw + kw - 1}{where}"
                         f": {terms} = {_num(y[i, j])}")
    lines += ["", f"feature map {y.shape[0]}x{y.shape[1]}:", *_grid(y)]
    return "\n".join(lines)


def explain_pool(input=None, pool_size=2, stride=None, mode: str = "max", padding: str = "valid") -> str:
    """Pooling of one channel, window by window, then the pooled map.

    Args:
        input: 2-D matrix (default: 1..16 as 4x4, whose 2x2 max pooling is [[6, 8], [14, 16]]).
        pool_size: int or (h, w) window.
        stride: int or (sh, sw); None means pool_size.
        mode: 'max', 'avg' or 'min'.
        padding: 'valid' or 'same' (padded positions are not values: never picked, not averaged).
    """
    if mode not in ("max", "avg", "min"):
        raise ConfigError(f"pooling mode must be 'max', 'avg' or 'min', got {mode!r}.")
    if padding not in ("valid", "same"):
        raise ConfigError(f"pooling padding must be 'valid' or 'same', got {padding!r}.")
    x = _array(LECTURE_POOL_INPUT if input is None else input, "input")
    kh, kw = _stride(pool_size)
    sh, sw = (kh, kw) if stride is None else _stride(stride)
    h, w = x.shape
    pads = _pads(padding, h, w, kh, kw, sh, sw)
    formulas = [_formula("H", h, pads[0], pads[1], kh, sh), _formula("W", w, pads[2], pads[3], kw, sw)]
    if min(ref.output_size(h, kh, sh, pads[0] + pads[1]), ref.output_size(w, kw, sw, pads[2] + pads[3])) < 1:
        raise ShapeError(f"a {kh}x{kw} pooling window does not fit a {h}x{w} input ({'; '.join(formulas)}); "
                         "use padding='same' or a smaller pool_size.")
    y = ref.pool2d_forward(x[None, None], (kh, kw), (sh, sw), pads, mode)[0, 0]
    name = {"max": "largest", "avg": "mean", "min": "smallest"}[mode]
    lines = [f"{mode.capitalize()} pooling: each output is the {name} value of its window",
             f"input {h}x{w}:", *_grid(x), f"window {kh}x{kw}, stride {sh}x{sw}; " + ", ".join(formulas), ""]
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            r0, c0 = i * sh - pads[0], j * sw - pads[2]  # window corner in input coordinates
            rows, cols = slice(max(r0, 0), min(r0 + kh, h)), slice(max(c0, 0), min(c0 + kw, w))
            values = ", ".join(_num(v) for v in x[rows, cols].ravel())
            lines.append(f"out[{i}][{j}]: rows {rows.start}-{rows.stop - 1}, columns {cols.start}-{cols.stop - 1}: "
                         f"{mode}({values}) = {_num(y[i, j])}")
    lines += ["", f"pooled map {y.shape[0]}x{y.shape[1]}:", *_grid(y)]
    return "\n".join(lines)
