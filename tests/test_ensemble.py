"""Ensembles: averaging and voting math, the report and its table, and a gain on real Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _train_helpers import FakeBatches, single_thread  # noqa: F401 (autouse fixture)
from cnnlab.ensemble import ensemble_predict, ensemble_report, format_table, majority_vote
from cnnlab.errors import ConfigError
from cnnlab.train.engine import Trainer, seed_everything
from cnnlab.train.optim import make_optimizer

FASHION = Path("/usr/share/datasets/fashion-mnist")

# 3 members x 4 examples x 3 classes
P = torch.tensor([
    [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]],
    [[0.5, 0.4, 0.1], [0.45, 0.1, 0.45], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]],
    [[0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.05, 0.9, 0.05], [0.3, 0.4, 0.3]],
])
Y = torch.tensor([0, 2, 1, 1])


def test_average_and_vote_by_hand():
    avg = ensemble_predict(list(P))
    torch.testing.assert_close(avg[0], torch.tensor([1.3, 1.4, 0.3]) / 3)
    torch.testing.assert_close(avg[3], torch.tensor([0.7, 1.1, 1.2]) / 3)
    assert avg.argmax(1).tolist() == [1, 2, 1, 2]
    # votes per example: (0, 0, 1) -> 0; (1, 0, 2) a three-way tie -> class 2, the highest mean
    # probability (1.45/3); (0, 1, 1) -> 1; (2, 1, 1) -> 1
    assert majority_vote(list(P)).tolist() == [0, 2, 1, 1]


def test_vote_tie_goes_to_higher_mean_probability():
    b = torch.tensor([[0.45, 0.55]])
    assert majority_vote([torch.tensor([[0.9, 0.1]]), b]).tolist() == [0]  # 1 vote each; means 0.675 vs 0.325
    assert majority_vote([torch.tensor([[0.51, 0.49]]), b]).tolist() == [1]  # means 0.48 vs 0.52


def test_report_numbers_and_table():
    rep = ensemble_report(["a", "b", "c"], list(P), Y)
    # member predictions [0,1,0,2], [0,0,1,1], [1,2,1,1] against Y = [0,2,1,1]
    assert [m["accuracy"] for m in rep["member_results"]] == [0.25, 0.75, 0.75]
    assert rep["mean_member_accuracy"] == pytest.approx(7 / 12) and rep["best_member_accuracy"] == 0.75
    assert rep["ensemble_accuracy"] == 0.5 and rep["vote_accuracy"] == 1.0
    assert rep["gain_over_mean"] == pytest.approx(-1 / 12) and rep["n_examples"] == 4
    table = format_table(rep)
    assert "mean of members" in table and " 58.33%" in table and "100.00%" in table
    assert "averaging loses 8.33 points over the mean member" in table
    with pytest.raises(ConfigError, match="one shape"):
        ensemble_predict([P[0], P[0][:2]])
    with pytest.raises(ConfigError, match="y_true has shape"):
        ensemble_report(["a"], [P[0]], Y[:3])


def _idx(name: str) -> np.ndarray:
    raw = gzip.decompress((FASHION / name).read_bytes())
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], ">u4")
    return np.frombuffer(raw[4 + 4 * ndim:], np.uint8).reshape(dims)


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(), reason="Debian dataset-fashion-mnist absent")
def test_ensemble_beats_mean_member_on_real_fashion_mnist():
    x = torch.from_numpy(_idx("train-images-idx3-ubyte.gz")[:2000].copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(_idx("train-labels-idx1-ubyte.gz")[:2000].astype(np.int64))
    xt = torch.from_numpy(_idx("t10k-images-idx3-ubyte.gz")[:1000].copy()).float().div(255).unsqueeze(1)
    yt = torch.from_numpy(_idx("t10k-labels-idx1-ubyte.gz")[:1000].astype(np.int64))
    x, xt = (x - 0.286) / 0.353, (xt - 0.286) / 0.353  # Fashion-MNIST mean/std
    probs = []
    for seed in range(3):
        seed_everything(seed)
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (8, 14, 14)
                              nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (16, 7, 7)
                              nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * 49, 10))
        trainer = Trainer(model, nn.CrossEntropyLoss(), make_optimizer("adam", model, 2e-3),
                          train_batches=FakeBatches(x, y, 64, seed=seed))
        trainer.fit(1)
        model.eval()
        with torch.no_grad():
            probs.append(model(xt).softmax(1))
    rep = ensemble_report([f"seed {s}" for s in range(3)], probs, yt)
    assert rep["mean_member_accuracy"] > 0.6  # they learnt something in one epoch
    assert rep["ensemble_accuracy"] >= rep["mean_member_accuracy"], format_table(rep)
