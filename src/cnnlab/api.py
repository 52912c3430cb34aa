"""`cnnlab.train_run(...)`: the whole `cnnlab train` job from Python, settings as keywords."""

from __future__ import annotations

from typing import Any

from cnnlab.train.config import TrainConfig


def resolve_config(values: dict[str, Any], source: str) -> TrainConfig:
    """Defaults < the named recipe's settings < the values given: the run's TrainConfig."""
    if values.get("recipe"):
        from cnnlab.train.recipes import recipe_overrides, with_recipe
        from cnnlab.train.reproduce import pick_device

        device = pick_device(values.get("device", "auto"))  # a recipe has a GPU variant and CPU settings
        values = with_recipe(recipe_overrides(values.get("data", TrainConfig.data), values["recipe"], device), values)
    return TrainConfig.from_dict(values, source=source)


def train_run(config: TrainConfig | None = None, *, verbose: bool = True, **settings: Any):
    """Train a model and write a run directory, as `cnnlab train` does.

    Args:
        config: a TrainConfig; keywords override its fields (or the defaults when None).
        verbose: show the progress bar and a line per epoch on stderr.
        **settings: any TrainConfig field, e.g. model="lenet5", data="fashion-mnist-mini", epochs=3,
            recipe="fast" (the recipe's settings come first, the keywords over them).

    Returns:
        pipeline.TrainResult with run_dir, history and metrics.
    """
    from cnnlab import console, pipeline

    cfg = resolve_config({**(config.to_dict() if config else {}), **settings}, source="train_run()")
    if not verbose:
        return pipeline.train(cfg)
    with console.Progress(cfg.epochs) as progress:
        return pipeline.train(cfg, callbacks=[progress])
