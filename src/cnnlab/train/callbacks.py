"""Callbacks users expect: early stopping, checkpoint every epoch, CSV history, reduce-on-plateau, TensorBoard.

A callback is any object with some of on_train_begin / on_epoch_begin / on_batch_end / on_epoch_end /
on_train_end(trainer, logs) and on_interrupt(trainer). The Trainer runs them sorted by `order`
(default 0), so the checkpoint (order 100) saves after the others have updated their state.
"""

from __future__ import annotations

import copy
import csv
import io
import math
from pathlib import Path
from typing import Any

from torch.optim.lr_scheduler import LambdaLR

from cnnlab.errors import ConfigError
from cnnlab.train.config import closest
from cnnlab.train.checkpoint import atomic_write, save_checkpoint

# Keras metric names (accuracy as compile(metrics=["acc"]) names it too) -> history-row columns
KERAS_COLUMNS = {"loss": "train_loss", "accuracy": "train_acc", "acc": "train_acc", "val_loss": "val_loss",
           "val_accuracy": "val_acc", "val_acc": "val_acc", "train_loss": "train_loss", "train_acc": "train_acc"}


class Callback:
    """No-op base class; subclass and override the hooks you need."""

    order = 0

    def on_train_begin(self, trainer: Any, logs: dict) -> None: ...
    def on_epoch_begin(self, trainer: Any, logs: dict) -> None: ...
    def on_batch_end(self, trainer: Any, logs: dict) -> None: ...
    def on_epoch_end(self, trainer: Any, logs: dict) -> None: ...
    def on_train_end(self, trainer: Any, logs: dict) -> None: ...

    def on_interrupt(self, trainer: Any) -> str | None:
        """Ctrl-C: save what must survive; return where it was saved (or None)."""
        return None


class _Monitor(Callback):
    """Tracks the best value of one logged metric (min for losses, max otherwise).

    Its state starts afresh at each on_train_begin, so one instance serves several fits (as Keras'
    do), except right after load_state_dict: a resumed run keeps the state it saved.
    """

    def __init__(self, monitor: str, min_delta: float, mode: str = "auto", keras_only: dict | None = None) -> None:
        if keras_only:  # Keras arguments cnnlab has no use for, e.g. start_from_epoch
            raise ConfigError(f"{type(self).__name__} does not take Keras' {next(iter(keras_only))}=: leave it out")
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"{type(self).__name__} mode must be 'auto', 'min' or 'max', got {mode!r}")
        if monitor not in KERAS_COLUMNS:
            near = closest(monitor, KERAS_COLUMNS)
            hint = f"did you mean {near}? " if near else ""
            raise ConfigError(f"{type(self).__name__} cannot monitor {monitor!r}: {hint}the history has "
                              f"{', '.join(KERAS_COLUMNS)}")
        self.monitor, self.min_delta = monitor, abs(min_delta)
        self.column = KERAS_COLUMNS[monitor]
        self.mode = ("min" if "loss" in monitor else "max") if mode == "auto" else mode
        self._resumed = False
        self.reset()

    def reset(self) -> None:
        """Forget earlier fits: no best value yet, nothing waited."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0

    def on_train_begin(self, trainer: Any, logs: dict) -> None:
        if not self._resumed:
            self.reset()
        self._resumed = False

    def check_available(self, trainer: Any, who: str) -> None:
        if self.column.startswith("val_") and trainer.val_batches is None:
            raise ConfigError(f"{who} monitors {self.monitor} but there is no validation data: give fit "
                              f"validation_data or validation_split (cnnlab train: val_split > 0), or monitor "
                              f"'loss'")

    def improved(self, logs: dict) -> bool:
        """Compare logs[monitor] with the best so far, updating best/wait; True on an improvement."""
        value = logs[self.column]
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return better


class EarlyStopping(_Monitor):
    """Stop when the monitored metric has not improved by min_delta for `patience` epochs (Keras' EarlyStopping).

    With restore_best (Keras' restore_best_weights), training ends with the weights (and EMA) of the
    best epoch. Unlike Keras, whose default is False, it is on unless turned off.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True, *, restore_best_weights: bool | None = None, mode: str = "auto",
                 baseline: float | None = None, verbose: int = 0, **keras_only) -> None:
        """Args:
            monitor: val_loss | val_accuracy | loss | accuracy (acc, val_acc too; or a history column name).
            patience: epochs without improvement before stopping.
            min_delta: smallest change that counts as an improvement.
            restore_best: end with the best epoch's weights.
            restore_best_weights: Keras' name for restore_best; when given, it decides.
            mode: 'min' or 'max' (whether lower or higher is better); 'auto' infers it from the name.
            baseline: as Keras', a value the metric must beat: until it does, epochs count as
                without improvement.
            verbose: taken for Keras' sake; the progress display always says why training stopped.
        """
        self.baseline = baseline  # before reset(), which the base class calls
        super().__init__(monitor, min_delta, mode, keras_only)
        self.patience = patience
        self.restore_best = restore_best if restore_best_weights is None else restore_best_weights

    def reset(self) -> None:
        super().reset()
        if self.baseline is not None:
            self.best = float(self.baseline)
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.best_state: dict | None = None

    def on_train_begin(self, trainer: Any, logs: dict) -> None:
        super().on_train_begin(trainer, logs)
        self.check_available(trainer, "early stopping")

    def on_epoch_end(self, trainer: Any, logs: dict) -> None:
        if self.improved(logs):
            self.best_epoch = logs["epoch"]
            if self.restore_best:
                self.best_state = _snapshot(trainer)
        elif self.wait >= self.patience:
            self.stopped_epoch = logs["epoch"]
            trainer.stop_training = True
            kept = f"; the weights of epoch {self.best_epoch} are kept" if self.restore_best and self.best_epoch else ""
            best = (f"best {self.best:.4f} at epoch {self.best_epoch}" if self.best_epoch
                    else f"never better than the baseline {self.best:.4f}")
            trainer.stop_reason = (f"early stopping: {self.monitor} has not improved for {self.wait} "
                                   f"epoch{'s' if self.wait != 1 else ''} ({best}){kept}")

    def on_train_end(self, trainer: Any, logs: dict) -> None:
        if self.restore_best and self.best_state is not None and self.best_epoch != trainer.epoch:
            inner = getattr(trainer.model, "_orig_mod", trainer.model)
            inner.load_state_dict(self.best_state["model"])
            if trainer.ema is not None:
                trainer.ema.load_state_dict(self.best_state["ema"])

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait, self.best_epoch = state["best"], state["wait"], state["best_epoch"]
        self.stopped_epoch, self.best_state = state["stopped_epoch"], state["best_state"]
        self._resumed = True  # the next on_train_begin keeps this state


def _snapshot(trainer: Any) -> dict:
    """A detached copy of the model's weights and EMA state."""
    inner = getattr(trainer.model, "_orig_mod", trainer.model)
    return {"model": {k: v.detach().clone() for k, v in inner.state_dict().items()},
            "ema": copy.deepcopy(trainer.ema.state_dict()) if trainer.ema is not None else None}


class ReduceLROnPlateau(_Monitor):
    """Multiply the lr by `factor` when the monitored metric stalls for `patience` epochs (Keras semantics).

    Works on top of a LambdaLR schedule (constant, step, exponential, cosine: their base lr is scaled)
    or with no scheduler; not with onecycle, whose lr is fully prescribed.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 3,
                 min_delta: float = 0.0, min_lr: float = 0.0, cooldown: int = 0, *, mode: str = "auto",
                 verbose: int = 0, **keras_only) -> None:
        """Args:
            monitor: val_loss | val_accuracy | loss | accuracy.
            factor: lr multiplier on a plateau (0 < factor < 1).
            patience: epochs without improvement before reducing.
            min_delta: smallest change that counts as an improvement.
            min_lr: the lr never goes below this.
            cooldown: epochs to wait after a reduction before counting again.
            mode: 'min' or 'max'; 'auto' infers it from the name.
            verbose: taken for Keras' sake; the lr column of the history shows each reduction.
        """
        super().__init__(monitor, min_delta, mode, keras_only)
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"plateau factor must be in (0, 1), got {factor}: try 0.1 or 0.5")
        self.factor, self.patience, self.min_lr, self.cooldown = factor, patience, min_lr, cooldown

    def reset(self) -> None:
        super().reset()
        self.cooldown_left = 0
        self.reductions = 0

    def on_train_begin(self, trainer: Any, logs: dict) -> None:
        super().on_train_begin(trainer, logs)
        self.check_available(trainer, "reduce-on-plateau")
        if trainer.scheduler is not None and not isinstance(trainer.scheduler, LambdaLR):
            raise ConfigError(f"reduce_on_plateau cannot be combined with {type(trainer.scheduler).__name__}: "
                              f"use a constant, step, exponential or cosine schedule")

    def on_epoch_end(self, trainer: Any, logs: dict) -> None:
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.improved(logs) or self.wait < self.patience:
            return
        groups, sched = trainer.optimizer.param_groups, trainer.scheduler
        bases = sched.base_lrs if sched is not None else [g["lr"] for g in groups]
        for i, (g, base) in enumerate(zip(groups, bases)):
            new = max(base * self.factor, self.min_lr)
            if base > 0:
                g["lr"] *= new / base  # the next step's lr; the scheduler keeps it via base_lrs
            if sched is not None:
                sched.base_lrs[i] = new
        self.reductions += 1
        self.wait, self.cooldown_left = 0, self.cooldown

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left,
                "reductions": self.reductions}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait = state["best"], state["wait"]
        self.cooldown_left, self.reductions = state["cooldown_left"], state["reductions"]
        self._resumed = True


class CheckpointCallback(Callback):
    """Save trainer.state_dict() atomically after every epoch and on Ctrl-C (the previous file stays until then)."""

    order = 100  # after every other callback, so their updated state is in the file

    def __init__(self, path: str | Path, extra: dict | None = None) -> None:
        """Args:
            path: the checkpoint file, usually RUN/checkpoint.pt.
            extra: plain values stored beside the state under "extra" (e.g. the run's config dict).
        """
        self.path, self.extra = Path(path), extra

    def save(self, trainer: Any) -> Path:
        state = trainer.state_dict()
        if self.extra is not None:
            state["extra"] = self.extra
        return save_checkpoint(self.path, state)

    def on_epoch_end(self, trainer: Any, logs: dict) -> None:
        self.save(trainer)

    def on_interrupt(self, trainer: Any) -> str:
        return str(self.save(trainer))


class CSVHistory(Callback):
    """history.csv (epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds), rewritten atomically each epoch."""

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer: Any, logs: dict) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in trainer.history.rows:  # all rows, so a resumed run keeps the earlier epochs
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in self.COLUMNS})
        data = buf.getvalue().encode("utf-8")
        atomic_write(self.path, lambda f: f.write(data))


class TensorBoard(Callback):
    """Write the per-epoch history row to TensorBoard (needs the optional tensorboard package)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_train_begin(self, trainer: Any, logs: dict) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("TensorBoard logging needs the tensorboard package: "
                              "pip install 'cnnlab[tensorboard]' or drop --tensorboard") from None
        self.writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, trainer: Any, logs: dict) -> None:
        step = logs["epoch"]
        for name, value in logs.items():
            if name not in ("epoch", "epochs") and isinstance(value, (int, float)):
                self.writer.add_scalar(name.replace("_", "/", 1), value, step)  # train/loss, val/acc, ...
        self.writer.flush()

    def on_train_end(self, trainer: Any, logs: dict) -> None:
        if self.writer is not None:
            self.writer.close()
