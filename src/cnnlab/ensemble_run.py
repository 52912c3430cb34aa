"""Jobs built from several models or trial runs: ensembles (train N, combine runs) and the LR finder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from cnnlab import runs
from cnnlab.atomic import make_folder
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig

log = logging.getLogger(__name__)


def train_ensemble(cfg: TrainConfig, *, callbacks: Sequence[Any] = (), on_download=None):
    """Train cfg.ensemble members with seeds seed, seed+1, ... into one run directory.

    Layout: RUN/member-1 ... RUN/member-N are complete runs; RUN/metrics.json holds each
    member's test accuracy, their mean, and the ensemble's by averaged probabilities and by vote.
    """
    from cnnlab import pipeline

    model_name, data_name = pipeline.run_names(cfg)
    root = runs.new_run_dir(cfg.out, f"{model_name}-ensemble{cfg.ensemble}", data_name)
    runs.write_json(root / "config.json", {**cfg.to_dict(), **pipeline.lasting_paths(cfg)})
    return _train_members(cfg, root, callbacks, on_download)


def resume_ensemble(root: str | Path, *, callbacks: Sequence[Any] = (), epochs: int | None = None):
    """Finish an interrupted ensemble run: finished members stay as they are, an interrupted one
    continues from its checkpoint, the rest train from the start; then the members are combined.

    Args:
        root: the ensemble's run directory (holding config.json and member-1 ...).
        callbacks: extra trainer callbacks, e.g. console.Progress.
        epochs: a new total number of epochs for every member (default: the run's own).
    """
    from cnnlab import pipeline

    root = Path(root)
    saved, cfg = pipeline.saved_config(root)
    if runs.is_complete(root) and epochs is None:
        log.warning("%s already finished (%d members combined); nothing to resume: pass --epochs N "
                    "to train its members further", root, cfg.ensemble)
        return pipeline.TrainResult(root, pipeline.History(runs.read_history(
            root / "member-1" / "history.csv")), runs.read_metrics(root))
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
        runs.write_json(root / "config.json", {**saved, "epochs": epochs})
    runs.mark_incomplete(root)
    return _train_members(cfg, root, callbacks, None, resuming=True, epochs=epochs)


def _train_members(cfg: TrainConfig, root: Path, callbacks: Sequence[Any], on_download,
                   resuming: bool = False, epochs: int | None = None):
    """Train (or, resuming, finish) root/member-1 ... member-N, then combine them into root.
    Resuming, a finished member is kept unless `epochs` asks for more than it trained."""
    from cnnlab import pipeline
    from cnnlab.train.engine import TrainingInterrupted

    members = []
    for i in range(cfg.ensemble):
        member_dir = root / f"member-{i + 1}"
        for callback in callbacks:  # console.Progress: which member the lines are about
            if hasattr(callback, "label"):
                callback.label = f"member {i + 1}/{cfg.ensemble}"
        try:
            if resuming and (member_dir / "checkpoint.pt").exists():  # finished ones come back as they are
                members.append(pipeline.resume(member_dir, callbacks=callbacks, epochs=epochs,
                                               say_finished=False))
            else:  # not begun, or stopped before its first checkpoint: from the start
                # one train/test split for all: a folder without test/ is split by split_seed
                member = cfg.replace(seed=cfg.seed + i, ensemble=1, split_seed=runs.split_seed(cfg.to_dict()))
                members.append(pipeline.train(member,
                                              callbacks=callbacks, on_download=on_download,
                                              run_dir=member_dir))
        except TrainingInterrupted as stop:  # resume the ensemble, not the member alone
            message = str(stop).replace(f"--resume {member_dir}`", f"--resume {root}`")
            raise TrainingInterrupted(message, epoch=stop.epoch, step=stop.step,
                                      saved_to=stop.saved_to) from None
    report, _ = combine_runs([m.run_dir for m in members], out=root)
    runs.mark_complete(root)
    return pipeline.TrainResult(root, members[-1].history, report)


def _check_one_split(loaded: Sequence[runs.Run]) -> None:
    """ConfigError when runs split one folder without test/ into train and test by different seeds:
    the first run's test images, which score them all, would be others' training images."""
    folders = {run.config.get("data") for run in loaded}
    spec = next(iter(folders))
    if len(folders) != 1 or not str(spec).startswith("folder:"):
        return
    if (Path(spec.removeprefix("folder:")) / "test").is_dir():
        return  # its own test/ folder: the same test set whatever the seed
    seeds = sorted({runs.split_seed(run.config) for run in loaded})
    if len(seeds) > 1:
        raise ConfigError(f"these runs split {spec.removeprefix('folder:')} into train and test with different "
                          f"seeds ({', '.join(map(str, seeds))}), so one's test images are another's training "
                          "images; combine runs trained with one --split-seed (an --ensemble run's members "
                          "share it), or give the folder a test/ subfolder")


def member_probabilities(run_dirs: Sequence[str | Path], data: str | None = None,
                         data_dir: str | None = None) -> tuple[list[str], list[torch.Tensor], torch.Tensor, list[str]]:
    """Each run's test-set probabilities on one shared dataset: (names, probs list, y, classes)."""
    from cnnlab.evaluate import predict_proba
    from cnnlab.pipeline import test_batches
    from cnnlab.predict import run_dataset

    if len(run_dirs) < 2:
        raise ConfigError(f"an ensemble needs at least 2 runs, got {len(run_dirs)}: pass more run directories")
    loaded = [runs.load_run(d) for d in run_dirs]
    first = loaded[0]
    for run in loaded[1:]:
        if list(run.classes) != list(first.classes):
            raise ConfigError(f"{run.path} predicts classes {run.classes[:3]}... but {first.path} "
                              f"predicts {first.classes[:3]}...: ensemble runs trained on the same classes")
    if data is None:
        _check_one_split(loaded)
    # one test set for all, located as the first run's (its --data-dir too): loaded once per input shape
    by_shape: dict[tuple, object] = {}
    names, probs, y = [], [], None
    for run in loaded:
        shape = tuple(run.input_shape)
        if shape not in by_shape:
            by_shape[shape] = run_dataset(first, data, data_dir, input_shape=shape)
        dataset = by_shape[shape]
        device = next(run.model.parameters()).device
        # each member evaluated as its run is (its own test-time augmentation), so the table's
        # member figures are those of the members' own metrics.json
        p, y = predict_proba(run.model, test_batches(dataset, run.mean, run.std, device), device,
                             tta=run.config.get("tta"))
        names.append(run.path.name)
        probs.append(p)
    return names, probs, y, list(first.classes)


def combine_runs(run_dirs: Sequence[str | Path], *, data: str | None = None, data_dir: str | None = None,
                 out: str | Path | None = None) -> tuple[dict, str]:
    """Combine finished runs by averaging probabilities and by majority vote.

    Args:
        run_dirs: two or more finished run directories trained on the same classes.
        data: the dataset to test on (default the first run's).
        data_dir: where it lives.
        out: a folder to write metrics.json (the ensemble report) into.

    Returns:
        (report dict, the report as a text table).
    """
    from cnnlab.ensemble import ensemble_predict, ensemble_report, format_table

    names, probs, y, classes = member_probabilities(run_dirs, data, data_dir)
    report = ensemble_report(names, probs, y)
    averaged = ensemble_predict(probs)
    report.update({
        "test_accuracy": float((averaged.argmax(1) == y).float().mean()),
        "test_loss": float(nn.functional.nll_loss(torch.log(averaged.clamp_min(1e-12)), y)),
        "n_test": int(y.numel()),
        "members": [str(Path(d)) for d in run_dirs],
        "member_tta": [runs.load_run(d).config.get("tta") for d in run_dirs],
    })
    if out is not None:
        make_folder(Path(out))
        runs.write_json(Path(out) / "metrics.json", report)
    return report, format_table(report)


def lr_find(cfg: TrainConfig, *, out: str | Path = "lr-find.png", num_steps: int = 100):
    """Learning-rate range test on the config's model and data; writes the plot. Of cfg it uses
    the settings config.LR_FIND_SETTINGS names.

    Returns:
        (LRFindResult, path of the plot).
    """
    from cnnlab.explain.figures import figure_format, save_figure
    from cnnlab.pipeline import _batches, prepare
    from cnnlab.train.lr_find import lr_range_test, plot_lr_find
    from cnnlab.train.optim import make_optimizer
    from cnnlab.train.reproduce import pick_device, seed_everything

    figure_format(out)  # a plot name it cannot write is refused before the range test runs
    seed_everything(cfg.seed)
    p = prepare(cfg)
    device = pick_device(cfg.device)
    model = p.model.to(device)
    train_b, _ = _batches(cfg, p, device)
    # the model, not its bare parameters: the groups (no decay on BN and biases, bias_lr_scale, Muon's
    # filters and whether they feed BatchNorm) are then the ones `cnnlab train` would build
    factory: Callable = lambda _params: make_optimizer(
        cfg.optimizer, model, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, bias_lr_scale=cfg.bias_lr_scale,
        muon_lr=cfg.muon_lr, muon_momentum=cfg.muon_momentum)
    result = lr_range_test(model, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), factory, train_b,
                           num_steps=num_steps)
    path = save_figure(plot_lr_find(result), out)
    return result, path
