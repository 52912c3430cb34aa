"""time-to-accuracy: training seconds until Fashion-MNIST test accuracy first reaches 91%.

The recipe (train/recipes.py, `fast` by default) trains in memory; after every epoch the test set
is scored, and that evaluation is not counted (as in ../shared/BENCHMARKS.md's Keras figure:
0.910 at 105 s). Training stops at the first epoch that reaches the target.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

from cnnlab.bench.session import accuracy_on_test, train_in_memory
from cnnlab.data import ImageDataset
from cnnlab.train.recipes import recipe_config, recipe_tta

TARGET = 0.91


def time_to_accuracy(data: ImageDataset, device: torch.device, *, recipe: str = "fast", seed: int = 0,
                     target: float = TARGET, **overrides) -> dict:
    """One run: {seconds (None if never reached), epoch, accuracies per epoch, seconds per epoch}.

    Args:
        data: the dataset in memory.
        device: where to train.
        recipe: a recipe name for data.name.
        seed: the run's seed.
        target: test accuracy to reach.
        **overrides: TrainConfig fields over the recipe (e.g. epochs=1 for a smoke test).
    """
    cfg = recipe_config(data.name, recipe, device, seed=seed, **overrides)
    tta = recipe_tta(data.name, recipe, device)
    accuracies: list[float] = []
    reached: dict = {}

    def on_epoch(epoch: int, seconds: float, model) -> bool:
        accuracies.append(accuracy_on_test(model, cfg, data, device, tta))
        if accuracies[-1] >= target and not reached:
            reached.update(seconds=seconds, epoch=epoch)
        return bool(reached)

    session = train_in_memory(cfg, data, device, on_epoch)
    return {"seconds": reached.get("seconds"), "epoch": reached.get("epoch"), "accuracies": accuracies,
            "epoch_seconds": session.epoch_seconds}


def bench_time_to_accuracy(data: ImageDataset, device: torch.device, runs: int = 1, recipe: str = "fast",
                           target: float = TARGET, first_seed: int = 0,
                           progress: Callable[[str], None] | None = None, **overrides) -> dict:
    """`runs` seeds (first_seed, first_seed + 1, ...) of time_to_accuracy, summarised: median seconds
    over the runs that reached the target; `progress` gets one line per finished run."""
    seeds = list(range(first_seed, first_seed + runs))
    results = []
    for i, seed in enumerate(seeds):
        results.append(time_to_accuracy(data, device, recipe=recipe, seed=seed, target=target, **overrides))
        if progress is not None:
            r = results[-1]
            outcome = (f"{target:.0%} at epoch {r['epoch']}, {r['seconds']:.1f} s of training"
                       if r["seconds"] is not None else f"{target:.0%} not reached (best {max(r['accuracies']):.2%})")
            progress(f"time-to-accuracy {recipe}: run {i + 1}/{runs} (seed {seed}): {outcome}")
    hit = [r["seconds"] for r in results if r["seconds"] is not None]
    return {
        "recipe": recipe, "target": target, "seeds": seeds, "reached": len(hit),
        "seconds": round(statistics.median(hit), 3) if hit else None,  # median over runs that reached it
        "seconds_per_run": [None if r["seconds"] is None else round(r["seconds"], 3) for r in results],
        "epochs_per_run": [r["epoch"] for r in results],
        "best_accuracy": round(max(max(r["accuracies"]) for r in results), 4),
        "accuracies_per_run": [[round(a, 4) for a in r["accuracies"]] for r in results],
        "epoch_seconds_per_run": [[round(s, 3) for s in r["epoch_seconds"]] for r in results],
    }
