"""Optimizers and schedules against torch's own, weight decay filtering, weight init, EMA, regularisers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab.errors import ConfigError
from cnnlab.train.optim import decay_groups, make_optimizer
from cnnlab.train.regularize import ModelEMA, init_weights, regularization_loss, regularizing_modules
from cnnlab.train.schedules import make_scheduler


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # no conv bias: before BN its gradient is ~1e-9 noise, which Adam amplifies into run-to-run chaos
    return nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 4))


def _run(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 6) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, target = torch.randn(5, 2, 4, 4, generator=g), torch.randn(5, 4, generator=g) + 3.0
        opt.zero_grad()
        (model(x) - target).pow(2).mean().backward()  # gradients well away from 0 (Adam amplifies ~0 ones)
        opt.step()


TORCH_EQUIVALENT = {
    # lecture call -> torch's own constructor with the same meaning
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3, foreach=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3, foreach=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-3, foreach=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=1e-3, foreach=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.01, weight_decay=1e-3, foreach=True),
}


@pytest.mark.parametrize("name", list(TORCH_EQUIVALENT))
def test_optimizer_matches_torch_own(name):
    lr = 0.05 if name == "sgd" else 0.01
    ours, theirs = _net(), _net()
    _run(ours, make_optimizer(name, ours.parameters(), lr, momentum=0.9, nesterov=True, weight_decay=1e-3,
                              fused=False))
    _run(theirs, TORCH_EQUIVALENT[name](theirs.parameters()))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(ours[3].weight, _net()[3].weight)  # it did train


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad"])
def test_fused_matches_foreach_on_cpu(name):
    a, b = _net(), _net()
    _run(a, make_optimizer(name, a.parameters(), 0.01, fused=True))
    _run(b, make_optimizer(name, b.parameters(), 0.01, fused=False))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_weight_decay_skips_batchnorm_and_biases():
    model = _net()
    groups = decay_groups(model, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 3  # BN gamma/beta, dense bias
    # zero gradients: AdamW's decoupled decay shrinks conv/dense weights only
    opt = make_optimizer("adamw", model, 0.1, weight_decay=0.5)
    before = [p.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert changed == [True, False, False, True, False]  # conv w, bn w, bn b, fc w, fc b
    assert make_optimizer("adamw", model, 0.1, weight_decay=0.5, decay_filter=False).param_groups[0][
        "weight_decay"] == 0.5


def test_bias_lr_scale_gives_biases_their_own_lr_through_the_schedule():
    model = _net()
    opt = make_optimizer("sgd", model, 0.1, momentum=0.85, nesterov=True, weight_decay=1e-3, bias_lr_scale=64.0)
    weights, biases = opt.param_groups
    assert weights["lr"] == 0.1 and weights["weight_decay"] == 1e-3
    assert biases["lr"] == pytest.approx(6.4) and biases["weight_decay"] == 0.0 and len(biases["params"]) == 3
    sched = make_scheduler("cosine", opt, steps_per_epoch=4, epochs=2, warmup_epochs=0.5)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(64.0 * opt.param_groups[0]["lr"])  # the ratio holds
    # without the decay filter both groups decay; only the lr differs
    unfiltered = make_optimizer("sgd", model, 0.1, weight_decay=1e-3, decay_filter=False, bias_lr_scale=2.0)
    assert [g["weight_decay"] for g in unfiltered.param_groups] == [1e-3, 1e-3]
    assert [g["lr"] for g in unfiltered.param_groups] == [0.1, 0.2]
    assert len(make_optimizer("sgd", model, 0.1, bias_lr_scale=1.0).param_groups) == 1  # 1: no extra group
    with pytest.raises(ConfigError, match="bias_lr_scale must be > 0"):
        make_optimizer("sgd", model, 0.1, bias_lr_scale=0.0)


def test_unknown_optimizer_and_schedule_name_the_closest():
    with pytest.raises(ConfigError, match="unknown optimizer 'adma'.*did you mean 'adam'"):
        make_optimizer("adma", _net(), 0.1)
    opt = make_optimizer("sgd", _net(), 0.1)
    with pytest.raises(ConfigError, match="unknown schedule 'onecylce'.*did you mean 'onecycle'"):
        make_scheduler("onecylce", opt, 10, 2)


def _lrs(name: str, steps_per_epoch: int = 10, epochs: int = 5, lr: float = 0.1, **kw) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    sched = make_scheduler(name, opt, steps_per_epoch, epochs, **kw)
    out = []
    for _ in range(steps_per_epoch * epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _torch_per_epoch(cls, epochs: int = 5, lr: float = 0.1, **kw) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = cls(opt, **kw)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_and_exponential_match_torch_at_epoch_starts():
    lrs = _lrs("step", step_size=2, gamma=0.5)
    assert lrs[::10] == pytest.approx(_torch_per_epoch(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5))
    assert len(set(lrs[:20])) == 1  # flat within the first two epochs
    lrs = _lrs("exponential", gamma=0.8)
    assert lrs[::10] == pytest.approx(_torch_per_epoch(torch.optim.lr_scheduler.ExponentialLR, gamma=0.8))
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # smooth between epochs, not stairs


def test_cosine_matches_torch_per_batch_and_its_endpoints():
    lrs = _lrs("cosine", min_lr=0.001)
    ref = _torch_per_epoch(torch.optim.lr_scheduler.CosineAnnealingLR, epochs=50, T_max=50, eta_min=0.001)
    assert lrs == pytest.approx(ref, rel=1e-6)
    assert lrs[0] == 0.1 and lrs[-1] == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi * 49 / 50)) / 2)
    assert _lrs("constant") == [0.1] * 50


def test_linear_warmup_then_cosine():
    lrs = _lrs("cosine", warmup_epochs=1.0)
    assert lrs[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(0.1)  # cosine starts at the peak after the warm-up
    assert lrs[10:] == sorted(lrs[10:], reverse=True)
    with pytest.raises(ConfigError, match="warmup_epochs=5"):
        _lrs("cosine", warmup_epochs=5)


def test_onecycle_peaks_at_max_lr():
    lrs = _lrs("onecycle", warmup_epochs=1.5)  # rising phase = 15 of 50 steps
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert peak == 14 and lrs[peak] == pytest.approx(0.1)
    assert lrs[0] == pytest.approx(0.1 / 25)  # torch's div_factor
    assert lrs[-1] < 1e-4
    opt = torch.optim.Adagrad([nn.Parameter(torch.zeros(1))], lr=0.1)  # no momentum to cycle
    make_scheduler("onecycle", opt, 5, 2)


def test_onecycle_cycles_sgd_momentum_but_leaves_muons_filters_their_own():
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.5)
    make_scheduler("onecycle", sgd, 5, 2)
    assert sgd.param_groups[0]["momentum"] == pytest.approx(0.95)  # the 1cycle policy's
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    muon = make_optimizer("muon", model, 0.05, muon_lr=0.05, muon_momentum=0.6)
    before = [g["momentum"] for g in muon.param_groups]
    make_scheduler("onecycle", muon, 5, 2)
    assert [g["momentum"] for g in muon.param_groups] == before and 0.6 in before


def test_init_schemes_follow_keras_variance_scaling():
    big = nn.Linear(800, 600)
    conv = nn.Conv2d(16, 32, 3)
    model = nn.Sequential(conv, nn.BatchNorm2d(32), nn.Flatten(), big)
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    torch.manual_seed(0)
    assert init_weights(model, "he_normal") == 2
    std = math.sqrt(2 / 800)  # fan_in of the dense layer
    assert big.weight.std().item() == pytest.approx(std, rel=0.03)
    assert big.weight.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-6  # truncated at 2 sigma
    assert torch.count_nonzero(big.bias) == 0 and torch.all(model[1].weight == 3.0)  # BN untouched
    init_weights(model, "glorot_uniform")
    limit = math.sqrt(6 / (16 * 9 + 32 * 9))  # conv fans: channels * kh * kw
    assert conv.weight.abs().max().item() <= limit and conv.weight.abs().max().item() > 0.9 * limit
    init_weights(model, "lecun_normal")
    assert big.weight.std().item() == pytest.approx(math.sqrt(1 / 800), rel=0.03)
    assert init_weights(model, None) == 0
    with pytest.raises(ConfigError, match="did you mean 'he_normal'"):
        init_weights(model, "he_norml")


def test_ema_math_buffers_and_swap():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.9)
    expected, w = 0.0, 0.0
    for n in range(30):
        w += 1.0
        with torch.no_grad():
            model[0].weight.fill_(w)
            model[1].running_mean.fill_(w)
            model[1].num_batches_tracked.fill_(n + 1)
        d = min(0.9, (1 + n) / (10 + n))  # TF's num_updates warm-up
        expected = d * expected + (1 - d) * w
        ema.update()
    assert ema.shadow["0.weight"].item() == pytest.approx(expected, rel=1e-6)
    # BN's running statistics are averaged like the weights; its integer batch counter is copied
    assert ema.shadow["1.running_mean"].item() == pytest.approx(expected, rel=1e-6)
    assert ema.shadow["1.running_var"].item() == pytest.approx(1.0)  # constant 1 averages to 1
    assert ema.shadow["1.num_batches_tracked"].item() == 30
    with ema.applied():
        assert model[0].weight.item() == pytest.approx(expected, rel=1e-6)
        assert model[1].running_mean.item() == pytest.approx(expected, rel=1e-6)
    assert model[0].weight.item() == w and model[1].running_mean.item() == w  # own state back
    plain = ModelEMA(model, 0.5, warmup=False)
    with torch.no_grad():
        model[0].weight.fill_(w + 2)
    plain.update()
    assert plain.shadow["0.weight"].item() == w + 1
    other = ModelEMA(model, 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 30 and torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"])


def test_regularization_loss_sums_outermost_modules_once():
    class Reg(nn.Linear):
        def regularization_loss(self):
            return self.weight.abs().sum()

    class Parent(nn.Module):  # defines its own total: its children must not be counted again
        def __init__(self):
            super().__init__()
            self.a, self.b = Reg(2, 2), Reg(2, 2)

        def regularization_loss(self):
            return self.a.regularization_loss() + self.b.regularization_loss()

    model = nn.Sequential(Parent(), nn.ReLU(), Reg(2, 1))
    mods = regularizing_modules(model)
    assert [type(m).__name__ for m in mods] == ["Parent", "Reg"]
    total = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, Reg))
    assert regularization_loss(model).item() == pytest.approx(total.item())
    assert regularization_loss(nn.Linear(2, 2)) is None


def test_config_accepts_the_keras_names_learning_rate_and_validation_split():
    from cnnlab.train.config import TrainConfig

    cfg = TrainConfig.from_dict({"learning_rate": 0.01, "validation_split": 0.2})
    assert (cfg.lr, cfg.val_split) == (0.01, 0.2)


def test_fused_kernels_by_default_on_the_cpu_where_torch_has_them():
    model = torch.nn.Linear(3, 2)
    for name in ("sgd", "adam", "adamw", "adagrad"):
        assert make_optimizer(name, model, 1e-3).defaults["fused"] is True, name
    assert not make_optimizer("rmsprop", model, 1e-3).defaults.get("fused")
    assert not make_optimizer("adam", model, 1e-3, fused=False).defaults.get("fused")
