"""The lecture's output-size formula OH = (H + 2P - FH)/S + 1, TF 'same' padding, and their wording."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from cnnlab.errors import ConfigError, ShapeError


class ShapeWarning(UserWarning):
    """A valid convolution or pooling leaves rows or columns unused ((H + 2P - FH) not divisible by S)."""


def pair(value, what: str) -> tuple[int, int]:
    """Return (h, w) from an int or a 2-sequence of positive-or-zero ints."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be an int or a pair of ints, got {value!r}; write e.g. {what}=3.")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{what} must be an int or a pair of ints (h, w), got {value!r}; write e.g. {what}=3.")


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) for one spatial dim; the extra pad goes after.

    out = ceil(size / stride); total = max((out - 1)*stride + (kernel - 1)*dilation + 1 - size, 0),
    before = total // 2 (top/left), after = total - before (bottom/right). Source: TF's
    tensorflow/python/ops/nn_ops.py and the "padding" note of tf.nn.convolution.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def shape_str(shape) -> str:
    """(64, 7, 7) -> '64x7x7' (channels x height x width)."""
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class Window:
    """One spatial dim of a sliding window: its size, padding and the resulting output size."""

    dim: str  # "H" or "W"
    size: int  # input rows (H) or columns (W)
    kernel: int  # FH as given
    stride: int
    dilation: int
    pad_before: int
    pad_after: int

    @property
    def span(self) -> int:
        """Effective kernel size (FH - 1)*D + 1 once dilated."""
        return (self.kernel - 1) * self.dilation + 1

    @property
    def numerator(self) -> int:
        """H + 2P - FH, which must be a non-negative multiple of S."""
        return self.size + self.pad_before + self.pad_after - self.span

    @property
    def out(self) -> int:
        """floor((H + 2P - FH)/S) + 1, what every framework computes."""
        return self.numerator // self.stride + 1

    @property
    def dropped(self) -> int:
        """Rows/columns at the end that no window reaches."""
        return self.numerator % self.stride if self.numerator >= 0 else 0

    def equation(self) -> str:
        """E.g. '(28 + 2*1 - 3)/1 + 1 = 28', or '(7 + 2*0 - 2)/2 + 1 = 3.5 -> 3' when S does not divide."""
        if self.pad_before == self.pad_after:
            pad = f"2*{self.pad_before}"
        else:
            pad = f"{self.pad_before}+{self.pad_after}"  # TF 'same': the extra pixel goes bottom/right
        exact = self.numerator / self.stride + 1
        result = str(self.out) if exact == self.out else f"{exact:g} -> {self.out}"
        return f"({self.size} + {pad} - {self.span})/{self.stride} + 1 = {result}"

    def dilation_note(self) -> str:
        """Why FH in the equation is not the kernel size: ' (kernel 3 dilated by 4 spans 9)', or ''."""
        if self.dilation == 1:
            return ""
        return f" (kernel {self.kernel} dilated by {self.dilation} spans {self.span})"

    def formula(self) -> str:
        """The equation labelled with its dim, e.g. 'H: (28 + 2*1 - 3)/1 + 1 = 28'."""
        return f"{self.dim}: {self.equation()}{self.dilation_note()}"


def windows(hw: tuple[int, int], kernel, stride, dilation, padding) -> tuple[Window, Window]:
    """The two spatial Windows for padding 'valid' | 'same' | (ph, pw) | ((t, b), (l, r))."""
    out = []
    for i, dim in enumerate("HW"):
        size, k, s, d = hw[i], kernel[i], stride[i], dilation[i]
        if padding == "valid":
            before = after = 0
        elif padding == "same":
            before, after = same_pads(size, k, s, d)
        else:
            before, after = padding[i]
        out.append(Window(dim, size, k, s, d, before, after))
    return out[0], out[1]


def explicit_padding(padding, what: str):
    """Normalise padding to 'valid', 'same' or ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        p = padding.lower()
        if p in ("valid", "same"):
            return p
        raise ConfigError(f"{what} padding must be 'valid', 'same' or a number of pixels, got {padding!r}.")
    if isinstance(padding, (list, tuple)) and len(padding) == 2 and all(
        isinstance(v, (list, tuple)) for v in padding
    ):
        (t, b), (l, r) = padding
        pads = ((int(t), int(b)), (int(l), int(r)))
    else:
        ph, pw = pair(padding, f"{what} padding")
        pads = ((ph, ph), (pw, pw))
    if min(min(p) for p in pads) < 0:
        raise ConfigError(f"{what} padding must not be negative, got {padding!r}.")
    return pads


def check_windows(label: str, input_shape, wins, fix: str, padding=None) -> None:
    """Raise ShapeError when an output is below 1; warn (ShapeWarning) when rows/columns are dropped.

    No warning for padding='same': TensorFlow's rule skips pixels only when the user chose S > FH;
    nor for a window narrower than its stride (ResNet's 1x1 stride-2 shortcut), which skips pixels
    between windows by design, the last ones among them.
    """
    for w in wins:
        if w.out < 1:
            what = "rows" if w.dim == "H" else "columns"
            raise ShapeError(
                f"{label} gets {shape_str(input_shape)}: {w.equation()} "
                f"{what}{w.dilation_note()}; {fix}"
            )
    dropped = [(w.dropped, "row" if w.dim == "H" else "column") for w in wins if w.dropped and w.span >= w.stride]
    if dropped and padding != "same":
        parts = " and ".join(f"the last {n} {name}{'s' if n > 1 else ''}" for n, name in dropped)
        arith = "; ".join(w.formula() for w in wins if w.dropped and w.span >= w.stride)
        warnings.warn(
            f"{label} gets {shape_str(input_shape)} and never reaches {parts} ({arith}, not a whole "
            "number); use padding='same' or an input size that fits the windows.",
            ShapeWarning,
            stacklevel=4,
        )



def padding_config(pads):
    """Inverse of explicit_padding for configs: 'same', 1, [1, 2] or [[0, 1], [0, 1]]."""
    if isinstance(pads, str):
        return pads
    (t, b), (l, r) = pads
    if t == b and l == r:
        return t if t == l else [t, l]
    return [[t, b], [l, r]]
