"""Train a TrainConfig on a dataset already in memory, with no run directory: what the bench times.

The same pieces as pipeline.train (zoo model, TensorBatches, and pipeline.make_trainer for the
optimizer, schedule, EMA and Trainer) so the bench measures cnnlab's real path, minus the files a
run writes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from cnnlab.data import ImageDataset, TensorBatches
from cnnlab.errors import ConfigError
from cnnlab.evaluate import predict_proba
from cnnlab.pipeline import batch_augment, batch_mix, make_trainer
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import Trainer
from cnnlab.train.fast import configure_device
from cnnlab.train.regularize import init_weights
from cnnlab.train.reproduce import seed_everything

EpochHook = Callable[[int, float, nn.Module], bool]  # (epoch, train seconds so far, model) -> stop?


@dataclass
class Session:
    """A model trained in memory: its weights and the seconds each epoch's training took."""

    model: nn.Module
    epoch_seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False


def to_device(data: ImageDataset, device: torch.device) -> ImageDataset:
    """data with its images and labels moved to device once (airbench keeps CIFAR-10 on the GPU), so
    TensorBatches copies nothing per run; mean and std are the CPU copy's, computed there."""
    moved = ImageDataset(data.name, list(data.classes), data.x_train.to(device), data.y_train.to(device),
                         data.x_test.to(device), data.y_test.to(device))
    moved.__dict__["_stats"] = (tuple(data.mean), tuple(data.std))  # fills the cached_property
    return moved


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock time covers it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(cfg: TrainConfig, data: ImageDataset, device: torch.device) -> nn.Module:
    """The zoo model for cfg, sized for data, initialised from cfg.seed, on device."""
    from cnnlab import zoo

    torch.manual_seed(cfg.seed)
    model = zoo.create(cfg.model, num_classes=data.num_classes, in_channels=data.input_shape[0],
                       input_size=data.input_shape[1:])
    if cfg.init:
        init_weights(model, cfg.init)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def test_batches(cfg: TrainConfig, data: ImageDataset, device: torch.device, batch_size: int = 2000) -> TensorBatches:
    """The test set as large batches (no gradients are kept, so 2000 fit easily)."""
    return TensorBatches(data.x_test, data.y_test, batch_size, shuffle=False, device=device, mean=data.mean,
                         std=data.std, channels_last=cfg.channels_last)


def accuracy_on_test(model: nn.Module, cfg: TrainConfig, data: ImageDataset, device: torch.device,
                  tta: str | None = None) -> float:
    """Top-1 accuracy on data's test set, in cfg's precision, optionally with test-time augmentation."""
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16"
                else contextlib.nullcontext())
    with autocast:
        probs, y = predict_proba(model, test_batches(cfg, data, device), device, tta=tta)
    return (probs.argmax(1).cpu() == y.cpu()).float().mean().item()


class _EpochHook:
    """Trainer callback: after each epoch, hand (epoch, training seconds so far, model) to a hook.

    Time spent in the hook (e.g. evaluating on the test set) is outside the Trainer's epoch seconds.
    """

    def __init__(self, hook: EpochHook, session: Session):
        self.hook, self.session = hook, session

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        self.session.epoch_seconds.append(logs["seconds"])
        if self.hook is None:
            return
        with trainer.ema.applied() if trainer.ema is not None else contextlib.nullcontext():
            stop = self.hook(logs["epoch"], sum(self.session.epoch_seconds), trainer.model)
        if stop:
            trainer.stop_training = self.session.stopped_early = True


class _Synced:
    """TensorBatches that waits for the GPU at the end of each pass, so epoch seconds are honest."""

    def __init__(self, batches: TensorBatches, device: torch.device):
        self.batches, self.device = batches, device

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def start_at(self, index: int) -> None:
        self.batches.start_at(index)

    def sample_images(self, n: int) -> torch.Tensor:
        return self.batches.sample_images(n)

    def __iter__(self):
        yield from self.batches
        synchronize(self.device)


def train_in_memory(cfg: TrainConfig, data: ImageDataset, device: torch.device | str,
                    on_epoch: EpochHook | None = None) -> Session:
    """Train cfg's model on data (already loaded) for cfg.epochs, or until on_epoch returns True.

    Args:
        cfg: the settings (a recipe_config, or seed-cnn's lecture settings); val_split is ignored:
            the bench scores on the test set.
        data: the dataset, in memory; moved to device as uint8 once.
        device: where to train.
        on_epoch: called after each epoch with (epoch, training seconds so far, model in eval-ready
            state with EMA weights applied); returning True stops training. Its time is not counted.
    """
    device = torch.device(device)
    if data.input_shape[0] < 1:
        raise ConfigError(f"dataset {data.name} has no image channels")
    configure_device(device)
    seed_everything(cfg.seed, cfg.deterministic)
    model = build(cfg, data, device)
    train_b = TensorBatches(data.x_train, data.y_train, cfg.batch_size, shuffle=True, drop_last=True,
                            seed=cfg.seed, device=device, mean=data.mean, std=data.std, augment=batch_augment(cfg),
                            channels_last=cfg.channels_last, mix=batch_mix(cfg, data.num_classes))
    session = Session(model)
    trainer = make_trainer(cfg, model, _Synced(train_b, device), callbacks=[_EpochHook(on_epoch, session)],
                           device=device)
    trainer.fit(cfg.epochs)
    if trainer.ema is not None:
        trainer.ema.copy_to(model)  # the averaged weights are the ones scored
    return session


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """(fn(), wall seconds), with the GPU synchronised before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0
