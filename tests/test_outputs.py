"""cnnlab/outputs.py: which models output probabilities, and their log as logits."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab import zoo
from cnnlab.layers import Activation, Dense, Flatten
from cnnlab.outputs import EPSILON, as_logits, ends_in_softmax


def _head(*layers):
    return cnnlab.Sequential([Flatten(), *layers], input_shape=(1, 4, 4))


def test_which_models_end_in_softmax():
    assert ends_in_softmax(_head(Dense(10, activation="softmax")))
    assert ends_in_softmax(_head(Dense(10), Activation("softmax")))
    assert ends_in_softmax(nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.Softmax(dim=1)))
    nested = cnnlab.Sequential([_head(Dense(10, activation="softmax"))], input_shape=(1, 4, 4))
    assert ends_in_softmax(nested)
    wrapped = nn.Module()
    wrapped._orig_mod = _head(Dense(10, activation="softmax"))  # as torch.compile and GraphedModel hold it
    assert ends_in_softmax(wrapped)
    assert not ends_in_softmax(_head(Dense(10)))
    assert not ends_in_softmax(_head(Dense(10, activation="relu")))
    assert not ends_in_softmax(_head(Dense(10, activation="softmax"), Dense(10)))  # softmax inside, logits out
    assert not ends_in_softmax(nn.Sequential(nn.Linear(4, 10), nn.LogSoftmax(dim=1)))  # log-probs are logits
    assert not ends_in_softmax(zoo.create("seed-cnn"))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_log_probabilities_are_logits_for_the_cross_entropy(label_smoothing):
    """CE(log softmax(z)) = CE(z), value and gradient with respect to z, with hard or soft targets."""
    torch.manual_seed(0)
    z = (torch.randn(16, 10) * 3).requires_grad_()
    y = torch.randint(0, 10, (16,))
    soft = F.one_hot(torch.randint(0, 10, (16,)), 10).float() * 0.7 + 0.03
    for target in (y, soft):
        direct = F.cross_entropy(z, target, label_smoothing=label_smoothing)
        (g_direct,) = torch.autograd.grad(direct, z)
        through = F.cross_entropy(as_logits(torch.softmax(z, 1), True), target, label_smoothing=label_smoothing)
        (g_through,) = torch.autograd.grad(through, z)
        assert through.item() == pytest.approx(direct.item(), rel=1e-5)
        torch.testing.assert_close(g_through, g_direct, rtol=1e-4, atol=1e-6)


def test_zero_probabilities_give_a_finite_loss_and_logits_pass_through():
    p = torch.tensor([[1.0, 0.0, 0.0]])
    loss = F.cross_entropy(as_logits(p, True), torch.tensor([1]))
    assert loss.item() == pytest.approx(-torch.log(torch.tensor(EPSILON)).item(), rel=1e-3)
    z = torch.randn(2, 3, dtype=torch.bfloat16)
    assert as_logits(z, False) is z
    assert as_logits(torch.softmax(z.float(), 1).bfloat16(), True).dtype == torch.float32
