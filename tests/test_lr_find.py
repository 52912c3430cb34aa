"""The learning-rate range test: a sane suggestion, divergence and NaN dropped, state restored, the plot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _train_helpers import FakeBatches, TinyCNN, single_thread, tiny_data  # noqa: F401 (autouse fixture)
from cnnlab.errors import ConfigError
from cnnlab.train.lr_find import lr_range_test, plot_lr_find, suggest_lr
from cnnlab.train.optim import make_optimizer


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    x, y = tiny_data(256)
    return TinyCNN(p=0.0), FakeBatches(x, y, 32, seed=seed)


def test_suggestion_is_sane_and_the_model_is_restored():
    model, batches = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    res = lr_range_test(model, nn.CrossEntropyLoss(), lambda p: make_optimizer("sgd", p, 0.1, momentum=0.9),
                        batches, start_lr=1e-5, end_lr=100, num_steps=80)
    assert res.stopped in ("diverged", "loss became nan", "loss became inf")  # lr 100 with SGD blows up
    assert len(res.lrs) < 80 and all(map(math.isfinite, res.losses + res.smoothed))
    assert 1e-3 <= res.suggestion <= 1.0, res.suggestion
    assert res.lrs == sorted(res.lrs) and res.lrs[0] == pytest.approx(1e-5)
    ratio = (100 / 1e-5) ** (1 / 79)
    assert res.lrs[1] / res.lrs[0] == pytest.approx(ratio)
    assert min(res.smoothed) < 0.8 * res.smoothed[0]  # the loss did fall before it blew up
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not model.training  # mode restored
    assert torch.equal(torch.rand(3), expected_draw)  # global RNG restored
    assert all(p.grad is None for p in model.parameters())  # no stale gradients for a later loop


def test_smoothing_is_a_bias_corrected_ema():
    model, batches = _setup()
    res = lr_range_test(model, nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.0), batches,
                        start_lr=1e-9, end_lr=1e-8, num_steps=6, smoothing=0.5)
    avg, expect = 0.0, []
    for i, v in enumerate(res.losses):
        avg = 0.5 * avg + 0.5 * v
        expect.append(avg / (1 - 0.5 ** (i + 1)))
    assert res.smoothed == pytest.approx(expect)
    assert res.smoothed[0] == pytest.approx(res.losses[0])  # no bias towards the zero start
    assert res.stopped == "end_lr reached" and len(res.lrs) == 6


def test_nan_points_are_dropped():
    x, y = tiny_data(64)
    x[40:] = float("nan")  # batch 2 (no shuffle) is poisoned
    model = TinyCNN(p=0.0)
    res = lr_range_test(model, nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.0),
                        FakeBatches(x, y, 32, shuffle=False), num_steps=10)
    assert res.stopped == "loss became nan" and len(res.lrs) == 1 and res.suggestion is None
    assert res.notes and "usable points" in res.notes[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_suggest_lr_rules():
    lrs = list(np.logspace(-5, 0, 50))
    # a loss falling fastest around 1e-2 (a logistic step in log10 lr), then rising after 1e-1
    loss = [2 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 2))) + (5 * (lr - 0.1) if lr > 0.1 else 0)
            for lr in lrs]
    assert suggest_lr(lrs, loss) == pytest.approx(1e-2, rel=0.3)
    early_min = [1.0, 0.5, 2.0, 3.0, 4.0, 5.0]
    assert suggest_lr([1e-4, 1e-3, 1e-2, 1e-1, 1, 10], early_min) == pytest.approx(1e-4)  # min's lr / 10
    assert suggest_lr([1e-3, 1e-2], [1.0, 0.9]) is None


def test_bad_arguments_and_plot(tmp_path):
    model, batches = _setup()
    with pytest.raises(ConfigError, match="start_lr < end_lr"):
        lr_range_test(model, nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, 0.1), batches, start_lr=1, end_lr=0.1)
    res = lr_range_test(model, nn.CrossEntropyLoss(), lambda p: torch.optim.Adam(p), batches, num_steps=30,
                        start_lr=1e-5, end_lr=1)
    fig = plot_lr_find(res)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 3  # raw, smoothed, suggestion
    fig.savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000


def test_plot_zooms_on_the_curve_not_the_divergence_spike():
    from cnnlab.train.lr_find import LRFindResult

    lrs = [1e-5 * 1.5 ** i for i in range(20)]
    losses = [2.3 - 0.05 * i for i in range(19)] + [60.0]  # the last step diverged
    result = LRFindResult(lrs, losses, losses[:19] + [5.0], suggestion=lrs[10], stopped="diverged")
    ax = plot_lr_find(result).axes[0]
    low, high = ax.get_ylim()
    assert low < min(losses) and 2.3 < high < 5.0
    assert ax.get_xlabel() == "learning rate (log scale)" and ax.get_xscale() == "log"


def test_groups_with_their_own_lr_keep_their_ratio():
    """bias_lr_scale 4 and Muon's filters: every group moves with the swept lr, ratios kept."""
    model, batches = _setup()
    made = []

    def factory(params):
        made.append(make_optimizer("muon", model, 0.1, momentum=0.9, bias_lr_scale=4.0, muon_lr=0.3))
        return made[-1]

    res = lr_range_test(model, nn.CrossEntropyLoss(), factory, batches, start_lr=1e-4, end_lr=1e-2, num_steps=10)
    last = res.lrs[-1]
    assert [g["lr"] for g in made[0].param_groups] == pytest.approx([last, 4 * last, 3 * last])
    assert any("keeping their lr ratios" in note for note in res.notes)
    plain = lr_range_test(model, nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.0), batches,
                          start_lr=1e-4, end_lr=1e-2, num_steps=5)
    assert not any("ratios" in note for note in plain.notes)
