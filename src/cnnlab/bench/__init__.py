"""`cnnlab bench`: speed measurements as one dict per result (the CLI prints each as a JSON line).

cpu-epoch (cpu_epoch.py), time-to-accuracy (time_to_accuracy.py) and gpu-recipe (gpu_recipe.py);
every result starts with the device's name, the versions, the thread count and the number of runs
(env.py), and carries the machine's load average, since other work on it skews timings.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from cnnlab.bench.env import environment, load_average
from cnnlab.errors import ConfigError, DatasetNotFound

BENCHES = ("cpu-epoch", "time-to-accuracy", "gpu-recipe")

__all__ = ["BENCHES", "run_bench"]


def _load(data: str, data_dir: str | None):
    """(dataset, description for the "data" field): the full set, else the shipped mini set, saying so."""
    from cnnlab.data import load_dataset

    try:
        return load_dataset(data, data_dir, download=False), data
    except DatasetNotFound as e:
        if data != "fashion-mnist":
            raise
        note = (f"fashion-mnist-mini (the full fashion-mnist was not found: {e}; figures are NOT comparable "
                "to the published ones: install Debian's dataset-fashion-mnist or pass --data-dir)")
        return load_dataset("fashion-mnist-mini"), note


def run_bench(device: str = "auto", runs: int = 3, which: Sequence[str] | None = BENCHES, data_dir: str | None = None,
              on_result: Callable[[dict], None] | None = None, *, full: bool = False, batches: int = 150,
              data: str = "fashion-mnist", dataset=None, threads: int | None = None,
              recipes: Sequence[str] = ("fast", "best"), on_progress: Callable[[str], None] | None = None,
              first_seed: int = 0, **overrides) -> list[dict]:
    """Run the chosen measurements; each result goes to on_result as soon as it exists, and all are returned.

    Args:
        device: auto | cpu | cuda | cuda:N | mps for time-to-accuracy and gpu-recipe (cpu-epoch is
            always on the CPU).
        runs: rounds of cpu-epoch, seeds of time-to-accuracy and of each gpu-recipe.
        which: any of "cpu-epoch", "time-to-accuracy", "gpu-recipe"; None or empty for all.
        data_dir: where the Fashion-MNIST files are (else the usual places; never downloads).
        on_result: called with each result dict (the CLI prints json.dumps of it).
        full: cpu-epoch times whole epochs instead of `batches` batches per setting and round.
        batches: batches timed per setting and round in cpu-epoch when not full.
        data: the dataset; "fashion-mnist" (the published figures) falls back to the mini set, saying so.
        dataset: an ImageDataset already loaded (e.g. a small slice for a smoke test); `data` then
            only names it in the output.
        threads: CPU threads for torch (default: the usable cores).
        recipes: the recipes gpu-recipe measures ("fast", "best").
        on_progress: called with a line after each cpu-epoch round, time-to-accuracy seed and
            gpu-recipe run (the CLI prints it to stderr; --quiet turns it off).
        first_seed: time-to-accuracy and gpu-recipe run seeds first_seed .. first_seed + runs - 1,
            so a series too long for one sitting can be continued.
        **overrides: TrainConfig fields over the recipes (e.g. epochs=1 for a smoke test).
    """
    from cnnlab.bench.cpu_epoch import bench_cpu_epoch
    from cnnlab.bench.gpu_recipe import bench_gpu_recipe
    from cnnlab.bench.time_to_accuracy import bench_time_to_accuracy
    from cnnlab.train.fast import set_cpu_threads
    from cnnlab.train.reproduce import pick_device

    which = tuple(which or BENCHES)
    unknown = [w for w in which if w not in BENCHES]
    if unknown:
        raise ConfigError(f"unknown bench {unknown[0]!r}: choose from {', '.join(BENCHES)}")
    if not set(recipes) <= {"fast", "best"} or not recipes:
        raise ConfigError(f"gpu-recipe measures recipes 'fast' and 'best', got {list(recipes)}")
    recipes = tuple(dict.fromkeys(recipes))  # `--recipe fast,fast` measures it once (best: minutes a run)
    if runs < 1 or batches < 1:
        raise ConfigError(f"bench runs and batches must be at least 1, got runs={runs}, batches={batches}")
    if first_seed < 0:
        raise ConfigError(f"bench's first seed must be at least 0, got {first_seed}: seeds count from 0")
    target = pick_device(device)
    set_cpu_threads(threads)
    dataset, described = (dataset, data) if dataset is not None else _load(data, data_dir)
    results: list[dict] = []

    def emit(name: str, dev: torch.device, figures: dict, n: int) -> None:
        result = {"bench": name, **environment(dev), "runs": n, "data": described, **figures,
                  "load_average": load_average()}
        results.append(result)
        if on_result is not None:
            on_result(result)

    if "cpu-epoch" in which:
        cpu = torch.device("cpu")
        emit("cpu-epoch", cpu, bench_cpu_epoch(dataset, runs, None if full else batches, 0 if full else 5,
                                               progress=on_progress), runs)
    if "time-to-accuracy" in which:
        emit("time-to-accuracy", target, bench_time_to_accuracy(dataset, target, runs, first_seed=first_seed,
                                                                 progress=on_progress, **overrides), runs)
    if "gpu-recipe" in which:
        if target.type != "cuda":
            skipped = {"bench": "gpu-recipe", **environment(target), "runs": 0, "skipped": "no CUDA device"}
            results.append(skipped)
            if on_result is not None:
                on_result(skipped)
        else:
            for recipe in recipes:
                emit("gpu-recipe", target, bench_gpu_recipe(dataset, target, recipe, runs, progress=on_progress,
                                                                first_seed=first_seed, **overrides), runs)
    return results
