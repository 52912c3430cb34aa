"""Tiny models and run directories shared by the evaluate/explain/report tests."""

from __future__ import annotations

import csv
import json
import types
from pathlib import Path

import torch
from torch import nn

from cnnlab.evaluate import predict_proba, write_metrics

CLASSES = ["zero", "one", "two"]


def tiny_cnn(in_ch: int = 1, k: int = 3, seed: int = 0) -> nn.Sequential:
    """conv-relu-pool-conv-bn-relu-gap-linear: two convolutions, 8x8 input friendly."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, k),
    ).eval()


def tiny_data(n: int = 30, in_ch: int = 1, size: int = 8, k: int = 3, seed: int = 1):
    """uint8 images (n, C, size, size) and labels (n,) covering every class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, in_ch, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % k
    return x, y


def normalise_batch(x: torch.Tensor, mean=0.5, std=0.25) -> torch.Tensor:
    return (x.float() / 255 - mean) / std


def make_run(tmp_path: Path, *, in_ch: int = 1, name: str = "20250101-000000-tiny-test"):
    """A run directory with config.json, history.csv and metrics.json, plus a Run-like object."""
    run_dir = Path(tmp_path) / name
    run_dir.mkdir(parents=True)
    model = tiny_cnn(in_ch)
    x, y = tiny_data(in_ch=in_ch)
    history = [
        {"epoch": e, "train_loss": 1.2 / e, "train_acc": 0.5 + 0.1 * e, "val_loss": 1.3 / e + 0.01,
         "val_acc": [0.41, 0.63, 0.71, 0.69][e - 1], "lr": 0.001, "seconds": 1.5}
        for e in range(1, 5)
    ]
    with open(run_dir / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(history[0]))
        w.writeheader()
        w.writerows(history)
    config = {"model": "tiny <cnn>", "data": "synthetic", "epochs": 4, "lr": 0.001,
              "note": "<script>alert(1)</script>", "cnnlab_version": "0.1.0",
              "torch_version": torch.__version__}
    (run_dir / "config.json").write_text(json.dumps(config))
    probs, yy = predict_proba(model, [(normalise_batch(x), y)])
    metrics = write_metrics(run_dir, probs, yy, CLASSES, top=6)
    mean, std = (0.5,) * in_ch, (0.25,) * in_ch
    run = types.SimpleNamespace(model=model, classes=CLASSES, input_shape=(in_ch, 8, 8),
                                mean=mean, std=std, config=config, history=history,
                                metrics=metrics)
    return run_dir, run, (x, y)
