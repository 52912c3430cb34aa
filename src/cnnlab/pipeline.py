"""The whole training job: data + model + training + the run directory.

`cnnlab train` and the Python API (`cnnlab.train_run(...)`) both call `train()`; `--resume` calls
`resume()`. The order matters for "nothing half written": data and model are loaded and checked
first, so a bad dataset or model name fails before any run directory exists; a run that stops
early (NaN, Ctrl-C) keeps its checkpoint but no metrics.json, so it never looks finished.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

import cnnlab
from cnnlab import runs
from cnnlab.atomic import make_folder
from cnnlab.data import ImageDataset, TensorBatches, load_dataset, stratified_split
from cnnlab.data.augment import Augment, flip_label_warning
from cnnlab.data.mix import BatchMix
from cnnlab.data.sources import absolute_spec
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataFormatError, ShapeError
from cnnlab.evaluate import tta_warning
from cnnlab.train import callbacks as cb
from cnnlab.train.config import GRAPHING_COMPILE_MODES, TrainConfig
from cnnlab.train.cuda_graph import GraphedModel
from cnnlab.train.engine import History, Trainer
from cnnlab.train.fast import compiled, configure_device
from cnnlab.train.optim import make_optimizer
from cnnlab.train.recipes import gpu_recipe_on_cpu_warning
from cnnlab.train.regularize import ModelEMA, init_weights
from cnnlab.train.reproduce import pick_device, seed_everything
from cnnlab.train.whitening import WHITENING_IMAGES, whiten_first_conv
from cnnlab.train.schedules import make_scheduler

log = logging.getLogger(__name__)

MODEL_FILE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Prepared:
    """What a run trains: the model (on the CPU, initialised) and the data shaped for it."""

    model: nn.Module
    spec: dict  # model.json's "spec": {"zoo": name, "args": {...}} or {"sequential": config}
    data: ImageDataset  # converted to the model's input shape
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_size: tuple[int, int] | None = None  # (H, W) of the dataset's images before conversion


@dataclass
class TrainResult:
    """A finished run: where it is, its per-epoch history and its test metrics."""

    run_dir: Path
    history: History
    metrics: dict


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> tuple[nn.Module, dict]:
    """A zoo model or a model file, sized for the data; returns (model, spec for model.json).

    A zoo model sees the data at the data's own size when its shapes fit (resnet18 on 28x28);
    when they don't (LeNet-5's C5 needs 32x32), it keeps its native input and the data is
    converted to that instead.
    """
    if name.endswith(MODEL_FILE_SUFFIXES):
        from cnnlab.model import check_num_classes
        from cnnlab.model_file import load_model_file

        model = load_model_file(name)
        try:
            check_num_classes(model, num_classes)
        except ShapeError as exc:  # the model file is where the fix goes: name it
            raise ShapeError(f"{name}: {exc}") from None
        return model, {"sequential": model.to_config()}
    from cnnlab import zoo

    channels, height, width = input_shape
    try:
        model = zoo.create(name, num_classes=num_classes, in_channels=channels, input_size=(height, width))
    except ShapeError:
        model = zoo.create(name, num_classes=num_classes, in_channels=channels)
        log.info("%s does not fit %dx%d inputs; the data is converted to its native %s",
                 name, height, width, model.input_shape)
    return model, model.spec


def check_splits(data: ImageDataset, val_split: float) -> None:
    """Refuse a dataset whose test set, validation share or training rest would be empty, before
    an epoch is spent (split_validation holds out round(count x val_split) of each class)."""
    if len(data.x_test) == 0:
        raise DataFormatError(f"{data.name} has no test images to evaluate on; add test images "
                              "(for a folder: a test/ subfolder, or at least 3 images per class, "
                              "of which a fifth is held out, rounded)")
    if val_split > 0:
        kept, held = stratified_split(data.y_train, val_split, seed=0)  # any seed: same counts
        if len(held) == 0:
            most = int(torch.bincount(data.y_train).max())
            raise DataFormatError(
                f"--val-split {val_split:g} holds out no images: {data.name}'s classes have at "
                f"most {most} training images and round({most} x {val_split:g}) = 0; raise "
                "--val-split, add images, or pass --val-split 0")
        if len(kept) == 0:
            raise DataFormatError(f"--val-split {val_split:g} holds out every training image "
                                  f"of {data.name}; lower it or add images")


def prepare(cfg: TrainConfig, on_download: Callable[[int, int], None] | None = None) -> Prepared:
    """Load the data and build the model for a config, checking both before anything is written."""
    data = load_dataset(cfg.data, cfg.data_dir, on_progress=on_download, seed=runs.split_seed(cfg.to_dict()))
    check_splits(data, cfg.val_split)
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed alone
    model, spec = build_model(cfg.model, data.num_classes, data.input_shape)
    data_size = tuple(data.input_shape[1:])
    channels, height, width = model.input_shape
    if cfg.augment:
        batch_augment(cfg).check_fits(height, width)
    data = data.with_shape(channels, (height, width))
    if cfg.init:
        init_weights(model, cfg.init)
    return Prepared(model, spec, data, data.mean, data.std, data_size)


def batch_augment(cfg: TrainConfig) -> Augment | None:
    """cfg's augmentation for the training batches, or None."""
    return Augment(**cfg.augment) if cfg.augment else None  # TrainConfig has checked the keys


def batch_mix(cfg: TrainConfig, num_classes: int) -> BatchMix | None:
    """cfg's mixup / CutMix for the training batches, or None."""
    return BatchMix(cfg.mix, num_classes, cfg.mix_alpha, cfg.mix_prob) if cfg.mix else None


def _batches(cfg: TrainConfig, p: Prepared, device: torch.device) -> tuple[TensorBatches, TensorBatches | None]:
    data = p.data
    x_val = y_val = None
    if cfg.val_split > 0:
        data, x_val, y_val = data.split_validation(cfg.val_split, cfg.seed)
    common = dict(device=device, mean=p.mean, std=p.std, channels_last=cfg.channels_last)
    train = TensorBatches(data.x_train, data.y_train, cfg.batch_size, shuffle=True, seed=cfg.seed,
                          augment=batch_augment(cfg), mix=batch_mix(cfg, data.num_classes), **common)
    val = None if x_val is None else TensorBatches(x_val, y_val, 1024, shuffle=False, **common)
    return train, val


def test_batches(p_data: ImageDataset, mean, std, device, channels_last: bool = False) -> TensorBatches:
    """The test set as batches for evaluation (large batches: no gradients are kept)."""
    return TensorBatches(p_data.x_test, p_data.y_test, 1024, shuffle=False, device=device,
                         mean=mean, std=std, channels_last=channels_last)


def lasting_paths(cfg: TrainConfig) -> dict[str, str]:
    """cfg's folder: dataset and data_dir as absolute paths, so that evaluate, report and
    --resume find the same data from any working directory, not a namesake folder there."""
    paths = {"data": absolute_spec(cfg.data)}
    if cfg.data_dir:
        paths["data_dir"] = str(Path(cfg.data_dir).expanduser().resolve())
    return paths


def run_config(cfg: TrainConfig, device: torch.device) -> dict:
    """config.json: every setting (paths made absolute) plus the versions and hardware that
    produced the run."""
    return {**cfg.to_dict(), **lasting_paths(cfg), "created": time.strftime("%Y-%m-%d %H:%M:%S %z"), "cnnlab_version": cnnlab.__version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "device_used": str(device)}


def make_trainer(cfg: TrainConfig, model: nn.Module, train_batches, val_batches=None, *,
                 callbacks: Sequence[Any] = (), device: torch.device | str = "cpu") -> Trainer:
    """The optimizer, per-batch schedule, EMA, loss and Trainer that cfg describes, for a model on `device`.

    pipeline.train and the bench (bench/session.py) both build their trainers here, so the bench
    times exactly what `cnnlab train` runs. With cfg.whiten_stem, train_batches must have
    sample_images(n) (TensorBatches does): the stem is whitened from its first 5,000 images.
    """
    if cfg.whiten_stem:  # before the optimizer is built: the frozen stem weight is left out of it
        whiten_first_conv(model, train_batches.sample_images(WHITENING_IMAGES))
    optimizer = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay,
                               bias_lr_scale=cfg.bias_lr_scale, muon_lr=cfg.muon_lr,
                               muon_momentum=cfg.muon_momentum)
    scheduler = make_scheduler(cfg.schedule, optimizer, len(train_batches), cfg.epochs, cfg.warmup_epochs,
                               step_size=cfg.step_size, gamma=cfg.gamma, min_lr=cfg.min_lr)
    ema = ModelEMA(model, cfg.ema) if cfg.ema else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    runner = compiled(model, cfg.compile, mode=cfg.compile_mode)
    if cfg.cuda_graph:
        if torch.device(device).type != "cuda":
            raise ConfigError(f"cuda_graph needs a CUDA device; this run trains on {device}: leave it off")
        sample = train_batches.sample_images(cfg.batch_size)  # the shape, dtype and layout of a batch
        runner = GraphedModel(model, sample, cfg.precision)
    return Trainer(runner, loss_fn, optimizer, scheduler, train_batches=train_batches,
                   val_batches=val_batches, callbacks=callbacks, device=device, precision=cfg.precision,
                   grad_clip=cfg.grad_clip, ema=ema,
                   mark_graph_steps=cfg.compile and cfg.compile_mode in GRAPHING_COMPILE_MODES)


def run_names(cfg: TrainConfig) -> tuple[str, str]:
    """(model name, data name) for a run directory's name: zoo name or model-file stem, dataset or folder name."""
    model = Path(cfg.model).stem if cfg.model.endswith(MODEL_FILE_SUFFIXES) else cfg.model
    data = Path(cfg.data.removeprefix("folder:")).name if cfg.data.startswith("folder:") else cfg.data
    return model, data


def _trainer(cfg: TrainConfig, p: Prepared, run_dir: Path, extra_callbacks: Sequence[Any],
             device: torch.device) -> Trainer:
    configure_device(device)
    model = p.model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_b, val_b = _batches(cfg, p, device)
    callbacks: list[Any] = [cb.CSVHistory(run_dir / "history.csv")]
    if cfg.early_stopping_patience is not None:
        callbacks.append(cb.EarlyStopping("val_loss" if val_b else "loss", cfg.early_stopping_patience,
                                          cfg.min_delta, restore_best=cfg.restore_best))
    if cfg.reduce_on_plateau:
        callbacks.append(cb.ReduceLROnPlateau("val_loss" if val_b else "loss", cfg.plateau_factor,
                                              cfg.plateau_patience, min_delta=cfg.min_delta))
    if cfg.tensorboard:
        callbacks.append(cb.TensorBoard(run_dir / "tensorboard"))
    callbacks.append(cb.CheckpointCallback(run_dir / "checkpoint.pt"))
    callbacks.extend(extra_callbacks)
    return make_trainer(cfg, model, train_b, val_b, callbacks=callbacks, device=device)


def train(cfg: TrainConfig, *, callbacks: Sequence[Any] = (), on_download=None,
          run_dir: str | Path | None = None) -> TrainResult:
    """Train one model as `cfg` says and leave a complete run directory.

    Args:
        cfg: the run's settings (TrainConfig).
        callbacks: extra trainer callbacks, e.g. console.Progress.
        on_download: on_progress(done_bytes, total_bytes) while a dataset downloads.
        run_dir: write here instead of a fresh folder under cfg.out (ensemble members).
    """
    device = pick_device(cfg.device)
    if run_dir is None:  # once per command: ensemble members come back here with their run_dir
        for warning in (gpu_recipe_on_cpu_warning(cfg, device), tta_warning(cfg.tta, cfg.augment),
                        flip_label_warning(cfg.data, cfg.augment, cfg.tta)):
            if warning is not None:
                log.warning(warning)
    if cfg.ensemble > 1:
        from cnnlab.ensemble_run import train_ensemble

        return train_ensemble(cfg, callbacks=callbacks, on_download=on_download)
    seed_everything(cfg.seed, cfg.deterministic)
    p = prepare(cfg, on_download)
    fresh = run_dir is None
    if fresh:
        run_dir = runs.new_run_dir(cfg.out, *run_names(cfg))
    else:
        run_dir = Path(run_dir)
        make_folder(run_dir)
        runs.mark_incomplete(run_dir)
    runs.write_json(run_dir / "config.json", run_config(cfg, device))
    runs.save_model_json(run_dir, p.spec, p.data.classes, p.data.input_shape, p.mean, p.std,
                         p.data_size)
    try:
        trainer = _trainer(cfg, p, run_dir, callbacks, device)
    except Exception:
        # settings only the model can refuse (muon without filters, a stem too narrow to whiten):
        # no step was taken, so a fresh run directory holds nothing worth resuming
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    seed_everything(cfg.seed, cfg.deterministic)  # the same RNG state at step 0, fresh or not
    try:
        trainer.fit(cfg.epochs)
    except Exception as exc:
        raise _kept_or_removed(exc, run_dir, fresh) from None
    return _finish(cfg, p, trainer, run_dir)


def _kept_or_removed(exc: Exception, run_dir: Path, fresh: bool) -> Exception:
    """What a failed fit leaves: a fresh run with no checkpoint yet holds nothing to resume and is
    removed; otherwise the last checkpoint stays. A cnnlab error says which; others pass as they are."""
    from cnnlab.train.engine import TrainingInterrupted

    if isinstance(exc, TrainingInterrupted):  # Ctrl-C saved a checkpoint and says how to resume
        return exc
    if fresh and not (run_dir / "checkpoint.pt").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        what = f"no epoch had finished, so {run_dir} was removed"
    else:
        what = f"the last checkpoint in {run_dir} is kept"
    if isinstance(exc, CnnlabError):
        return type(exc)(f"{exc}; {what}")
    return exc


def saved_config(run_dir: Path) -> tuple[dict, TrainConfig]:
    """A run's config.json as written (with its versions and hardware) and as the TrainConfig it holds."""
    saved = runs.read_config(run_dir)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return saved, TrainConfig.from_dict({k: v for k, v in saved.items() if k in known},
                                        source=str(run_dir / "config.json"))


def resume(run_dir: str | Path, *, callbacks: Sequence[Any] = (), epochs: int | None = None,
           say_finished: bool = True) -> TrainResult:
    """Continue an interrupted run exactly where its checkpoint left it.

    A run that already finished (its epochs, or stopped by early stopping) is returned as it is,
    with a logged warning and no file touched, unless `epochs` asks for more than it trained.

    Args:
        run_dir: the run directory holding config.json and checkpoint.pt.
        callbacks: extra trainer callbacks, e.g. console.Progress.
        epochs: a new total number of epochs (default: the run's own).
        say_finished: log a warning when the run had already finished (an ensemble's resume
            passes its finished members through without one).
    """
    from cnnlab.train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is a file"
        raise CheckpointError(f"{run_dir} {what}: give --resume the run directory `cnnlab train` "
                              "printed, e.g. runs/<date>-<time>-<model>-<data>")
    saved, cfg = saved_config(run_dir)
    if cfg.ensemble > 1:
        from cnnlab.ensemble_run import resume_ensemble

        return resume_ensemble(run_dir, callbacks=callbacks, epochs=epochs)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    done = state["epoch"]
    step = state.get("step_in_epoch", 0)
    begun = done + 1 if step else done  # a checkpoint taken by Ctrl-C holds steps of epoch done + 1
    if epochs is not None and epochs < begun and not runs.is_complete(run_dir):
        so_far = f"was interrupted inside epoch {begun} (step {step})" if step else f"has trained {done} epochs"
        raise ConfigError(f"{run_dir} {so_far}, so it cannot stop at epoch {epochs}; pass --epochs "
                          f"{begun} or more, or leave --epochs out")
    if runs.is_complete(run_dir) and (epochs is None or epochs <= done):
        if say_finished:
            if done >= cfg.epochs:
                how = "all its epochs"
            elif cfg.early_stopping_patience is not None:
                how = f"stopped early at epoch {done} of {cfg.epochs}"
            else:  # no early stopping: its config.json was given more epochs by hand
                how = f"config.json now says {cfg.epochs} epochs"
            log.warning("%s already finished (%d epochs, %s); nothing to resume: pass --epochs N with N "
                        "above %d to train it further", run_dir, done, how, done)
        return TrainResult(run_dir, History(state["history"]), runs.read_metrics(run_dir))
    if epochs is not None and epochs != cfg.epochs and cfg.schedule == "onecycle":
        raise ConfigError(f"{run_dir} trains on a onecycle schedule, which is fixed to its "
                          f"{cfg.epochs} epochs' steps, so --epochs {epochs} cannot change it; leave "
                          "--epochs out, or start a new run with the epochs you want")
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
    seed_everything(cfg.seed, cfg.deterministic)
    p = prepare(cfg)
    trainer = _trainer(cfg, p, run_dir, callbacks, pick_device(cfg.device))
    trainer.load_state_dict(state)
    # the run's files change only once data, model and state are known to fit together
    if epochs is not None:
        runs.write_json(run_dir / "config.json", {**saved, "epochs": epochs})
    runs.mark_incomplete(run_dir)
    try:
        trainer.fit(cfg.epochs)
    except Exception as exc:
        raise _kept_or_removed(exc, run_dir, fresh=False) from None
    return _finish(cfg, p, trainer, run_dir)


def _finish(cfg: TrainConfig, p: Prepared, trainer: Trainer, run_dir: Path) -> TrainResult:
    """Weights, test metrics, curves and report: what makes a run directory complete."""
    from cnnlab.evaluate import predict_proba, write_metrics
    from cnnlab.explain.curves import save_curves

    model = p.model
    if trainer.ema is not None:
        trainer.ema.copy_to(model)  # the averaged weights are the ones evaluated and kept
    model.eval()
    runs.save_weights(run_dir, model)
    test_b = test_batches(p.data, p.mean, p.std, trainer.device, cfg.channels_last)
    probs, y = predict_proba(model, test_b, trainer.device, tta=cfg.tta)
    metrics = write_metrics(run_dir, probs, y, p.data.classes, tta=cfg.tta,
                            data=absolute_spec(cfg.data))
    save_curves(run_dir / "history.csv", run_dir / "curves.png", title="{} on {}".format(*run_names(cfg)))
    try:
        from cnnlab.explain.report import write_report

        write_report(run_dir, test_data=(p.data.x_test, p.data.y_test))
    except Exception as e:  # the report is a view of a finished run, never a reason to lose it
        log.warning("report.html was not written (`cnnlab report RUN` retries): %s", e)
    runs.mark_complete(run_dir)
    return TrainResult(run_dir, trainer.history, metrics)
