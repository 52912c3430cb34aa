"""gpu-recipe: test accuracy (mean, min over seeds) and seconds of `--recipe fast|best` on a GPU.

Timed as airbench times itself: the data already on the GPU (uint8, moved before the clock
starts), one untimed warm-up epoch (cuDNN autotuning, allocator), then per seed the wall time of
training plus test-time-augmented evaluation with the GPU synchronised at both ends.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

from cnnlab.bench.session import accuracy_on_test, timed, to_device, train_in_memory
from cnnlab.data import ImageDataset
from cnnlab.train.recipes import recipe_config, recipe_tta

TARGETS = {"fast": (0.950, 2.5), "best": (0.962, 300.0)}  # (mean accuracy, seconds) on one H100, issue 6


def recipe_run(data: ImageDataset, device: torch.device, recipe: str, seed: int,
               **overrides) -> tuple[float, float, list[float]]:
    """One seed: (test accuracy with the recipe's TTA, seconds of training + evaluation, seconds of
    each epoch's training).

    data should already be on device (session.to_device), as airbench keeps it.
    """
    cfg = recipe_config(data.name, recipe, device, seed=seed, **overrides)
    tta = recipe_tta(data.name, recipe, device)

    def run() -> tuple[float, list[float]]:
        session = train_in_memory(cfg, data, device)
        return accuracy_on_test(session.model, cfg, data, device, tta), session.epoch_seconds

    (accuracy, epoch_seconds), seconds = timed(run, device)
    return float(accuracy), seconds, list(epoch_seconds)


def bench_gpu_recipe(data: ImageDataset, device: torch.device, recipe: str, runs: int = 5, warmup: bool = True,
                     progress: Callable[[str], None] | None = None, first_seed: int = 0, **overrides) -> dict:
    """Mean and minimum test accuracy and mean seconds over `runs` seeds (first_seed, first_seed + 1,
    ...), after a warm-up.

    Args:
        data: the dataset in memory.
        device: a CUDA device for the published figure (the code runs anywhere).
        recipe: "fast" or "best".
        runs: seeds.
        warmup: one untimed, unscored epoch first (seed 1000): cuDNN's autotuning, the allocator's
            first allocations and any compilation stay out of the timed runs. Every run seeds
            everything afresh, so a scored seed 1000 later in the series trains as it would alone.
        progress: called with one line per finished run (the best recipe takes minutes a seed).
        first_seed: the first seed; a later call with first_seed = runs continues the series (the
            best recipe's five seeds take ~23 minutes on an H100, more than one device call allows).
        **overrides: TrainConfig fields over the recipe (e.g. epochs=1 for a smoke test).
    """
    data = to_device(data, device)  # before any clock starts
    if warmup:
        recipe_run(data, device, recipe, 1000, **{**overrides, "epochs": 1, "warmup_epochs": 0.0})
    seeds = list(range(first_seed, first_seed + runs))
    results = []
    for i, seed in enumerate(seeds):
        results.append(recipe_run(data, device, recipe, seed, **overrides))
        if progress is not None:
            accuracy, seconds, _ = results[-1]
            progress(f"gpu-recipe {recipe}: run {i + 1}/{runs} (seed {seed}): {accuracy:.2%} in {seconds:.1f} s")
    accs, secs, epochs = zip(*results)
    target_acc, target_s = TARGETS.get(recipe, (None, None))
    return {
        "recipe": recipe, "tta": recipe_tta(data.name, recipe, device), "seeds": seeds,
        "mean_accuracy": round(statistics.fmean(accs), 5), "min_accuracy": round(min(accs), 5),
        "mean_seconds": round(statistics.fmean(secs), 3),
        "accuracies": [round(a, 5) for a in accs], "seconds_per_run": [round(s, 3) for s in secs],
        # per run: the typical epoch and the slowest (an outlier there is one-off work inside the
        # timed run, such as a compilation, rather than uniformly slower steps)
        "median_epoch_seconds": [round(statistics.median(e), 3) for e in epochs],
        "slowest_epoch_seconds": [round(max(e), 3) for e in epochs],
        "target_accuracy": target_acc, "target_seconds": target_s,
    }
