"""Checkpoints: atomic writes, clear errors for missing/corrupt files, and survival of SIGKILL at random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_helpers import make_trainer, single_thread  # noqa: F401 (autouse fixture)
from cnnlab.errors import CheckpointError, OutputError
from cnnlab.train.checkpoint import atomic_write, load_checkpoint, save_checkpoint

HELPER = Path(__file__).with_name("_train_helpers.py")


def _state() -> dict:
    """A real Trainer.state_dict() after one epoch."""
    trainer = make_trainer(epochs=1, n=64)
    trainer.fit(1)
    return trainer.state_dict()


def test_round_trip_is_weights_only_loadable(tmp_path):
    state = {**_state(), "name": "x", "pair": (1, 2.5)}
    path = save_checkpoint(tmp_path / "checkpoint.pt", state)
    raw = torch.load(path, weights_only=True)  # no pickle of arbitrary objects inside
    assert raw["format"] == "cnnlab-checkpoint"
    back = load_checkpoint(tmp_path)  # a run directory works too
    assert torch.equal(back["model"]["fc2.weight"], state["model"]["fc2.weight"])
    assert back["history"] == state["history"] and back["epoch"] == 1
    assert back["pair"] == (1, 2.5) and torch.equal(back["rng"]["torch"], state["rng"]["torch"])


@pytest.mark.parametrize("change, says", [
    (lambda s: {}, "lacks the training state's 'model'"),
    (lambda s: {k: v for k, v in s.items() if k != "rng"}, "lacks the training state's 'rng'"),
    (lambda s: {**s, "epoch": "one"}, "has a str as its epoch"),
    (lambda s: {**s, "epoch": -1}, "has epoch -1, below 0"),
    (lambda s: {**s, "scheduler": [1]}, "has a list as its scheduler"),
    (lambda s: {**s, "partial": {}}, "lacks the training state's 'loss_sum'"),
    (lambda s: {**s, "history": [3]}, "has a history row that is not"),
    (lambda s: [1, 2], "holds a list where the training state should be"),
])
def test_forged_state_is_a_checkpoint_error(tmp_path, change, says):
    torch.save({"format": "cnnlab-checkpoint", "version": 1, "state": change(_state())}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=rf"checkpoint .*checkpoint.pt {says}.*restart the run without --resume"):
        load_checkpoint(tmp_path)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_unsafe_pickle_is_refused_for_safety_not_called_corrupt(tmp_path):
    for name, payload in {"code.pt": {"x": _RunsCode()}, "class.pt": {"opt": torch.optim.SGD}}.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(CheckpointError, match=rf"{name} holds code or objects that are not weights, so it "
                                                  r"was refused for safety"):
            load_checkpoint(tmp_path / name)


def _full_disk(tmp_path) -> Path:
    """A 64 KiB tmpfs under tmp_path (skips where mounting is not permitted); unmounted afterwards."""
    place = tmp_path / "tiny"
    place.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(place)],
                                                 capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs is not permitted here")
    return place


def test_full_disk_while_saving_is_an_output_error(tmp_path):
    place = _full_disk(tmp_path)
    try:
        with pytest.raises(OutputError, match=r"cannot write .*checkpoint.pt \(No space left on device\); "
                                              r"free some space"):
            save_checkpoint(place / "checkpoint.pt", {"w": torch.randn(100_000)})  # 400 KB
        assert list(place.iterdir()) == []  # no temporary left filling the disk
    finally:
        subprocess.run(["umount", str(place)], check=True)


def test_missing_checkpoint_and_missing_run(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint.pt in .*: the run did not finish its first epoch; "
                                              r"start it again without --resume"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"run directory .*nowhere does not exist"):
        load_checkpoint(tmp_path / "nowhere" / "checkpoint.pt")


def test_corrupt_truncated_and_foreign_files_name_the_file(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.randn(1000)}).read_bytes()
    cases = {"truncated.pt": good[: len(good) // 2], "garbage.pt": os.urandom(4096), "empty.pt": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"checkpoint .*{name} is corrupt or truncated"):
            load_checkpoint(tmp_path / name)
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")  # a torch file, but not ours
    with pytest.raises(CheckpointError, match=r"plain.pt is not a cnnlab checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "cnnlab-checkpoint", "version": 99, "state": {}}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99.*upgrade cnnlab"):
        load_checkpoint(tmp_path / "future.pt")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, {"epoch": 1})
    before = target.read_bytes()

    def half_then_crash(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    stale = tmp_path / ".checkpoint.pt.stale.tmp"  # left by a killed writer, long ago
    stale.write_bytes(b"left by a killed writer")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    save_checkpoint(target, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def _read_until(proc: subprocess.Popen, prefix: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"training process ended before printing {prefix!r}: {proc.stderr.read()}")
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"timed out waiting for {prefix!r}")


def test_sigkill_at_random_moments_never_leaves_a_run_that_cannot_resume(tmp_path):
    """Kill real training processes 24 times, each at a random moment; every time the run resumes."""
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    rng = random.Random(1234)
    # a ~1.6 MB checkpoint (hidden 512, Adam) written after every 7-step epoch: kills land mid-write too
    server = subprocess.Popen([sys.executable, str(HELPER), "--fork-server", str(run), "1000000", "--resume",
                               "--hidden", "512", "--n", "256"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    epochs, torn = [], 0
    try:
        for _ in range(24):
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            _read_until(server, "STARTED", deadline)  # it loaded the last checkpoint and is training
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(pid, signal.SIGKILL)
            assert _read_until(server, "EXIT", deadline) == "EXIT -9"
            torn += any(run.glob(".checkpoint.pt.*.tmp"))  # killed mid-write: its temporary is left over
            if ckpt.exists():
                state = load_checkpoint(ckpt)  # never torn: the previous complete file or the new one
                epochs.append(state["epoch"])
        server.stdin.close()
        server.wait(timeout=30)
    finally:
        server.kill()
    assert len(epochs) >= 20 and epochs == sorted(epochs) and epochs[-1] > 0
    # a fresh interpreter resumes the last state and finishes one more epoch
    done = subprocess.run([sys.executable, str(HELPER), str(run), str(epochs[-1] + 1), "--resume",
                           "--hidden", "512", "--n", "256"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "DONE" in done.stdout, done.stderr
    assert load_checkpoint(ckpt)["epoch"] == epochs[-1] + 1
    print(f"{len(epochs)} kills, {torn} with a checkpoint write in flight, last epoch {epochs[-1]}")
