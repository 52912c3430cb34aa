"""cnnlab's one-pass first block (native/conv1pool.c: 3x3 'same' conv of a one-channel image, ReLU,
2x2 max pooling) against torch's layers, and Sequential using it only where it computes the same."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _train_helpers import grayscale_images, single_thread, train_seed_cnn_bf16  # noqa: F401 (autouse fixture)
from cnnlab import zoo
from cnnlab.layers import Conv2D, Dense, Flatten, MaxPool2D
from cnnlab.model import Sequential
from cnnlab.native import conv1pool

pytestmark = pytest.mark.skipif(conv1pool.LIBRARY.get() is None,
                                reason=f"the C kernel is not built here: {conv1pool.LIBRARY.reason}")


def _run(block, conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor | None, bf16: bool):
    conv.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        y = block()
    if grad is None:
        return y.detach(), None
    y.backward(grad)
    return y.detach(), [p.grad.clone() for p in conv.parameters()]


def _torch_block(conv, x, relu=True):
    y = F.max_pool2d(conv(x), 2)
    return torch.relu(y) if relu else y


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("channels,h,w,bias", [(16, 28, 28, True), (24, 7, 9, True), (40, 12, 10, False)])
def test_values_and_gradients_match_torchs_layers(bf16, relu, channels, h, w, bias):
    torch.manual_seed(channels)
    conv = nn.Conv2d(1, channels, 3, padding=1, bias=bias)
    x = grayscale_images(6, h, w)
    ours, ours_grads = _run(lambda: conv1pool.conv_relu_pool(conv, x, relu), conv, x, None, bf16)
    theirs, _ = _run(lambda: _torch_block(conv, x, relu), conv, x, None, bf16)
    grad = torch.randn(theirs.shape, generator=torch.Generator().manual_seed(1)).to(theirs.dtype)
    ours, ours_grads = _run(lambda: conv1pool.conv_relu_pool(conv, x, relu), conv, x, grad, bf16)
    theirs, their_grads = _run(lambda: _torch_block(conv, x, relu), conv, x, grad, bf16)
    assert ours.dtype == theirs.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert ours.shape == theirs.shape and ours.is_contiguous(memory_format=torch.channels_last)
    # the same numbers but for the last place where oneDNN sums the 9 taps in another order: in fp32
    # that shows in many outputs; rounded to bf16 it almost never does
    if bf16:
        assert (ours != theirs).float().mean() <= 1e-3
    torch.testing.assert_close(ours, theirs, rtol=2 ** -7 if bf16 else 1e-5, atol=1e-6)
    for a, b in zip(ours_grads, their_grads):  # float sums over every window, in another order
        torch.testing.assert_close(a, b, rtol=2e-2 if bf16 else 1e-4, atol=1e-4)


def test_eval_without_autograd_matches():
    conv = nn.Conv2d(1, 16, 3, padding=1)
    x = grayscale_images(4, 28, 28, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(conv1pool.conv_relu_pool(conv, x), _torch_block(conv, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change", [
    dict(conv=dict(in_channels=3)), dict(conv=dict(out_channels=8)), dict(conv=dict(kernel_size=5, padding=2)),
    dict(conv=dict(stride=2)), dict(conv=dict(padding=0)), dict(conv=dict(dilation=2, padding=2)),
    dict(x="requires_grad"), dict(x="float64"), dict(autocast=torch.float16),
])
def test_applies_only_to_the_convolution_it_computes(change):
    kw = dict(in_channels=1, out_channels=16, kernel_size=3, padding=1) | change.get("conv", {})
    conv = nn.Conv2d(**kw)
    x = grayscale_images(2, 8, 8).expand(-1, kw["in_channels"], -1, -1).contiguous()
    if change.get("x") == "requires_grad":  # e.g. a saliency map: the input's gradient is not computed here
        x.requires_grad_()
    if change.get("x") == "float64":
        x, conv = x.double(), conv.double()
    dtype = change.get("autocast")
    with torch.autocast("cpu", dtype or torch.bfloat16, enabled=dtype is not None):
        assert not conv1pool.applies(conv, x)
        with pytest.raises(ValueError, match="cannot take"):
            conv1pool.conv_relu_pool(conv, x)


def _grayscale_cnn() -> Sequential:
    return Sequential([Conv2D(16, 3, padding="same", activation="relu"), MaxPool2D(2), Flatten(), Dense(10)],
                      input_shape=(1, 12, 12))


def _backward_ops(out: torch.Tensor) -> set[str]:
    """Names of every autograd node that produced out."""
    names, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            todo += [f for f, _ in fn.next_functions]
    return names


def test_sequential_runs_the_first_block_in_one_pass_unless_watched():
    model = _grayscale_cnn()
    x = grayscale_images(2, 12, 12)
    out = model(x)
    assert "_ConvReluPoolBackward" in _backward_ops(out) and "ConvolutionBackward0" not in _backward_ops(out)
    handle = model[0].register_forward_hook(lambda *a: None)  # an inspection: the layers run as written
    try:
        watched = model(x)
    finally:
        handle.remove()
    assert "_ConvReluPoolBackward" not in _backward_ops(watched)
    torch.testing.assert_close(watched, out, rtol=1e-5, atol=1e-6)
    saliency = model(x.clone().requires_grad_())  # a gradient for the input: the layers as written
    assert "_ConvReluPoolBackward" not in _backward_ops(saliency)


def test_a_valid_or_strided_first_conv_is_left_to_torch():
    for conv in (Conv2D(16, 3, padding="valid", activation="relu"),
                 Conv2D(16, 3, strides=2, padding="same", activation="relu")):
        model = Sequential([conv, MaxPool2D(2), Flatten(), Dense(10)], input_shape=(1, 12, 12))
        assert "_ConvReluPoolBackward" not in _backward_ops(model(grayscale_images(2, 12, 12)))


def test_training_seed_cnn_with_the_kernel_follows_the_training_without(monkeypatch):
    """Five Adam steps of seed-cnn in cnnlab's fast CPU setting (bf16 autocast, channels-last) end at
    the same weights with the one-pass first block as with torch's layers, to bf16 rounding."""

    used = []
    real = conv1pool.conv_relu_pool_if_fits

    def counted(conv, x, relu=True):
        y = real(conv, x, relu)
        used.append(y is not None)
        return y

    monkeypatch.setattr(conv1pool, "conv_relu_pool_if_fits", counted)
    fused_weights, fused_losses = train_seed_cnn_bf16(steps=5)
    assert used == [True, False, False] * 5  # per step: the first block in one pass, the other two not
    monkeypatch.setattr(conv1pool, "applies", lambda conv, x: False)
    plain_weights, plain_losses = train_seed_cnn_bf16(steps=5)
    assert fused_losses == pytest.approx(plain_losses, rel=1e-3)
    for a, b in zip(fused_weights, plain_weights):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_fastnets_first_block_without_activation_runs_in_one_pass():
    """fastnet's blocks are Conv2D (no activation) then MaxPool2D: the first one goes through the
    kernel with the ReLU off, and gives what the layers as written give."""
    torch.manual_seed(0)
    model = zoo.create("fastnet").to(memory_format=torch.channels_last)
    x = grayscale_images(4, 28, 28, seed=5)
    with torch.autocast("cpu", torch.bfloat16):
        out = model(x)
        handles = [layer.register_forward_hook(lambda *a: None) for layer in model]
        try:
            as_written = model(x)
        finally:
            for h in handles:
                h.remove()
    assert "_ConvReluPoolBackward" in _backward_ops(out) and "_ConvReluPoolBackward" not in _backward_ops(as_written)
    torch.testing.assert_close(out, as_written, rtol=2e-2, atol=2e-2)  # bf16 logits; BN in train mode
