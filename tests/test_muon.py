"""Muon (train/muon.py): the orthogonalisation, the filter step against a hand-written reference,
the other groups against torch's SGD, the parameter split, errors, checkpoints and a real training run."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig
from cnnlab.train.muon import Muon, orthogonalize
from cnnlab.train.optim import make_optimizer
from cnnlab.train.schedules import make_scheduler


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(24, 4))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 5, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 2, 4, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("shape", [(16, 9), (64, 216), (216, 64), (10, 3)])
def test_orthogonalize_pushes_every_singular_value_towards_one(shape):
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=g))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=g))
    raw = torch.logspace(0, 1, min(shape))  # singular values 1 to 10, as a raw gradient's spread
    out = orthogonalize(u @ torch.diag(raw) @ v.T, steps=3)
    assert out.shape == shape and out.dtype == torch.bfloat16
    singular = torch.linalg.svdvals(out.float())
    assert 0.5 < singular.min() and singular.max() < 1.3, singular
    polar = u @ v.T  # the exact answer U V^T; the iteration keeps its directions
    cosine = torch.sum(out.float() * polar) / (out.float().norm() * polar.norm())
    assert cosine > 0.95


def test_orthogonalize_of_zero_is_zero():
    assert torch.count_nonzero(orthogonalize(torch.zeros(4, 6))) == 0


def test_filter_step_matches_a_hand_written_reference():
    model = _net()
    opt = make_optimizer("muon", model, 0.1, momentum=0.85, nesterov=True, muon_lr=0.2, muon_momentum=0.6)
    w = model[0].weight.detach().clone()
    buf = None
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(8, 2, 4, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        grad = model[0].weight.grad.clone()
        opt.step()
        buf = grad.clone() if buf is None else 0.6 * buf + grad
        update = grad + 0.6 * buf  # Nesterov
        w = w * (6 ** 0.5 / w.norm())  # 6 filters: norm sqrt(6) before the step
        ns = orthogonalize(update.reshape(6, -1), 3).float().view(w.shape)
        w = w - 0.2 * ns
        torch.testing.assert_close(model[0].weight.detach(), w, rtol=1e-5, atol=1e-6)


def test_without_batchnorm_the_filters_keep_their_scale():
    """No BatchNorm to undo the filters' scale: no norm fixing, and the step is scaled by
    sqrt(max(1, out / fan_in)) (here 6 filters of 2*3*3 = 18 inputs: 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 4))
    opt = make_optimizer("muon", model, 0.1, nesterov=True, muon_lr=0.2)
    assert opt.param_groups[-1]["normalize"] is False
    w = model[0].weight.detach().clone()
    _steps(model, opt, steps=1)
    grad = model[0].weight.grad
    # the first step's Nesterov update: grad + 0.6 * buffer, the buffer being the gradient
    expected = w - 0.2 * orthogonalize((grad + 0.6 * grad).reshape(6, -1), 3).float().view(w.shape)
    torch.testing.assert_close(model[0].weight.detach(), expected, rtol=1e-5, atol=1e-6)
    tall = nn.Sequential(nn.Conv2d(1, 32, 1), nn.Flatten(), nn.Linear(32 * 16, 2))  # 32 filters of 1 input
    opt = make_optimizer("muon", tall, 0.1, nesterov=True, muon_lr=0.2)
    w = tall[0].weight.detach().clone()
    g = torch.Generator().manual_seed(3)
    opt.zero_grad()
    nn.functional.cross_entropy(tall(torch.randn(8, 1, 4, 4, generator=g)), torch.arange(8) % 2).backward()
    update = tall[0].weight.grad + 0.6 * tall[0].weight.grad
    opt.step()
    step = 0.2 * 32 ** 0.5 * orthogonalize(update.reshape(32, 1), 3).float().view(w.shape)
    torch.testing.assert_close(tall[0].weight.detach(), w - step, rtol=1e-5, atol=1e-6)


def test_the_other_groups_train_exactly_as_torch_sgd():
    ours, theirs = _net(), _net()
    opt = make_optimizer("muon", ours, 0.05, momentum=0.85, nesterov=True, weight_decay=1e-3, bias_lr_scale=4.0)
    assert opt.param_groups[-1]["params"] == [ours[0].weight] and opt.param_groups[-1]["muon"]
    assert not any(g["muon"] for g in opt.param_groups[:-1]) and opt.param_groups[0]["lr"] == 0.05
    # torch's SGD over everything but the conv, grouped as make_optimizer("sgd") would group them
    reference = torch.optim.SGD([{"params": [theirs[4].weight], "weight_decay": 1e-3},
                                 {"params": [theirs[1].weight, theirs[1].bias, theirs[4].bias], "lr": 0.2,
                                  "weight_decay": 0.0}], lr=0.05, momentum=0.85, nesterov=True, foreach=False)
    for step in range(5):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(8, 2, 4, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
        with torch.no_grad():  # the same filters in both, so every other gradient agrees
            theirs[0].weight.copy_(ours[0].weight)
        for model, optimizer in ((ours, opt), (theirs, reference)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        for name in ("1.weight", "1.bias", "4.weight", "4.bias"):
            a, b = dict(ours.named_parameters())[name], dict(theirs.named_parameters())[name]
            assert torch.equal(a, b), (step, name)


def test_a_schedule_scales_both_kinds_of_group_alike():
    model = _net()
    opt = make_optimizer("muon", model, 0.1, bias_lr_scale=2.0, muon_lr=0.3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.2, 0.3])  # weights, biases, filters
    sched = make_scheduler("cosine", opt, steps_per_epoch=4, epochs=2, warmup_epochs=0.5)
    _steps(model, opt, steps=3)
    for _ in range(3):
        sched.step()
    factor = opt.param_groups[-1]["lr"] / 0.3
    assert 0 < factor < 1
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * factor, 0.2 * factor, 0.3 * factor])


def test_checkpointed_state_continues_identically():
    a, b = _net(), _net()
    opt_a = make_optimizer("muon", a, 0.05, momentum=0.85, nesterov=True)
    _steps(a, opt_a, steps=3)
    b.load_state_dict(a.state_dict())
    opt_b = make_optimizer("muon", b, 0.05, momentum=0.85, nesterov=True)
    saved = io.BytesIO()  # through bytes, as a checkpoint file goes (loading a live state_dict shares its tensors)
    torch.save(opt_a.state_dict(), saved)
    opt_b.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))  # both groups' momenta
    _steps(a, opt_a, steps=2, seed=7)
    _steps(b, opt_b, steps=2, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_frozen_parameters_are_left_out():
    model = _net()
    model[1].weight.requires_grad_(False)  # fastnet-large's BatchNorm scale is frozen like this
    opt = make_optimizer("muon", model, 0.1)
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model[1].weight) not in trained and len(trained) == 4


def test_bad_settings_say_what_to_change():
    with pytest.raises(ConfigError, match="has none that train: use sgd or adam"):
        make_optimizer("muon", nn.Sequential(nn.Linear(3, 2)), 0.1)
    with pytest.raises(ConfigError, match="pass the model or a plain list"):
        make_optimizer("muon", [{"params": list(_net().parameters())}], 0.1)
    with pytest.raises(ConfigError, match="muon_lr > 0"):
        make_optimizer("muon", _net(), 0.1, muon_lr=0.0)
    with pytest.raises(ConfigError, match="muon_momentum in \\[0, 1\\)"):
        TrainConfig(optimizer="muon", muon_momentum=1.0)
    with pytest.raises(ValueError, match="set weight_decay=0 for the muon=True group"):
        Muon([{"params": [nn.Parameter(torch.ones(2, 2))], "muon": True, "weight_decay": 0.1}])
    with pytest.raises(ValueError, match="put biases and BatchNorm parameters in a group with muon=False"):
        Muon([{"params": [nn.Parameter(torch.ones(2))], "muon": True}])
    with pytest.raises(ConfigError, match="unknown optimizer 'muno'.*did you mean 'muon'"):
        TrainConfig(optimizer="muno")
