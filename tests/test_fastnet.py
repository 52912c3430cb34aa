"""fastnet, fastnet-large, fastnet-xl: shapes, gradients, the airbench init, and what the tools need."""

import pytest
import torch
from torch import nn

from cnnlab import zoo
from cnnlab.errors import ConfigError
from cnnlab.layers import Conv2D
from cnnlab.summary import summarize

NAMES = ("fastnet", "fastnet-large", "fastnet-xl")


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_shapes(name):
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=7)
    x = torch.randn(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (3, 7)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["fastnet", "fastnet-large"])
def test_other_input_sizes_and_channels(name):
    model = zoo.create(name, num_classes=10, in_channels=3, input_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.input_shape == (3, 32, 32)
    assert model.spec["zoo"] == name


def test_fastnet_summary_matches_design():
    """4.2 M multiply-adds at 28x28, twice seed-cnn's 2.1 M (the cost docs/speed.md quotes)."""
    s = summarize(zoo.create("fastnet"), (1, 28, 28))
    # conv 1->24 at 28x28, 24->48 at 14x14, 48->96 at 7x7, dense 864->10
    assert s.mult_adds == 28 * 28 * 24 * 9 + 14 * 14 * 48 * 24 * 9 + 7 * 7 * 96 * 48 * 9 + 864 * 10
    assert s.mult_adds < 2.1 * summarize(zoo.create("seed-cnn"), (1, 28, 28)).mult_adds


@pytest.mark.parametrize("name", NAMES)
def test_conv_layers_reachable_for_feature_maps_and_gradcam(name):
    from cnnlab.explain.gradcam import grad_cam

    model = zoo.create(name)
    convs = [m for m in model.modules() if isinstance(m, Conv2D)]
    assert convs and all(isinstance(c.conv, nn.Conv2d) for c in convs)
    flags = [p.requires_grad for p in model.parameters()]
    result = grad_cam(model, torch.randn(1, 28, 28))
    assert result.cam.shape == (28, 28)
    assert 0 <= float(result.cam.min()) <= float(result.cam.max()) <= 1
    assert [p.requires_grad for p in model.parameters()] == flags  # frozen BN scales stay frozen


def test_fastnet_large_airbench_init():
    model = zoo.create("fastnet-large")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.weight.requires_grad and torch.all(m.weight == 1) for m in bns)
    assert all(m.bias.requires_grad for m in bns)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    for conv in convs:
        w = conv.weight
        k = min(w.shape[0], w.shape[1])
        eye = torch.zeros_like(w[:k])
        nn.init.dirac_(eye)
        assert torch.equal(w[:k], eye)  # identity on the first channels...
    assert convs[0].weight[convs[0].weight.shape[1]:].abs().sum() > 0  # ...the rest random
    # the head divides the logits by 9
    x = torch.randn(2, 1, 28, 28)
    model.eval()
    layers = list(model)
    feats = x
    for layer in layers[:-3]:  # everything before GlobalMaxPool2D, Dense, the 1/9 scale
        feats = layer(feats)
    expected = layers[-2].linear(feats.amax(dim=(2, 3))) / 9
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_frozen_bn_weight_excluded_from_optimizer_updates():
    from cnnlab.train.optim import make_optimizer

    model = zoo.create("fastnet-large")
    opt = make_optimizer("sgd", model, 0.1, weight_decay=1e-3)
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    bn_w = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(id(w) in params for w in bn_w)


@pytest.mark.parametrize("widths", [(), (0, 8), (8, -1), (8.5,)])
def test_bad_widths(widths):
    with pytest.raises(ConfigError, match="widths"):
        zoo.create("fastnet", widths=widths)
