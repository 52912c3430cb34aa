"""The summary table of any model built from cnnlab layers: shapes, parameters, multiply-adds,
receptive field and the lecture arithmetic per layer."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cnnlab.layers import Layer
from cnnlab.layers.shapes import shape_str
from cnnlab.model import Sequential

BYTES_PER_VALUE = 4  # activation memory assumes float32 outputs


@dataclass
class Row:
    """One layer of the summary, in execution order."""

    index: int
    name: str  # module path, e.g. "3" or "features.0"
    layer: str  # class name
    output_shape: tuple[int, ...]  # without the batch: C x H x W or F
    params: int  # trainable + non-trainable (incl. BatchNorm moving statistics, as Keras counts)
    mult_adds: int  # conv: OH*OW*F*KH*KW*C/groups; dense: IN*OUT
    rf_size: tuple[int, int] | None  # receptive field in input pixels (h, w); None once global
    rf_jump: tuple[int, int]  # input pixels between neighbouring outputs (product of strides)
    arithmetic: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """Rows plus totals; str() is the text table, to_dict() the same as JSON-able data."""

    name: str
    input_shape: tuple[int, ...]
    rows: list[Row]
    trainable: int
    non_trainable: int  # frozen parameters + BatchNorm moving mean/variance (Keras' convention)
    mult_adds: int
    memory_mb: float  # sum of every row's output values * 4 bytes, per sample, in MB (10^6 bytes)

    @property
    def total_params(self) -> int:
        return self.trainable + self.non_trainable

    def to_dict(self) -> dict:
        """JSON-able dict of everything the table shows (for `cnnlab summary --json`)."""
        rows = []
        for row in self.rows:
            item = asdict(row)
            item["output_shape"] = list(row.output_shape)
            item["receptive_field"] = {
                "size": list(row.rf_size) if row.rf_size else "all", "jump": list(row.rf_jump),
            }
            del item["rf_size"], item["rf_jump"]
            rows.append(item)
        return {
            "name": self.name, "input_shape": list(self.input_shape), "layers": rows,
            "total_params": self.total_params, "trainable_params": self.trainable,
            "non_trainable_params": self.non_trainable, "mult_adds": self.mult_adds,
            "activation_memory_mb": round(self.memory_mb, 4),
        }

    def __str__(self) -> str:
        head = ["#", "name", "layer", "output", "params", "mult-adds", "RF size/jump", "arithmetic"]
        body = [[str(r.index), r.name, r.layer, shape_str(r.output_shape), f"{r.params:,}",
                 f"{r.mult_adds:,}", _rf_text(r), _arith_text(r.arithmetic)] for r in self.rows]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
        right = {0, 4, 5}  # numbers align right

        def fmt(line):
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(fmt(["-" * w for w in widths]))
        lines = [f"Model: {self.name}   input: {shape_str(self.input_shape)} (C x H x W)", rule, fmt(head), rule]
        lines += [fmt(line) for line in body]
        lines += [
            rule,
            f"Total params: {self.total_params:,} (trainable {self.trainable:,}, non-trainable "
            f"{self.non_trainable:,} incl. BatchNorm moving statistics, as Keras counts)",
            f"Multiply-adds: {self.mult_adds:,} per sample",
            f"Activation memory: {self.memory_mb:.2f} MB per sample (float32 outputs of every layer)",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        """The table too: `model.summary()` alone in a notebook or the REPL shows it, as Keras's does."""
        return str(self)


def _rf_text(row: Row) -> str:
    if row.rf_size is None:
        return "all"
    pair = lambda p: str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"  # noqa: E731
    return f"{pair(row.rf_size)}/{pair(row.rf_jump)}"


def _arith_text(lines: list[str]) -> str:
    """'H=W: ...' when both dims compute the same, else 'H: ...; W: ...'."""
    if len(lines) == 2 and lines[0][2:] == lines[1][2:]:
        return "H=W:" + lines[0][2:]
    return "; ".join(lines)


def _row_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Path -> module for every summary row: cnnlab layers (not containers) and torch leaves outside them."""
    rows = {}

    def visit(module: nn.Module, prefix: str, inside_layer: bool):
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Sequential):
                visit(child, path, inside_layer)
            elif isinstance(child, Layer):
                rows[path] = child
                visit(child, path, True)  # Residual's inner layers are rows; Conv2D's .conv is not
            elif not any(True for _ in child.children()):
                if not inside_layer and not isinstance(child, nn.Identity):
                    rows[path] = child
            else:
                visit(child, path, inside_layer)

    visit(model, "", False)
    return rows


def _window(module: nn.Module, in_size: tuple[int, ...]):
    """((span_h, span_w), (stride_h, stride_w)) of a windowed module, or None.

    in_size: the module's input (C, H, W) or shorter, for the adaptive pools, whose windows depend on it.
    """
    if isinstance(module, Layer):
        return module.receptive_field()
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and len(in_size) == 3:
        two = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        outs = [o if o is not None else i for o, i in zip(two(module.output_size), in_size[1:])]
        # output cell k pools input cells floor(k*I/O) .. ceil((k+1)*I/O) - 1 (torch's adaptive
        # windows): the widest window, and the widest step between neighbouring windows' starts
        spans = tuple(max(-(-(k + 1) * i // o) - (k * i // o) for k in range(o)) for i, o in zip(in_size[1:], outs))
        steps = tuple(-(-i // o) for i, o in zip(in_size[1:], outs))
        return spans, steps
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        two = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        k, s = two(module.kernel_size), two(module.stride)
        d = two(getattr(module, "dilation", 1))
        return tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d)), s
    return None


def _counted(module: nn.Module) -> dict[int, int]:
    """id -> size of every parameter and BatchNorm moving statistic inside `module`."""
    items = {id(p): p.numel() for p in module.parameters()}
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.running_mean is not None:
            items[id(sub.running_mean)] = sub.running_mean.numel()
            items[id(sub.running_var)] = sub.running_var.numel()
    return items


def _own_params(module: nn.Module, nested: list[nn.Module]) -> int:
    """Parameters + BatchNorm moving statistics of `module` that no nested row module holds."""
    items = _counted(module)
    for inner in nested:
        for key in _counted(inner):
            items.pop(key, None)
    return sum(items.values())


def _mult_adds(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out[0].numel() * kh * kw * module.in_channels // module.groups
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def summarize(model: nn.Module, input_shape, name: str | None = None) -> Summary:
    """Run one zero sample through `model` (eval mode, no grad) and tabulate every layer it calls.

    Args:
        model: a Sequential or any nn.Module built from cnnlab layers (and plain torch leaves).
        input_shape: (C, H, W) or (F,), without the batch dimension.
        name: the model's name in the table (default: its .name or class name).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if isinstance(model, Layer):
        model.build(input_shape)  # ShapeError here, with the layer and fix, rather than mid-forward
    rows_by_path = _row_modules(model)
    path_of = {id(m): p for p, m in rows_by_path.items()}
    calls: list[tuple[str, nn.Module, tuple[int, ...], torch.Tensor, int]] = []
    pending: dict[str, int] = {}  # multiply-adds of a row call still in progress
    owner: dict[int, str] = {}  # conv/linear module id -> path of the row that contains it
    for path, module in rows_by_path.items():
        for sub in module.modules():
            if isinstance(sub, (nn.Conv2d, nn.Linear)):
                owner[id(sub)] = path  # inner rows come later in the dict and overwrite: innermost wins

    def on_row(module, inp, out):
        path = path_of[id(module)]
        in_size = tuple(inp[0].shape[1:]) if inp and torch.is_tensor(inp[0]) else ()
        calls.append((path, module, in_size, out, pending.pop(path, 0)))

    def on_compute(module, inp, out):
        path = owner[id(module)]
        pending[path] = pending.get(path, 0) + _mult_adds(module, inp[0], out)

    # compute hooks first: a torch leaf row (nn.Linear) must add its multiply-adds before on_row reads them
    hooks = [m.register_forward_hook(on_compute) for m in model.modules() if id(m) in owner]
    hooks += [m.register_forward_hook(on_row) for m in rows_by_path.values()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in modes.items():
            module.training = mode

    rows, seen = [], set()
    rf, jump = (1, 1), (1, 1)
    for index, (path, module, in_size, out, mult_adds) in enumerate(calls):
        nested = [m for p, m in rows_by_path.items() if p.startswith(path + ".")]
        params = 0 if id(module) in seen else _own_params(module, nested)
        seen.add(id(module))
        main_path = not any(part in ("shortcut", "downsample") for part in path.split("."))
        window = _window(module, in_size) if main_path and rf is not None else None
        if window is not None:
            span, stride = window
            rf = tuple(r + (s - 1) * j for r, s, j in zip(rf, span, jump))
            jump = tuple(j * s for j, s in zip(jump, stride))
        shape = tuple(out.shape[1:])
        if main_path and len(shape) == 1:
            rf = None  # after Flatten / global pooling every output sees the whole input
        arithmetic = module.arithmetic() if isinstance(module, Layer) else []
        rows.append(Row(index, path, type(module).__name__, shape, params, mult_adds, rf, jump, arithmetic))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)
    memory = sum(math.prod(r.output_shape) for r in rows) * BYTES_PER_VALUE / 1e6
    title = name or getattr(model, "name", None) or type(model).__name__
    return Summary(title, input_shape, rows, trainable, frozen + stats, sum(r.mult_adds for r in rows), memory)
