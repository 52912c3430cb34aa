"""Training progress on the terminal: a live bar on a TTY, plain lines in CI or a log file.

This is the one library module that writes to the terminal. The CLI passes it to the trainer as a
callback, and so does ``Sequential.fit(verbose=1)``; everything else reports through callbacks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TextIO


def _format_epoch_line(logs: dict, epochs: int) -> str:
    """One line per epoch, Keras-like: ``epoch 3/10  loss 0.412  acc 0.853  val_loss ...  4.1s``."""
    parts = [f"epoch {logs['epoch']}/{epochs}"]
    for key, label in (("train_loss", "loss"), ("train_acc", "acc"),
                       ("val_loss", "val_loss"), ("val_acc", "val_acc")):
        value = logs.get(key)
        if value is not None and value == value:  # skip None and NaN (no validation set)
            parts.append(f"{label} {value:.4f}")
    if logs.get("lr") is not None:
        parts.append(f"lr {logs['lr']:.2e}")
    if logs.get("seconds") is not None:
        parts.append(f"{logs['seconds']:.1f}s")
    return "  ".join(parts)


def _sized_terminal(stream: TextIO) -> bool:
    """True when stream is a terminal with a width: some ptys (`script` run without one, a few
    `docker run -t` setups) report 0 columns, where tqdm draws nothing at all."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


class Progress:
    """Trainer callback showing batches, running loss and accuracy, and a line per epoch.

    Used as a context manager (`with Progress(...) as p:`), it also clears a bar that training
    left mid-epoch (Ctrl-C, an error) and routes log lines past the bar, so a message never
    sticks to a half-drawn bar.

    Args:
        epochs: total epochs, for the "epoch 3/10" label (the Trainer's own total replaces it when
            training begins, so a resumed run shows the right one).
        stream: where to write (stderr by default, so stdout stays clean for results).
        bar: force the live bar on or off; by default on when ``stream`` is a terminal.
        quiet: write nothing at all.
    """

    def __init__(self, epochs: int, stream: TextIO | None = None, bar: bool | None = None,
                 quiet: bool = False):
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.bar = _sized_terminal(self.stream) if bar is None else bar
        self.quiet = quiet
        self.label = ""  # e.g. "member 2/5" while an ensemble trains its members
        self._tqdm = None
        self._last_plain = 0.0
        self._exits = contextlib.ExitStack()

    def __enter__(self) -> "Progress":
        if self.bar and not self.quiet:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._exits.enter_context(logging_redirect_tqdm())  # log lines via tqdm.write, above the bar
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._exits.close()

    def close(self) -> None:
        """Remove a bar left mid-epoch."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def _prefix(self, text: str) -> str:
        return f"{self.label}  {text}" if self.label else text

    def _write(self, line: str) -> None:
        if self._tqdm is not None:
            self._tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def on_train_begin(self, trainer, logs=None) -> None:
        self.epochs = (logs or {}).get("epochs") or self.epochs

    def on_epoch_begin(self, trainer, logs=None) -> None:
        if self.quiet or not self.bar:
            self._last_plain = time.monotonic()
            return
        from tqdm import tqdm

        epoch = (logs or {}).get("epoch", getattr(trainer, "epoch", 0) + 1)
        # a resumed epoch starts at its saved step, so the rate and time left count only new batches
        self._tqdm = tqdm(total=len(trainer.train_batches), desc=self._prefix(f"epoch {epoch}/{self.epochs}"),
                          unit="batch", file=self.stream, leave=False, dynamic_ncols=True,
                          initial=(logs or {}).get("start_step", 0))

    def on_batch_end(self, trainer, logs=None) -> None:
        if self.quiet or not logs:
            return
        if self._tqdm is not None:
            self._tqdm.update(logs.get("batch", self._tqdm.n + 1) - self._tqdm.n)
            self._tqdm.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['accuracy']:.4f}",
                                   refresh=False)
        elif time.monotonic() - self._last_plain > 30:  # plain mode: a heartbeat every 30 s
            self._last_plain = time.monotonic()
            self._write(self._prefix("") + f"  batch {logs['batch']}/{logs['batches']}  "
                        f"loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}")

    def on_epoch_end(self, trainer, logs=None) -> None:
        self.close()
        if not self.quiet and logs:
            self._write(self._prefix(_format_epoch_line(logs, self.epochs)))

    def on_train_end(self, trainer, logs=None) -> None:
        self.close()
        reason = getattr(trainer, "stop_reason", None)
        if reason and not self.quiet:
            done = (logs or {}).get("epochs_done", getattr(trainer, "epoch", 0))
            self._write(self._prefix(f"stopped after epoch {done} of {self.epochs}: {reason}"))


class DownloadBar:
    """An ``on_progress(done_bytes, total_bytes)`` callback drawing a download bar; close() ends
    the bar when a download fails midway, so an error message starts on a line of its own."""

    def __init__(self, label: str, stream: TextIO | None = None):
        self.label, self.stream, self._bar = label, stream, None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total or None, desc=self.label, unit="B", unit_scale=True,
                             file=self.stream or sys.stderr, leave=False)
        self._bar.update(done - self._bar.n)
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def download_bar(label: str, quiet: bool = False, stream: TextIO | None = None) -> DownloadBar | None:
    """A DownloadBar labelled `label`, or None (no callback) when quiet."""
    return None if quiet else DownloadBar(label, stream)
