"""The baseline cnnlab is measured against: the PyTorch training loop as the tutorials write it.

DataLoader over a TensorDataset of float tensors, eager fp32, Adam, `loss.item()` every step
(https://pytorch.org/tutorials/beginner/basics/optimization_tutorial.html); nothing tuned.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


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
