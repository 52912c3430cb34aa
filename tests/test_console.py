"""The progress display: a bar on a terminal, plain lines in CI or a log file."""

from __future__ import annotations

import io

from cnnlab.console import Progress, _format_epoch_line

BATCH = {"epoch": 1, "epochs": 2, "batch": 7, "batches": 40, "loss": 0.5, "accuracy": 0.8, "lr": 1e-3}
EPOCH = {"epoch": 1, "train_loss": 0.51234, "train_acc": 0.81, "val_loss": 0.4, "val_acc": 0.85,
         "lr": 1e-3, "seconds": 3.25}


class FakeTrainer:
    train_batches = range(40)
    epoch = 0


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    progress = Progress(epochs=2, stream=out)  # StringIO is no TTY: plain mode
    progress.on_epoch_begin(FakeTrainer(), {"epoch": 1})
    progress._last_plain -= 31  # the 30-second heartbeat is due
    progress.on_batch_end(FakeTrainer(), BATCH)
    progress.on_epoch_end(FakeTrainer(), EPOCH)
    lines = out.getvalue().splitlines()
    assert lines[0] == "  batch 7/40  loss 0.5000  acc 0.8000"
    assert lines[1] == "epoch 1/2  loss 0.5123  acc 0.8100  val_loss 0.4000  val_acc 0.8500  lr 1.00e-03  3.2s"


def test_bar_mode_writes_the_epoch_line_and_quiet_writes_nothing():
    out = io.StringIO()
    progress = Progress(epochs=2, stream=out, bar=True)
    progress.on_epoch_begin(FakeTrainer(), {"epoch": 1})
    progress.on_batch_end(FakeTrainer(), BATCH)
    progress.on_epoch_end(FakeTrainer(), EPOCH)
    assert "epoch 1/2  loss 0.5123" in out.getvalue()
    silent = io.StringIO()
    quiet = Progress(epochs=2, stream=silent, quiet=True)
    for hook, logs in (("on_epoch_begin", {"epoch": 1}), ("on_batch_end", BATCH), ("on_epoch_end", EPOCH)):
        getattr(quiet, hook)(FakeTrainer(), logs)
    assert silent.getvalue() == ""


def test_the_trainers_total_and_its_reason_to_stop_early_are_shown():
    """A resumed run's Progress is made before the run's total is known: the Trainer's wins; a
    callback's stop_reason (early stopping) is said once training ends."""
    out = io.StringIO()
    progress = Progress(epochs=0, stream=out)
    trainer = FakeTrainer()
    trainer.stop_reason = "early stopping: val_loss has not improved for 2 epochs (best 0.4000 at epoch 1)"
    progress.on_train_begin(trainer, {"epochs": 30, "start_epoch": 3})
    progress.on_epoch_end(trainer, {**EPOCH, "epoch": 3})
    progress.on_train_end(trainer, {"epochs_done": 3})
    assert out.getvalue().splitlines() == [
        "epoch 3/30  loss 0.5123  acc 0.8100  val_loss 0.4000  val_acc 0.8500  lr 1.00e-03  3.2s",
        "stopped after epoch 3 of 30: early stopping: val_loss has not improved for 2 epochs (best 0.4000 at epoch 1)"]
    trainer.stop_reason = None
    progress.on_train_end(trainer, {"epochs_done": 30})  # ran its course: nothing more to say
    assert len(out.getvalue().splitlines()) == 2


def test_epoch_line_skips_missing_validation():
    line = _format_epoch_line({**EPOCH, "val_loss": None, "val_acc": float("nan")}, 5)
    assert "val" not in line and line.startswith("epoch 1/5")


def test_a_bar_left_mid_epoch_is_cleared_and_log_lines_pass_above_it(capsys):
    import logging
    import sys

    import pytest

    handler = logging.StreamHandler(sys.stderr)  # as the CLI's logging.basicConfig makes it
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with Progress(epochs=2, stream=sys.stderr, bar=True) as progress:
                progress.on_epoch_begin(FakeTrainer(), {"epoch": 1})
                progress.on_batch_end(FakeTrainer(), BATCH)
                logging.getLogger("cnnlab.train.engine").warning("interrupt: finishing the current step")
                raise KeyboardInterrupt
    finally:
        root.removeHandler(handler)
    assert progress._tqdm is None  # closed on the way out: the terminal is left clean
    text = capsys.readouterr().err
    # the warning went through tqdm.write: the bar was cleared first, so it starts its own line
    assert "\ninterrupt: finishing the current step\n" in text.replace("\r", "\n")


def test_a_resumed_epoch_starts_the_bar_at_its_saved_step_and_members_are_labelled():
    out = io.StringIO()
    progress = Progress(epochs=5, stream=out, bar=True)
    progress.label = "member 2/3"
    progress.on_epoch_begin(FakeTrainer(), {"epoch": 5, "start_step": 32})
    assert progress._tqdm.n == 32 and progress._tqdm.desc.startswith("member 2/3  epoch 5/5")
    progress.on_epoch_end(FakeTrainer(), {**EPOCH, "epoch": 5})
    assert "member 2/3  epoch 5/5  loss" in out.getvalue()


def test_a_pty_without_a_width_gets_plain_lines():
    import os
    import pty

    leader, follower = pty.openpty()  # a new pty reports 0 x 0 until someone sets its size
    try:
        with os.fdopen(follower, "w", closefd=False) as stream:
            assert stream.isatty() and os.get_terminal_size(follower).columns == 0
            assert Progress(epochs=1, stream=stream).bar is False
    finally:
        os.close(leader)
        os.close(follower)
