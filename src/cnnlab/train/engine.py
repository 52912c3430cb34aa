"""The training loop: small, with explicit callbacks, and nothing in it knows what the model is.

Batches are any iterable of (x, y) on the device with TensorBatches' methods set_epoch(e),
start_at(batch_index) and __len__, so a resumed run re-enters an epoch at the exact batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, TrainingError
from cnnlab.outputs import as_logits, ends_in_softmax
from cnnlab.train.checkpoint import check_optimizer, state_mismatch
from cnnlab.train.regularize import ModelEMA, regularization_loss, regularizing_modules
from cnnlab.train.reproduce import pick_device, rng_state, seed_everything, set_rng_state  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


class TrainingInterrupted(CnnlabError):
    """Ctrl-C stopped training after the current step; the state was saved for --resume."""

    def __init__(self, message: str, *, epoch: int, step: int, saved_to: str | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.saved_to = epoch, step, saved_to


class History:
    """Per-epoch rows (epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds) and Keras' dict view."""

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
    _KERAS = {"loss": "train_loss", "accuracy": "train_acc", "val_loss": "val_loss",
              "val_accuracy": "val_acc", "lr": "lr", "seconds": "seconds"}

    def __init__(self, rows: Sequence[dict] = ()) -> None:
        self.rows = [dict(r) for r in rows]

    @property
    def epoch(self) -> list[int]:
        """1-based epoch numbers."""
        return [r["epoch"] for r in self.rows]

    @property
    def history(self) -> dict[str, list]:
        """Keras' History.history: loss, accuracy, (val_loss, val_accuracy,) lr, seconds -> per-epoch lists."""
        has_val = any(r["val_loss"] is not None for r in self.rows)
        return {k: [r[col] for r in self.rows] for k, col in self._KERAS.items()
                if has_val or not k.startswith("val_")}


def _correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of argmax hits; y is class indices (B,) or soft/one-hot targets (B, K)."""
    target = y.argmax(1) if y.ndim == 2 else y
    return (out.argmax(1) == target).sum()


def _new_partial() -> dict[str, Any]:
    """Running sums of the epoch in progress (saved in the checkpoint for a mid-epoch resume)."""
    return {"loss_sum": 0.0, "correct": 0.0, "count": 0, "seconds": 0.0, "lr": None}


class Trainer:
    """Fits any model to batches with an optimizer, optional per-batch scheduler, EMA and callbacks.

    Callbacks are objects with any of on_train_begin / on_epoch_begin / on_batch_end /
    on_epoch_end / on_train_end(trainer, logs), on_interrupt(trainer) -> saved path or None,
    and state_dict() / load_state_dict() when they carry state across a resume.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any = None, *, train_batches: Iterable, val_batches: Iterable | None = None,
                 callbacks: Sequence[Any] = (), device: str | torch.device = "cpu", precision: str = "fp32",
                 grad_clip: float | None = None, ema: ModelEMA | None = None, sync_every: int | None = None,
                 mark_graph_steps: bool = False) -> None:
        """Args:
            model: already on `device`; the trainer calls it, and looks only at whether it ends in
                softmax (outputs.ends_in_softmax).
            loss_fn: (logits (B, K), y) -> mean loss, e.g. nn.CrossEntropyLoss(label_smoothing=0.1). A
                model that ends in softmax (the lectures' Keras models) has its probabilities
                handed over as log-probabilities, which are logits for them (cnnlab/outputs.py).
            optimizer: e.g. optim.make_optimizer(...).
            scheduler: per-batch scheduler (schedules.make_scheduler) or None; stepped after each step.
            train_batches: yields (x, y) on the device; has set_epoch, start_at, __len__.
            val_batches: iterable of (x, y) for val_loss / val_acc each epoch, or None.
            callbacks: see the class docstring; run sorted by their `order` attribute (default 0).
            device: where the batches and model live (autocast uses its type).
            precision: fp32 or bf16 (torch.autocast with bfloat16; no grad scaler needed).
            grad_clip: clip the global gradient 2-norm to this value, or None.
            ema: a ModelEMA updated after each step; validation then uses the averaged weights.
            sync_every: read the loss back to the host every this many steps (None: 1 on the CPU,
                where it costs nothing, 32 on a GPU, where a read per step would make the host
                wait for each step before queueing the next). The finiteness check happens at each
                read, so with 1 a NaN/Inf loss stops training before the optimizer moves; with
                more, at most sync_every - 1 more steps run first (the error names the first bad step).
            mark_graph_steps: tell torch.compile's CUDA graphs where each step starts
                (torch.compiler.cudagraph_mark_step_begin) before every forward pass: needed when the
                model is compiled with a mode that records CUDA graphs (reduce-overhead,
                max-autotune), whose next replay overwrites the last one's outputs.
        """
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision '{precision}' is not supported: use fp32 or bf16")
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.train_batches, self.val_batches = train_batches, val_batches
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))  # checkpoint last
        self.device = torch.device(device)
        self.precision, self.grad_clip, self.ema = precision, grad_clip, ema
        self.mark_graph_steps = mark_graph_steps
        if sync_every is not None and sync_every < 1:
            raise ConfigError(f"sync_every must be at least 1, got {sync_every}")
        self.sync_every = sync_every or (1 if self.device.type == "cpu" else 32)
        self._pending: list[tuple[torch.Tensor, int, int, float]] = []  # (loss/correct, batch size, step, lr)
        self.reg_modules = regularizing_modules(model)
        self.softmax_output = ends_in_softmax(model)  # outputs probabilities: the loss gets their log
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # batches done in the current epoch
        self.global_step = 0
        self.epochs = 0  # the target of the current fit()
        self.history = History()
        self.stop_training = False
        self.stop_reason: str | None = None  # why a callback set stop_training, for the progress output
        self._partial = _new_partial()
        self._interrupt = False

    # ---- the loop ----
    def fit(self, epochs: int) -> History:
        """Train until `epochs` epochs are complete in total (a resumed trainer continues where it stopped).

        Raises TrainingError on a NaN/Inf loss (before that step's update on the CPU; see sync_every) and
        TrainingInterrupted after Ctrl-C (once the current step is done and the state saved).
        """
        self.epochs, self.stop_training, self.stop_reason, self._interrupt = epochs, False, None, False
        old_handler = self._install_sigint()
        try:
            self._call("on_train_begin", {"epochs": epochs, "start_epoch": self.epoch + 1})
            while self.epoch < epochs and not self.stop_training:
                self._call("on_epoch_begin", {"epoch": self.epoch + 1, "epochs": epochs,
                                              "start_step": self.step_in_epoch})
                row = self._run_epoch()
                self._call("on_epoch_end", {**row, "epochs": epochs})
                # a Ctrl-C in the epoch a callback ends training with (early stopping) lets it end:
                # a checkpoint would not keep that decision, and a resumed run would train on
                if self._interrupt and not self.stop_training:
                    self._raise_interrupted()
            self._call("on_train_end", {"epochs_done": self.epoch})
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        return self.history

    def restart_epoch(self) -> None:
        """Forget the batches of an epoch a failed fit() left half done (its weight updates stay), so
        the next fit() trains that epoch whole and reports only its own loss and accuracy."""
        self.step_in_epoch, self._partial, self._pending = 0, _new_partial(), []

    def _run_epoch(self) -> dict[str, Any]:
        batches, p = self.train_batches, self._partial
        batches.set_epoch(self.epoch)
        batches.start_at(self.step_in_epoch)
        n = len(batches)
        self.model.train()
        t0 = time.perf_counter()
        for x, y in batches:
            lr = self.optimizer.param_groups[0]["lr"]
            self._step(x, y)
            self.step_in_epoch += 1
            self.global_step += 1
            if len(self._pending) >= self.sync_every or p["count"] == 0:
                self._read_pending()
            self._call("on_batch_end", {"epoch": self.epoch + 1, "epochs": self.epochs, "batch": self.step_in_epoch,
                                        "batches": n, "loss": p["loss_sum"] / p["count"],
                                        "accuracy": p["correct"] / p["count"], "lr": lr})
            if self._interrupt:
                self._read_pending()
                p["seconds"] += time.perf_counter() - t0
                self._raise_interrupted()
        self._read_pending()
        val_loss, val_acc = self.evaluate(self.val_batches) if self.val_batches is not None else (None, None)
        count = max(p["count"], 1)
        row = {"epoch": self.epoch + 1, "train_loss": p["loss_sum"] / count, "train_acc": p["correct"] / count,
               "val_loss": val_loss, "val_acc": val_acc,
               "lr": p["lr"] if p["lr"] is not None else self.optimizer.param_groups[0]["lr"],
               "seconds": p["seconds"] + time.perf_counter() - t0}
        self.history.rows.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        self._partial = _new_partial()
        return row

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Data loss plus the layers' kernel-regulariser penalties."""
        loss = self.loss_fn(as_logits(out, self.softmax_output), y)
        reg = regularization_loss(self.model, self.reg_modules)
        return loss if reg is None else loss + reg

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step; its loss and correct count wait, on the device, for _read_pending.

        With sync_every 1 the read happens here, before the update, so a non-finite loss raises
        before the optimizer moves any parameter (BatchNorm running statistics have already seen
        that forward pass: reload the checkpoint, not this model).
        """
        if self.mark_graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        with self._autocast():
            out = self.model(x)
            loss = self._loss(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats = torch.stack([loss.detach().float(), _correct(out, y).float()])  # (2,) on the device
        self._pending.append((stats, int(y.shape[0]), self.step_in_epoch + 1,
                              self.optimizer.param_groups[0]["lr"]))
        if self.sync_every == 1:
            self._read_pending()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update()

    def _read_pending(self) -> None:
        """Copy the queued steps' loss and correct counts to the host (one sync), add them to the
        epoch's running sums, and raise TrainingError at the first non-finite loss."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = torch.stack([stats for stats, *_ in pending]).tolist()
        p = self._partial
        for (loss_value, correct), (_, b, step, lr) in zip(values, pending):
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss became {'nan' if math.isnan(loss_value) else 'inf'} at epoch {self.epoch + 1}, "
                    f"step {step} (lr {lr:.3g}): the learning rate is probably too high (try "
                    f"{lr / 10:.3g}) or the input has NaNs")
            p["loss_sum"] += loss_value * b
            p["correct"] += correct
            p["count"] += b
            p["lr"] = lr  # the lr of the epoch's last step goes in its history row

    @torch.no_grad()
    def evaluate(self, batches: Iterable) -> tuple[float, float]:
        """Mean loss (with the regulariser penalty, as Keras reports it) and accuracy over batches.

        Uses the EMA weights when the trainer has an EMA. Sums stay on the device (one sync at the end).
        """
        was_training = self.model.training
        self.model.eval()
        acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64  # mps has no float64
        loss_sum = torch.zeros((), dtype=acc_dtype, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        ema = self.ema.applied() if self.ema is not None else contextlib.nullcontext()
        with ema, self._autocast():
            for x, y in batches:
                if self.mark_graph_steps:
                    torch.compiler.cudagraph_mark_step_begin()
                out = self.model(x)
                loss_sum += self.loss_fn(as_logits(out, self.softmax_output), y).to(acc_dtype) * y.shape[0]
                correct += _correct(out, y)
                count += int(y.shape[0])
            reg = regularization_loss(self.model, self.reg_modules)
        self.model.train(was_training)
        if count == 0:
            raise ConfigError("evaluation got no batches: the validation/test set is empty; check val_split")
        loss = loss_sum.item() / count + (0.0 if reg is None else float(reg))
        return loss, correct.item() / count

    # ---- callbacks and Ctrl-C ----
    def _call(self, hook: str, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, logs)

    def _install_sigint(self) -> Any:
        """Route Ctrl-C to a flag for the duration of fit (main thread only); returns the old handler."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(signum: int, frame: Any) -> None:
            if self._interrupt:  # a second Ctrl-C: stop at once (the last checkpoint stays valid)
                raise KeyboardInterrupt
            self._interrupt = True
            log.warning("interrupt: finishing the current step, then saving (Ctrl-C again to abort at once)")

        return signal.signal(signal.SIGINT, on_sigint)

    def _raise_interrupted(self) -> None:
        saved = [s for s in (cb.on_interrupt(self) for cb in self.callbacks if hasattr(cb, "on_interrupt")) if s]
        where = str(saved[0]) if saved else None
        at = f"epoch {self.epoch + 1}, step {self.step_in_epoch}"
        if where is None:
            msg = f"training interrupted at {at}; nothing was saved (no checkpoint callback), so it cannot resume"
        else:
            run = str(Path(where).parent)
            msg = f"training interrupted at {at}; the state is saved in {where}: continue with `cnnlab train --resume {run}`"
        raise TrainingInterrupted(msg, epoch=self.epoch + 1, step=self.step_in_epoch, saved_to=where)

    # ---- exact resume ----
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs, as tensors and plain values (weights_only-loadable)."""
        self._read_pending()  # the running sums must include every step taken
        inner = getattr(self.model, "_orig_mod", self.model)
        return {
            "model": inner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_class": type(self.optimizer).__name__,  # resuming with another one is refused
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "partial": dict(self._partial),
            "history": [dict(r) for r in self.history.rows],
            "rng": rng_state(),
            "callbacks": {self._cb_key(i, cb): cb.state_dict() for i, cb in enumerate(self.callbacks)
                          if hasattr(cb, "state_dict")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict(): the next fit() continues at the same epoch, batch and RNG draw."""
        inner = getattr(self.model, "_orig_mod", self.model)
        mismatch = state_mismatch(inner.state_dict(), state["model"])
        if mismatch:
            raise CheckpointError(f"the checkpoint's weights do not fit this model ({mismatch}): it was "
                                  "saved by another model or config; resume with the run's own "
                                  "checkpoint.pt")
        check_optimizer(self.optimizer, state)
        try:
            inner.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:  # e.g. other parameter groups
            reason = str(exc).strip().splitlines()[-1].strip()
            raise CheckpointError(f"the checkpoint does not fit this model and optimizer ({reason}): it "
                                  "was saved by another model or config; resume with the run's own "
                                  "checkpoint.pt") from None
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ConfigError("the checkpoint and this run disagree on having a scheduler: resume with the "
                              "run's own config")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if (state["ema"] is None) != (self.ema is None):
            raise ConfigError("the checkpoint and this run disagree on using EMA: resume with the run's own config")
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step = state["global_step"]
        self._partial = dict(state["partial"])
        self.history = History(state["history"])
        for i, cb in enumerate(self.callbacks):
            key = self._cb_key(i, cb)
            if key in state["callbacks"] and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(state["callbacks"][key])
        set_rng_state(state["rng"])

    @staticmethod
    def _cb_key(i: int, cb: Any) -> str:
        return f"{i}-{type(cb).__name__}"
