"""Every layer against the NumPy oracle (cnnlab.reference) in float64: outputs and gradients."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlab import reference as ref
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import (
    Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D,
    GlobalMaxPool2D, LocalResponseNorm, MaxPool2D, MinPool2D, ShapeWarning, ZeroPadding2D,
)

TOL = dict(rtol=1e-6, atol=1e-6)


def fast(n: int):
    """Explicit example count, no deadline: the whole file stays well under a minute on 2 cores."""
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def built(layer, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShapeWarning)
        layer.build(shape)
    return layer.double()


def run(layer, x, seed=0):
    """Forward x through layer, backward a random dy; return (y, dy, x.grad) as NumPy."""
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    dy = np.random.default_rng(seed).standard_normal(tuple(y.shape))
    (y * torch.tensor(dy)).sum().backward()
    return y.detach().numpy(), dy, xt.grad.numpy()


def explicit_pads(padding, h, w, kernel, stride, dilation):
    """(top, bottom, left, right) for the reference, computed from the oracle's own 'same' rule."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return (*ref.same_padding(h, kernel[0], stride[0], dilation[0]),
                *ref.same_padding(w, kernel[1], stride[1], dilation[1]))
    if isinstance(padding, int):
        return (padding,) * 4
    if isinstance(padding[0], int):
        return (padding[0], padding[0], padding[1], padding[1])
    return (*padding[0], *padding[1])


paddings = st.one_of(
    st.sampled_from(["valid", "same"]),
    st.integers(0, 2),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))),
)


@fast(150)
@given(n=st.integers(1, 2), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), padding=paddings, bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_conv2d_matches_reference(n, c, f, h, w, kernel, stride, dilation, padding, bias, seed):
    pads = explicit_pads(padding, h, w, kernel, stride, dilation)
    oh = ref.output_size(h, kernel[0], stride[0], pads[0] + pads[1], dilation[0])
    ow = ref.output_size(w, kernel[1], stride[1], pads[2] + pads[3], dilation[1])
    assume(oh >= 1 and ow >= 1)
    layer = built(Conv2D(f, kernel, strides=stride, padding=padding, dilation_rate=dilation, use_bias=bias), (c, h, w))
    assert layer.output_shape == (f, oh, ow)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    weight = layer.conv.weight.detach().numpy()
    b = layer.conv.bias.detach().numpy() if bias else None
    y, dy, dx = run(layer, x, seed)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, weight, b, stride, pads, dilation), **TOL)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, weight, stride, pads, dilation)
    np.testing.assert_allclose(dx, rdx, **TOL)
    np.testing.assert_allclose(layer.conv.weight.grad.numpy(), rdw, **TOL)
    if bias:
        np.testing.assert_allclose(layer.conv.bias.grad.numpy(), rdb, **TOL)


@fast(120)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       padding=st.sampled_from(["valid", "same"]), mode=st.sampled_from(["max", "avg", "min"]),
       seed=st.integers(0, 2**16))
def test_pooling_matches_reference(n, c, h, w, size, stride, padding, mode, seed):
    s = stride or size
    pads = explicit_pads(padding, h, w, size, s, (1, 1))
    assume(ref.output_size(h, size[0], s[0], pads[0] + pads[1]) >= 1)
    assume(ref.output_size(w, size[1], s[1], pads[2] + pads[3]) >= 1)
    cls = {"max": MaxPool2D, "avg": AvgPool2D, "min": MinPool2D}[mode]
    layer = built(cls(size, strides=stride, padding=padding), (c, h, w))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    y, dy, dx = run(layer, x, seed)
    assert y.shape[1:] == layer.output_shape
    np.testing.assert_allclose(y, ref.pool2d_forward(x, size, s, pads, mode), **TOL)
    np.testing.assert_allclose(dx, ref.pool2d_backward(dy, x, size, s, pads, mode), **TOL)


@fast(40)
@given(n=st.integers(1, 4), fin=st.integers(1, 20), units=st.integers(1, 10),
       activation=st.sampled_from([None, "relu"]), seed=st.integers(0, 2**16))
def test_dense_matches_reference(n, fin, units, activation, seed):
    layer = built(Dense(units, activation=activation), (fin,))
    x = np.random.default_rng(seed).standard_normal((n, fin))
    weight, b = layer.linear.weight.detach().numpy(), layer.linear.bias.detach().numpy()
    y, dy, dx = run(layer, x, seed)
    z = ref.dense_forward(x, weight, b)
    expected = ref.relu_forward(z) if activation else z
    np.testing.assert_allclose(y, expected, **TOL)
    dz = ref.relu_backward(dy, z) if activation else dy
    rdx, rdw, rdb = ref.dense_backward(dz, x, weight)
    np.testing.assert_allclose(dx, rdx, **TOL)
    np.testing.assert_allclose(layer.linear.weight.grad.numpy(), rdw, **TOL)
    np.testing.assert_allclose(layer.linear.bias.grad.numpy(), rdb, **TOL)


@fast(20)
@given(n=st.integers(1, 5), k=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_matches_torch(n, k, seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.standard_normal((n, k)) * 3, rng.integers(0, k, n)
    lt = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(lt, torch.tensor(labels))
    loss.backward()
    rloss, rgrad = ref.softmax_cross_entropy(logits, labels)
    assert abs(loss.item() - rloss) < 1e-9
    np.testing.assert_allclose(lt.grad.numpy(), rgrad, **TOL)


def test_same_output_is_ceil_of_input_over_stride():
    for h in range(1, 17):
        for s in range(1, 5):
            for k in range(1, 6):
                for cls in (lambda: Conv2D(1, k, strides=s, padding="same"),
                            lambda: Conv2D(1, k, strides=s, padding="same", dilation_rate=2),
                            lambda: MaxPool2D(k, strides=s, padding="same")):
                    assert cls().build((1, h, h + 1))[1:] == (math.ceil(h / s), math.ceil((h + 1) / s))


def test_same_puts_the_extra_pixel_bottom_right():
    # 4x4 input, 2x2 kernel of ones, stride 1: TF pads one row below and one column right only
    layer = built(Conv2D(1, 2, padding="same", use_bias=False), (1, 4, 4))
    torch.nn.init.ones_(layer.conv.weight)
    x = torch.arange(16.0, dtype=torch.float64).reshape(1, 1, 4, 4)
    y = layer(x)[0, 0]
    assert y[0, 0].item() == 0 + 1 + 4 + 5 and y[3, 3].item() == 15  # last one sees only itself


def test_batchnorm_training_step_and_keras_momentum():
    layer = built(BatchNorm(), (3, 4, 4))
    assert layer.bn.momentum == pytest.approx(0.01) and layer.bn.eps == 1e-3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4, 4)) * 2 + 1
    with torch.no_grad():
        layer.bn.weight.copy_(torch.tensor(rng.standard_normal(3)))
        layer.bn.bias.copy_(torch.tensor(rng.standard_normal(3)))
    y = layer(torch.tensor(x)).detach().numpy()
    expected = ref.batchnorm_forward(x, layer.bn.weight.detach().numpy(), layer.bn.bias.detach().numpy(), 1e-3)
    np.testing.assert_allclose(y, expected, **TOL)
    # Keras: moving = 0.99 * moving + 0.01 * batch mean, from moving = 0
    np.testing.assert_allclose(layer.bn.running_mean.numpy(), 0.01 * x.mean(axis=(0, 2, 3)), **TOL)
    vec = built(BatchNorm(momentum=0.9), (6,))
    assert isinstance(vec.bn, torch.nn.BatchNorm1d) and vec.bn.momentum == pytest.approx(0.1)
    assert torch.autograd.gradcheck(vec, (torch.randn(4, 6, dtype=torch.float64, requires_grad=True),))


def test_local_response_norm_is_the_papers_formula():
    layer = built(LocalResponseNorm(size=5, alpha=1e-2, beta=0.75, k=2.0), (7, 3, 3))
    x = np.random.default_rng(1).standard_normal((2, 7, 3, 3)) * 3
    y = layer(torch.tensor(x)).numpy()
    np.testing.assert_allclose(y, ref.lrn_forward(x, 5, 1e-2, 0.75, 2.0), **TOL)


def test_global_pools_flatten_padding_and_dropout():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x)
    assert GlobalMaxPool2D().build((3, 4, 5)) == (3,)
    np.testing.assert_allclose(GlobalMaxPool2D()(xt).numpy(), x.max(axis=(2, 3)))
    np.testing.assert_allclose(GlobalAvgPool2D()(xt).numpy(), x.mean(axis=(2, 3)))
    assert Flatten().build((3, 4, 5)) == (60,)
    np.testing.assert_allclose(Flatten()(xt).numpy(), x.reshape(2, 60))
    pad = ZeroPadding2D(((1, 2), (0, 3)))
    assert pad.build((3, 4, 5)) == (3, 7, 8)
    np.testing.assert_allclose(pad(xt).numpy(), np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 3))))
    drop = Dropout(0.5)
    drop.eval()
    assert torch.equal(drop(xt), xt)
    drop.train()
    kept = drop(torch.ones(10000))
    assert set(kept.unique().tolist()) == {0.0, 2.0} and 0.45 < (kept == 0).float().mean() < 0.55


def test_activations_by_keras_name():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).reshape(1, 13)
    expected = {
        "relu": x.clamp(min=0), "sigmoid": 1 / (1 + torch.exp(-x)), "tanh": torch.tanh(x),
        "softmax": torch.exp(x) / torch.exp(x).sum(), "elu": torch.where(x > 0, x, torch.exp(x) - 1),
        "leaky_relu": torch.where(x > 0, x, 0.2 * x), "swish": x / (1 + torch.exp(-x)),
        "gelu": 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
        "selu": 1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * (torch.exp(x) - 1)),
    }
    for name, want in expected.items():
        torch.testing.assert_close(Activation(name)(x), want)
    with pytest.raises(ConfigError, match="did you mean relu"):
        Activation("rleu")


def test_initializers_and_regularizer():
    layer = Conv2D(8, 3, in_channels=4, kernel_regularizer="l2(1e-3)")
    bound = math.sqrt(6 / (4 * 9 + 8 * 9))  # glorot_uniform: fan_in = 4*3*3, fan_out = 8*3*3
    w = layer.conv.weight
    assert w.abs().max() <= bound and w.abs().max() > bound * 0.8 and torch.all(layer.conv.bias == 0)
    torch.testing.assert_close(layer.regularization_loss(), 1e-3 * w.pow(2).sum())
    dense = Dense(3, in_features=5, kernel_regularizer={"l1": 0.5})
    torch.testing.assert_close(dense.regularization_loss(), 0.5 * dense.linear.weight.abs().sum())
    assert Dense(3, in_features=5).regularization_loss().item() == 0
    with pytest.raises(ConfigError, match="l2\\(1e-4\\)"):
        Conv2D(8, 3, kernel_regularizer="l3(1)")
    with pytest.raises(ConfigError, match="did you mean he_normal"):
        Conv2D(8, 3, kernel_initializer="he_norml")


def test_layers_given_input_size_work_without_build():
    conv = Conv2D(4, 3, strides=2, padding="same", in_channels=2)
    assert conv(torch.zeros(1, 2, 9, 9)).shape == (1, 4, 5, 5)
    assert conv(torch.zeros(1, 2, 8, 8)).shape == (1, 4, 4, 4)  # 'same' pads follow the actual size
    lazy = Dense(3)
    assert lazy(torch.zeros(2, 7)).shape == (2, 3) and lazy.output_shape == (3,)


def test_shape_errors_of_single_layers():
    with pytest.raises(ShapeError, match=r"gets 1x28x28 \(1 channels\); set in_channels=1"):
        Conv2D(8, 3, in_channels=3).build((1, 28, 28))
    with pytest.raises(ShapeError, match="add Flatten\\(\\) before it"):
        Dense(10).build((64, 7, 7))
    with pytest.raises(ShapeError, match=r"\(1 \+ 2\*0 - 2\)/2 \+ 1 = 0.5 -> 0 rows; use padding='same'"):
        MaxPool2D().build((64, 1, 1))
    with pytest.warns(ShapeWarning, match="last 1 row and the last 1 column"):
        MaxPool2D().build((8, 7, 7))
    with pytest.raises(ConfigError, match="padding must be 'valid', 'same'"):
        Conv2D(8, 3, padding="full")


def test_arithmetic_strings():
    conv = Conv2D(16, 3, padding=1)
    conv.build((1, 28, 28))
    assert conv.arithmetic() == ["H: (28 + 2*1 - 3)/1 + 1 = 28", "W: (28 + 2*1 - 3)/1 + 1 = 28"]
    pool = MaxPool2D(2, padding="same")
    pool.build((16, 7, 6))
    assert pool.arithmetic() == ["H: (7 + 0+1 - 2)/2 + 1 = 4", "W: (6 + 2*0 - 2)/2 + 1 = 3"]
    dilated = Conv2D(1, 3, dilation_rate=2)
    dilated.build((1, 10, 10))
    assert dilated.arithmetic()[0] == "H: (10 + 2*0 - 5)/1 + 1 = 6 (kernel 3 dilated by 2 spans 5)"


def test_global_max_pool_trains_under_compile_and_bf16():
    """torch.compile's amax backward returns NaN gradients under bf16 autocast (pytorch/pytorch#186799):
    compiled, GlobalMaxPool2D takes max over the flattened map. Gradients must be finite and match
    eager's wherever the maximum is unique (these random maps have no ties)."""
    from cnnlab.layers import Activation
    from cnnlab.model import Sequential

    def build():
        torch.manual_seed(0)
        return Sequential([Conv2D(8, 3, padding="same", use_bias=False), Activation("gelu"),
                           Conv2D(8, 3, padding="same", use_bias=False), Activation("gelu"),
                           GlobalMaxPool2D(), Dense(10, use_bias=False)], input_shape=(1, 12, 12))

    x, y = torch.randn(16, 1, 12, 12, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    grads = {}
    for mode in ("eager", "compiled"):
        model = build()
        run = torch.compile(model) if mode == "compiled" else model
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(run(x).float(), y)
        loss.backward()
        grads[mode] = [p.grad.float() for p in model.parameters()]
    for eager, compiled in zip(grads["eager"], grads["compiled"]):
        assert torch.isfinite(compiled).all()
        torch.testing.assert_close(compiled, eager, rtol=0.05, atol=0.05 * eager.abs().max().item())


def test_constructor_mistakes_are_config_errors_not_type_errors():
    with pytest.raises(ConfigError, match=r"^Conv2D has no argument 'kernel_sise' \(did you mean kernel_size\?\)"):
        Conv2D(32, kernel_sise=3)
    with pytest.raises(ConfigError, match=r"^Conv2D has no argument 'name'; it takes filters, kernel_size"):
        Conv2D(32, 3, name="conv1")
    with pytest.raises(ConfigError, match=r"^Dense needs units; it takes units, activation"):
        Dense()
    with pytest.raises(ConfigError, match=r"^Flatten takes 0 arguments by position \(none\) but got 1"):
        Flatten(1)
    with pytest.raises(ConfigError, match=r"^Dense got units twice, by position and by name"):
        Dense(3, units=4)


def test_float_arguments_take_numbers_and_numeric_strings():
    assert BatchNorm(epsilon="1e-5").epsilon == 1e-5  # what a YAML 1.1 reader makes of 1e-5
    assert LocalResponseNorm(alpha="1e-4").alpha == 1e-4
    with pytest.raises(ConfigError, match=r"^BatchNorm epsilon must be a number like 0.001, got 'small'"):
        BatchNorm(epsilon="small")
    with pytest.raises(ConfigError, match=r"^BatchNorm momentum must be a number"):
        BatchNorm(momentum=None)
    with pytest.raises(ConfigError, match=r"^LocalResponseNorm k must be a number"):
        LocalResponseNorm(k=[2])
    with pytest.raises(ConfigError, match=r"^kernel_regularizer l2 must be a number"):
        Dense(2, kernel_regularizer={"l2": "lots"})


def test_calling_a_layer_on_an_input_layer_says_there_is_no_functional_api():
    from cnnlab.errors import ConfigError
    from cnnlab.layers import Input

    with pytest.raises(ConfigError, match="cnnlab has no Keras functional API"):
        Conv2D(8, 3)(Input((1, 28, 28)))


def test_a_window_narrower_than_its_stride_is_not_warned_about(recwarn):
    # ResNet's 1x1 stride-2 shortcut skips every other row by design, the last one among them
    layer = Conv2D(8, 1, strides=2)
    assert layer.build((4, 28, 28)) == (8, 14, 14)
    assert not [w for w in recwarn if issubclass(w.category, ShapeWarning)]
    with pytest.warns(ShapeWarning, match="never reaches the last 1 row"):
        Conv2D(8, 2, strides=2).build((4, 29, 28))  # a 2-wide window that misses row 28
