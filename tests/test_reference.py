"""The oracle itself: the lectures' worked examples exactly, and its gradients by finite differences."""

import numpy as np
import pytest
import torch

from cnnlab import reference as ref
from cnnlab.layers import Conv2D, MaxPool2D

X = np.array([[0, 1, 7, 5], [5, 5, 6, 6], [5, 3, 3, 0], [1, 1, 1, 2]], dtype=float)
K1 = np.array([[1, 0, 1], [1, 2, 0], [3, 0, 1]], dtype=float)
K2 = np.array([[1, 0, 0], [1, 2, 1], [1, 2, 3]], dtype=float)
PADDED = [[26, 42, 55, 35], [34, 41, 33, 28], [18, 25, 23, 14], [3, 9, 8, 8]]


def conv(x, k, pad=0):
    return ref.conv2d_forward(x[None, None], k[None, None], pad=(pad,) * 4)[0, 0]


def test_lecture_convolutions_exactly():
    assert conv(X, K1).tolist() == [[40, 32], [26, 25]]
    assert conv(X, K2).tolist() == [[41, 33], [25, 23]]
    assert conv(X, K2, pad=1).tolist() == PADDED


def test_lecture_convolutions_through_the_conv2d_layer():
    for kernel, padding, want in [(K1, "valid", [[40, 32], [26, 25]]), (K2, 1, PADDED), (K2, "same", PADDED)]:
        layer = Conv2D(1, 3, padding=padding, use_bias=False, in_channels=1).double()
        with torch.no_grad():
            layer.conv.weight.copy_(torch.tensor(kernel)[None, None])
        assert layer(torch.tensor(X)[None, None])[0, 0].tolist() == want


def test_lecture_max_pooling_exactly():
    x = np.arange(1, 17, dtype=float).reshape(1, 1, 4, 4)
    assert ref.pool2d_forward(x, (2, 2), (2, 2))[0, 0].tolist() == [[6, 8], [14, 16]]
    assert MaxPool2D(2, strides=2)(torch.tensor(x))[0, 0].tolist() == [[6, 8], [14, 16]]


def test_lecture_feature_count_96x96_with_400_8x8_filters():
    out = Conv2D(400, 8).build((1, 96, 96))
    assert out == (400, 89, 89)  # OH = OW = 96 - 8 + 1
    assert out[0] * out[1] * out[2] == 3_168_400
    assert ref.output_size(96, 8, 1, 0) == 89


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at x."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f(x)
        x[idx] = old - eps
        down = f(x)
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("stride,pad,dilation", [((1, 1), (0, 0, 0, 0), (1, 1)), ((2, 1), (0, 1, 1, 2), (1, 2))])
def test_conv_backward_matches_finite_differences(stride, pad, dilation):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    dy = rng.standard_normal(ref.conv2d_forward(x, w, b, stride, pad, dilation).shape)
    dx, dw, db = ref.conv2d_backward(dy, x, w, stride, pad, dilation)

    def loss(xv, wv, bv):
        return (ref.conv2d_forward(xv, wv, bv, stride, pad, dilation) * dy).sum()

    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(v, w, b), x), atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: loss(x, v, b), w), atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(lambda v: loss(x, w, v), b), atol=1e-6)


@pytest.mark.parametrize("mode", ["max", "avg", "min"])
def test_pool_backward_matches_finite_differences(mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 5))
    pad = (0, 1, 0, 1)  # TF 'same' for 5 with window 2 stride 2: one row below, one column right
    dy = rng.standard_normal(ref.pool2d_forward(x, (2, 2), (2, 2), pad, mode).shape)
    dx = ref.pool2d_backward(dy, x, (2, 2), (2, 2), pad, mode)
    expected = numeric_grad(lambda v: (ref.pool2d_forward(v, (2, 2), (2, 2), pad, mode) * dy).sum(), x)
    np.testing.assert_allclose(dx, expected, atol=1e-6)


def test_same_pooling_averages_only_real_pixels():
    x = np.arange(1, 10, dtype=float).reshape(1, 1, 3, 3)
    y = ref.pool2d_forward(x, (2, 2), (2, 2), (0, 1, 0, 1), "avg")[0, 0]
    assert y.tolist() == [[3.0, 4.5], [7.5, 9.0]]  # bottom-right window holds only the 9


def test_dense_relu_softmax_backward_match_finite_differences():
    rng = np.random.default_rng(2)
    x, w, b, labels = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5), np.array([0, 4, 2])

    def loss(xv, wv):
        return ref.softmax_cross_entropy(ref.relu_forward(ref.dense_forward(xv, wv, b)), labels)[0]

    z = ref.dense_forward(x, w, b)
    _, dlogits = ref.softmax_cross_entropy(ref.relu_forward(z), labels)
    dx, dw, _ = ref.dense_backward(ref.relu_backward(dlogits, z), x, w)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(v, w), x), atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: loss(x, v), w), atol=1e-6)


def test_same_padding_is_tensorflows():
    assert ref.same_padding(28, 3, 1) == (1, 1)
    assert ref.same_padding(28, 3, 2) == (0, 1)  # extra pixel after (bottom/right)
    assert ref.same_padding(7, 2, 2) == (0, 1)
    assert ref.same_padding(5, 3, 1, dilation=2) == (2, 2)
