"""Tiny models and data for the training-engine tests; also a script a test can run and kill.

    python tests/_train_helpers.py [--fork-server] RUN_DIR EPOCHS [--resume] [--lr LR] [--hidden N] [--n N]

trains TinyCNN on synthetic data with a CheckpointCallback in RUN_DIR, printing one line per
epoch; exits 130 with the resume message on Ctrl-C and 3 on a TrainingError.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import TrainingError
from cnnlab.train.callbacks import Callback, CheckpointCallback
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.engine import Trainer, TrainingInterrupted, seed_everything
from cnnlab.train.optim import make_optimizer
from cnnlab.train.schedules import make_scheduler


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run ~20x faster on one thread on a shared 2-core machine; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def grayscale_images(n: int, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    """Normalised-looking one-channel images (n, 1, h, w), channels-last, with a flat background band
    (-0.8102, Fashion-MNIST's background after normalisation) where pooling windows tie."""
    x = torch.randn(n, 1, h, w, generator=torch.Generator().manual_seed(seed))
    x[:, :, : h // 4] = -0.8102
    return x.contiguous(memory_format=torch.channels_last)


def train_seed_cnn_bf16(steps: int, batch: int = 16) -> tuple[list[torch.Tensor], list[float]]:
    """`steps` Adam steps of zoo seed-cnn in cnnlab's fast CPU setting (bf16 autocast, channels-last)
    on grayscale_images, all draws seeded; returns (the parameters after, the losses)."""
    import torch.nn.functional as F

    from cnnlab import zoo

    torch.manual_seed(0)
    model = zoo.create("seed-cnn").to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = grayscale_images(batch, seed=int(torch.randint(0, 1000, (1,), generator=g)))
        y = torch.randint(0, 10, (batch,), generator=g)
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return [p.detach().clone() for p in model.parameters()], losses


class FakeBatches:
    """Stand-in for data.loader.TensorBatches: order derives from (seed, epoch) alone; start_at skips batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, batch_index: int) -> None:
        self.start = batch_index

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        start, self.start = self.start, 0  # start_at applies to the next pass only
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


def tiny_data(n: int = 192, classes: int = 4, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable synthetic images (n, 1, size, size): each class brightens its own quadrant, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, 1, size, size, generator=g) * 0.5
    h = size // 2
    for c in range(classes):
        r, col = divmod(c % 4, 2)
        x[y == c, :, r * h:(r + 1) * h, col * h:(col + 1) * h] += 1.5
    return x, y


class TinyCNN(nn.Module):
    """conv 3x3 -> relu -> dropout -> flatten -> dense; dropout makes the RNG matter for resume tests."""

    def __init__(self, classes: int = 4, size: int = 8, hidden: int = 16, p: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(p)
        self.fc1 = nn.Linear(4 * size * size, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1)  # (B, 4*size*size)
        return self.fc2(torch.relu(self.fc1(x)))


def make_trainer(*, seed: int = 0, lr: float = 0.01, optimizer: str = "adam", schedule: str = "cosine",
                 epochs: int = 4, batch_size: int = 32, hidden: int = 16, callbacks=(), ema=None,
                 val: bool = True, n: int = 192, **kw) -> Trainer:
    """A seeded Trainer on tiny_data with shuffling, dropout and a per-batch schedule."""
    seed_everything(seed)
    x, y = tiny_data(n=n)
    model = TinyCNN(hidden=hidden)
    opt = make_optimizer(optimizer, model, lr, weight_decay=1e-4)
    train = FakeBatches(x[: n * 3 // 4], y[: n * 3 // 4], batch_size, seed=seed)
    val_b = FakeBatches(x[n * 3 // 4:], y[n * 3 // 4:], 64, shuffle=False) if val else None
    sched = make_scheduler(schedule, opt, len(train), epochs) if schedule else None
    return Trainer(model, nn.CrossEntropyLoss(), opt, sched, train_batches=train, val_batches=val_b,
                   callbacks=callbacks, ema=ema(model) if callable(ema) else ema, **kw)


class _Announce(Callback):
    """Prints progress lines the controlling test waits for."""

    started = False

    def on_batch_end(self, trainer, logs):
        if not self.started:  # the first step of this process, fresh or resumed
            self.started = True
            print("STARTED", flush=True)

    def on_epoch_end(self, trainer, logs):
        print(f"EPOCH {logs['epoch']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("epochs", type=int)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--n", type=int, default=192)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = Path(a.run_dir) / "checkpoint.pt"
    trainer = make_trainer(lr=a.lr, hidden=a.hidden, epochs=a.epochs, n=a.n,
                           callbacks=[CheckpointCallback(ckpt), _Announce()])
    if a.resume and ckpt.exists():
        trainer.load_state_dict(load_checkpoint(ckpt))
    try:
        trainer.fit(a.epochs)
    except TrainingInterrupted as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 130
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 3
    print("DONE", flush=True)
    return 0


def fork_server(argv: list[str]) -> int:
    """Fork a training child per stdin line, print its pid, then "EXIT <status>" when it ends.

    torch is imported and warmed up once here, so each child starts training in milliseconds and a
    test can kill many real training processes with SIGKILL within seconds.
    """
    import os

    # warm up single-threaded (no OpenMP pool exists, so forking stays safe): lazy imports and
    # first-call setup happen here once instead of in every child
    torch.set_num_threads(1)
    make_trainer(n=64, hidden=8).fit(1)
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = main(argv)
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {os.waitstatus_to_exitcode(status)}", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:
        sys.exit(fork_server(sys.argv[2:]))
    sys.exit(main())
