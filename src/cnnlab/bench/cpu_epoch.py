"""cpu-epoch: seconds per epoch of seed-cnn on Fashion-MNIST, cnnlab's engine vs the plain loop.

Same model (zoo seed-cnn; the plain loop gets it written in torch.nn with the same initial
weights), batch 128, Adam 1e-3, the same training images. Three settings are timed in one
process: the tutorial loop (plain_loop.py), cnnlab's Trainer in fp32, and cnnlab's Trainer in the
fastest setting for the machine (train/fast.py: bf16 autocast + channels_last where the CPU has
native bf16; in channels-last, max pooling runs in cnnlab's C kernel, native/, when it could be
built: `native_kernels` in the result says whether it was, `native_threads` on how many threads
it ran). They alternate, so that load from other processes hits all of them alike, and the one
that goes first rotates each round (the same work timed twice in a row ran 5-7% faster the second
time on the 2-core machine, so a fixed order would favour the last). By default a fixed number of
batches is timed after a short untimed warm-up and seconds per epoch are extrapolated
(`batches_timed` says so); `full=True` times whole epochs."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Iterator

import torch
from torch import nn

from cnnlab.data import ImageDataset, TensorBatches
from cnnlab.native.maxpool2x2 import LIBRARY as MAXPOOL_KERNEL
from cnnlab.train.engine import Trainer
from cnnlab.train.fast import fast_settings
from cnnlab.train.optim import make_optimizer

from cnnlab.bench.plain_loop import plain_epoch, tutorial_seed_cnn

MODEL, BATCH, LR = "seed-cnn", 128, 1e-3  # the lecture's settings (../shared/BENCHMARKS.md)


class _FirstBatches:
    """The first n batches of a TensorBatches, with the methods the Trainer calls."""

    def __init__(self, batches: TensorBatches, n: int):
        self.batches, self.n = batches, min(n, len(batches))

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def start_at(self, index: int) -> None:
        self.batches.start_at(index)

    def __iter__(self) -> Iterator:
        for i, batch in enumerate(self.batches):
            if i == self.n:
                return
            yield batch


class _Stopwatch:
    """Trainer callback: starts after `warmup` batches, stops at the end of training."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.seconds = warmup, time.perf_counter(), 0.0

    def on_batch_end(self, trainer: Trainer, logs: dict) -> None:
        if logs["batch"] == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer: Trainer, logs: dict) -> None:
        self.seconds = time.perf_counter() - self.t0


def _sig(x: float, digits: int = 4) -> float:
    """x to `digits` significant digits (seconds from a tiny smoke test keep their precision too)."""
    return float(f"{x:.{digits}g}")


def _model(seed: int, channels_last: bool = False) -> nn.Module:
    from cnnlab import zoo

    torch.manual_seed(seed)
    model = zoo.create(MODEL)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def cnnlab_epoch(data: ImageDataset, *, precision: str, channels_last: bool, batches: int | None,
                 warmup: int, seed: int = 0) -> tuple[float, int]:
    """cnnlab's Trainer over TensorBatches on the CPU; returns (seconds, batches timed)."""
    model = _model(seed, channels_last)
    train_b = TensorBatches(data.x_train, data.y_train, BATCH, shuffle=True, seed=seed, mean=data.mean,
                            std=data.std, channels_last=channels_last)
    n = len(train_b) if batches is None else min(warmup + batches, len(train_b))
    watch = _Stopwatch(warmup)
    trainer = Trainer(model, nn.CrossEntropyLoss(), make_optimizer("adam", model, LR), None,
                      train_batches=_FirstBatches(train_b, n), callbacks=[watch], precision=precision)
    trainer.fit(1)
    return watch.seconds, n - warmup


def bench_cpu_epoch(data: ImageDataset, runs: int = 3, batches: int | None = 150, warmup: int = 5,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Median seconds per epoch of the three settings over `runs` alternating rounds, and their ratios.

    Args:
        data: the training set (Fashion-MNIST for the published figure).
        runs: rounds; each times plain, cnnlab fp32 and cnnlab fast once, round r starting with the
            (r mod 3)-th of them (3 rounds put each setting first once).
        batches: batches timed per setting and round (None: the whole epoch after the warm-up);
            seconds per epoch are extrapolated from them.
        warmup: untimed batches before each timing.
        progress: called with one line per finished round (a round takes tens of seconds).
    """
    fast = fast_settings("cpu")
    per_epoch = math.ceil(len(data.x_train) / BATCH)
    if batches is not None:
        batches = min(batches, per_epoch)
        warmup = min(warmup, per_epoch - batches)  # a small set: time what there is
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = (data.x_train.float() / 255 - mean) / std  # the tutorials' normalised float tensors (N, C, H, W)
    y = data.y_train
    samples: dict[str, list[float]] = {"plain": [], "cnnlab_fp32": [], "cnnlab_fast": []}

    def time_one(setting: str, r: int) -> tuple[float, int]:
        """(seconds, batches timed) of one setting in round r."""
        if setting == "plain":
            return plain_epoch(tutorial_seed_cnn(_model(r)), x, y, batch_size=BATCH, lr=LR, batches=batches,
                               warmup=warmup, seed=r)
        precision, channels_last = ("fp32", False) if setting == "cnnlab_fp32" else (
            fast["precision"], fast["channels_last"])
        return cnnlab_epoch(data, precision=precision, channels_last=channels_last, batches=batches,
                            warmup=warmup, seed=r)

    settings, timed = list(samples), 0
    for r in range(runs):
        for setting in settings[r % 3:] + settings[:r % 3]:  # round r starts with the r-th setting
            seconds, timed = time_one(setting, r)
            samples[setting].append(seconds / timed * per_epoch)
        if progress is not None:
            plain, fp32, fast_s = (samples[k][-1] for k in settings)
            progress(f"cpu-epoch: round {r + 1}/{runs}: plain {plain:.2f} s/epoch, cnnlab fp32 {fp32:.2f}, "
                     f"cnnlab fast {fast_s:.2f} ({fast_s / plain:.3f}x plain)")
    median = {k: statistics.median(v) for k, v in samples.items()}
    native = MAXPOOL_KERNEL.get() is not None
    return {
        "model": MODEL, "batch_size": BATCH, "optimizer": "adam", "lr": LR, "train_images": len(y),
        "batches_per_epoch": per_epoch, "batches_timed": timed, "extrapolated": timed < per_epoch,
        "fast_setting": {"precision": fast["precision"], "channels_last": fast["channels_last"]},
        "native_kernels": native, **({} if native else {"native_kernels_off": MAXPOOL_KERNEL.reason}),
        **({"native_threads": MAXPOOL_KERNEL.threads()} if native else {}),  # torch's OpenMP threads, or 1
        "plain_s_per_epoch": _sig(median["plain"]),
        "cnnlab_fp32_s_per_epoch": _sig(median["cnnlab_fp32"]),
        "cnnlab_fast_s_per_epoch": _sig(median["cnnlab_fast"]),
        "ratio_fp32": _sig(median["cnnlab_fp32"] / median["plain"]),  # cnnlab fp32 / plain
        "ratio_fast": _sig(median["cnnlab_fast"] / median["plain"]),  # cnnlab fast / plain (target <= 0.45)
        "samples_s_per_epoch": {k: [_sig(s) for s in v] for k, v in samples.items()},
        # fast / plain within each round: the two ran seconds apart, so a slow spell of a shared
        # machine that spans a round cancels out here, while the medians above may take their two
        # figures from rounds in different states
        "ratio_fast_per_round": [_sig(f / p) for f, p in zip(samples["cnnlab_fast"], samples["plain"])],
    }
