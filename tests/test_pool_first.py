"""Sequential runs ReLU-then-max-pooling as pooling-then-ReLU: the same values and gradients, and
never while an inspection hooks either layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab import zoo
from cnnlab.layers import Activation, Conv2D, MaxPool2D
from cnnlab.model import Sequential, _pool_first_applies


def _out_and_grads(model: nn.Module, x: torch.Tensor, hooked: bool, dtype=None):
    handles = []
    if hooked:  # a hook on every layer turns the pool-first path off: the layers then run as written
        handles = [layer.register_forward_hook(lambda *a: None) for layer in model]
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        out = model(x)
    out.float().square().sum().backward()
    for h in handles:
        h.remove()
    return out.detach(), x.grad, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_seed_cnn_pool_first_matches_the_layers_as_written_bitwise(dtype):
    model = zoo.create("seed-cnn")
    assert _pool_first_applies(model[0], model[1]) and _pool_first_applies(model[4], model[5])
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x[:, :, :4] = -1.0  # whole windows of negatives (all ReLU zeros): ties that both orders must handle alike
    fast, slow = _out_and_grads(model, x, False, dtype), _out_and_grads(model, x, True, dtype)
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])
    assert all(torch.equal(a, b) for a, b in zip(fast[2], slow[2]))


def test_activation_layer_relu_and_same_padding_pool():
    model = Sequential([Conv2D(4, 3), Activation("relu"), MaxPool2D(3, strides=2, padding="same"),
                        Conv2D(2, 3, padding="same", activation="tanh"), MaxPool2D(2, padding="same")],
                       input_shape=(1, 11, 11))
    assert _pool_first_applies(model[1], model[2]) and not _pool_first_applies(model[3], model[4])  # tanh: no
    x = torch.randn(3, 1, 11, 11, generator=torch.Generator().manual_seed(1))
    fast, slow = _out_and_grads(model, x, False), _out_and_grads(model, x, True)
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])
    assert all(torch.equal(a, b) for a, b in zip(fast[2], slow[2]))


def test_hooks_see_the_full_resolution_relu_output():
    model = zoo.create("seed-cnn")
    seen = {}
    model[0].register_forward_hook(lambda m, i, o: seen.setdefault("conv", o))
    model(torch.randn(2, 1, 28, 28))
    assert seen["conv"].shape == (2, 16, 28, 28) and (seen["conv"] >= 0).all()  # after ReLU, before pooling
    assert not _pool_first_applies(model[0], model[1])
