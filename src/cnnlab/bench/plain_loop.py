"""The baseline cnnlab is measured against: the PyTorch training loop as the tutorials write it.

The model as a plain nn.Sequential of torch layers, a DataLoader over a TensorDataset of float
tensors, eager fp32, Adam, `loss.item()` every step
(https://pytorch.org/tutorials/beginner/basics/optimization_tutorial.html); nothing tuned.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def tutorial_seed_cnn(like: nn.Module | None = None) -> nn.Sequential:
    """seed-cnn written with torch.nn as a tutorial would (the same function as cnnlab's zoo model).

    Args:
        like: a cnnlab seed-cnn whose weights are copied, so both start from the same point.
    """
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (16, 14, 14)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (32, 7, 7)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (64, 3, 3)
        nn.Flatten(), nn.Linear(576, 256), nn.ReLU(), nn.Linear(256, 10),
    )
    if like is not None:
        with torch.no_grad():
            for mine, theirs in zip(model.parameters(), like.parameters(), strict=True):
                mine.copy_(theirs)
    return model


def plain_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 128, lr: float = 1e-3,
                batches: int | None = None, warmup: int = 0, seed: int = 0) -> tuple[float, int]:
    """Train model the tutorial way; returns (seconds, batches timed) for the timed part.

    Args:
        model: a fresh model on the CPU.
        x: normalised float32 images (N, C, H, W); y: labels (N,) int64.
        batch_size: images per step.
        lr: Adam's learning rate.
        batches: stop after this many timed batches (None: the rest of the epoch).
        warmup: run this many batches first, untimed (oneDNN builds its kernels on first use).
        seed: the DataLoader's shuffling.
    """
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    running_loss, timed, t0 = 0.0, 0, time.perf_counter()
    for i, (inputs, labels) in enumerate(loader):
        if i == warmup:
            t0, timed = time.perf_counter(), 0
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        timed += i >= warmup
        if batches is not None and timed == batches:
            break
    return time.perf_counter() - t0, timed
