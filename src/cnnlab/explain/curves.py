"""Learning curves: loss and accuracy per epoch, train vs validation, as the lectures plot them."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cnnlab.errors import DataFormatError
from cnnlab.explain.figures import house_style, new_figure, save_figure

TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"


def read_history(path: str | os.PathLike) -> list[dict]:
    """Rows of history.csv as dicts of floats, epoch as int (empty cells become None)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {k: _num(v) for k, v in raw.items()}
            if isinstance(row.get("epoch"), float) and row["epoch"].is_integer():
                row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


def _num(v):
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return v
    return None if math.isnan(x) else x


def _series(rows: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) where the key has a number."""
    xs, ys = [], []
    for r in rows:
        v = _num(r.get(key))
        if isinstance(v, float):
            xs.append(int(_num(r["epoch"])))
            ys.append(v)
    return xs, ys


def _as_rows(history) -> Sequence[dict]:
    """History rows from rows, a History (model.fit's result) or Keras' dict {"loss": [...], ...}."""
    if hasattr(history, "rows"):
        return history.rows
    if isinstance(history, dict):  # history.history: per-metric lists, epochs counted from 1
        from cnnlab.train.callbacks import KERAS_COLUMNS as column  # Keras' metric names -> history columns

        n = max((len(v) for v in history.values()), default=0)
        return [{"epoch": i + 1, **{column[k]: v[i] for k, v in history.items() if k in column and i < len(v)}}
                for i in range(n)]
    return history


def curves_figure(history_rows: Sequence[dict], title: str | None = None) -> Figure:
    """Loss (left) and accuracy (right) per epoch, train vs validation, best val accuracy marked.

    Args:
        history_rows: dicts with epoch, train_loss, train_acc and optionally val_loss, val_acc
            (numbers or numeric strings, accuracy as a fraction), e.g. runs' history rows; or what
            model.fit returns (a History), or its Keras dict history.history.
        title: optional figure title (the run name).

    Returns:
        A 10 x 4 inch Figure with two Axes; its lines are labelled 'train' and 'validation'.
    """
    history_rows = _as_rows(history_rows)
    if not history_rows:
        raise DataFormatError("curves_figure got no history rows; train at least one epoch first.")
    if any("epoch" not in r for r in history_rows):
        raise DataFormatError("A history row has no 'epoch' column; pass the rows of history.csv.")
    with house_style():
        fig = new_figure(10, 4)
        ax_loss, ax_acc = fig.subplots(1, 2)
        for ax, key, label in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
            for prefix, name, color in (("train", "train", TRAIN_COLOR),
                                        ("val", "validation", VAL_COLOR)):
                xs, ys = _series(history_rows, f"{prefix}_{key}")
                if xs:
                    ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.8, color=color,
                            label=name)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label.lower())
            ax.set_title(label)
            ax.grid(True)
            # epochs are whole numbers; min_n_ticks=1 keeps that for a single epoch, where the
            # default (2) lets MaxNLocator fall back to fractional ticks (0.96, 0.98, ...)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            if ax.lines:
                ax.legend(frameon=False)
        ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
        _mark_best(ax_acc, history_rows)
        if title:
            fig.suptitle(title)
    return fig


def _mark_best(ax, rows: Sequence[dict]) -> None:
    """Ring the epoch with the best validation accuracy and label it."""
    xs, ys = _series(rows, "val_acc")
    if not xs:
        return
    i = max(range(len(ys)), key=ys.__getitem__)  # first epoch reaching the best value
    ax.plot([xs[i]], [ys[i]], marker="o", markersize=11, markerfacecolor="none",
            markeredgecolor=VAL_COLOR, markeredgewidth=1.6, linestyle="none", label="_best")
    late = len(xs) > 1 and i >= len(xs) / 2  # keep the label inside the axes
    ax.annotate(f"best {ys[i]:.2%} (epoch {xs[i]})", (xs[i], ys[i]), xytext=(0, -16),
                textcoords="offset points", ha="right" if late else "left", va="top",
                color=VAL_COLOR, fontsize=9)


def save_curves(history_csv: str | os.PathLike, out_png: str | os.PathLike,
                title: str | None = None) -> Path:
    """Read history.csv and write the curves PNG; returns the PNG path."""
    return save_figure(curves_figure(read_history(history_csv), title), out_png)
