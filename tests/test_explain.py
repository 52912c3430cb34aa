"""Curves, confusion and top-loss figures, feature/activation maps, filters, inspect_image."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from _explain_helpers import CLASSES, tiny_cnn, tiny_data
from cnnlab.errors import ConfigError
from cnnlab.explain.confusion import confusion_figure, row_normalise, top_losses_figure
from cnnlab.explain.curves import curves_figure, read_history
from cnnlab.explain.figures import save_figure
from cnnlab.explain.inspect import inspect_image, normalise
from cnnlab.explain.maps import (conv_layers, feature_maps, filters_figure, maps_figure,
                                 normalize_channels)

HISTORY = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.5 + 0.1 * e,
            "val_loss": 2.1 / e, "val_acc": v, "lr": 0.01, "seconds": 3.0}
           for e, v in zip(range(1, 5), [0.55, 0.72, 0.70, 0.68])]


def _images(ax):
    return [im.get_array() for im in ax.get_images()]


def test_curves_figure_plots_train_and_validation_from_history(tmp_path):
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(HISTORY[0]))
        w.writeheader()
        w.writerows(HISTORY)
    rows = read_history(path)  # strings from CSV become floats
    fig = curves_figure(rows, title="run")
    assert isinstance(fig, Figure) and tuple(fig.get_size_inches()) == (10, 4)
    ax_loss, ax_acc = fig.axes
    for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert lines["train"].get_xdata().tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose(lines["train"].get_ydata(), [r[f"train_{key}"] for r in HISTORY])
        np.testing.assert_allclose(lines["validation"].get_ydata(), [r[f"val_{key}"] for r in HISTORY])
    best = [ln for ln in ax_acc.get_lines() if ln.get_label() == "_best"][0]
    assert (best.get_xdata()[0], best.get_ydata()[0]) == (2, 0.72)
    assert all(float(t).is_integer() for t in ax_loss.get_xticks())
    assert any("best 72.00% (epoch 2)" in t.get_text() for t in ax_acc.texts)


def test_curves_figure_without_validation_has_train_lines_only():
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.3 * e, "val_loss": None,
             "val_acc": ""} for e in (1, 2, 3)]
    fig = curves_figure(rows)
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["train"]


def test_confusion_figure_writes_counts_and_fractions_with_contrast():
    cm = np.array([[50, 2, 0], [5, 40, 5], [0, 0, 1]])
    fig = confusion_figure(cm, CLASSES)
    ax_c, ax_n = [ax for ax in fig.axes if ax.get_images()][:2]
    np.testing.assert_array_equal(_images(ax_c)[0], cm)
    np.testing.assert_allclose(_images(ax_n)[0], row_normalise(cm))
    cells = {(t.get_position()): t for t in ax_c.texts}
    assert cells[(0, 0)].get_text() == "50" and cells[(0, 0)].get_color() == "white"  # dark
    assert cells[(0, 1)].get_text() == "5" and cells[(0, 1)].get_color() == "black"   # light
    assert [t.get_text() for t in ax_c.get_xticklabels()] == CLASSES
    assert {t.get_position(): t.get_text() for t in ax_n.texts}[(1, 1)] == "0.80"  # (x, y)


def test_top_losses_figure_titles_are_red_when_wrong():
    x, _ = tiny_data(n=3)
    fig = top_losses_figure(x, [0, 1, 2], [0, 2, 2], [0.9, 0.6, 0.55], CLASSES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1].startswith("one / two (0.60)")
    assert [ax.title.get_color() for ax in fig.axes] == ["#2e7d32", "#c62828", "#2e7d32"]
    np.testing.assert_allclose(_images(fig.axes[0])[0], x[0, 0].numpy() / 255)


def test_save_figure_writes_a_png_of_the_figure_size(tmp_path):
    fig = curves_figure(HISTORY)
    path = save_figure(fig, tmp_path / "sub" / "curves.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (1200, 480)  # 10 x 4 in at 120 dpi
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temp file left


def _hand_conv_model():
    """conv with channel 0 = identity kernel, channel 1 = -identity, then a ReLU module."""
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.weight[1, 0, 1, 1] = -1.0
    return nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), nn.LazyLinear(2))


def test_feature_maps_of_a_hand_set_conv_are_the_image_and_its_negative():
    model = _hand_conv_model()
    x = torch.randn(1, 1, 6, 6)
    model(x)  # materialise the lazy layer
    maps = feature_maps(model, x)
    assert list(maps) == ["0"]
    pre, post = maps["0"][:2]
    torch.testing.assert_close(pre, torch.cat([x[0], -x[0]]))  # not clobbered by in-place ReLU
    torch.testing.assert_close(post, torch.relu(torch.cat([x[0], -x[0]])))
    assert maps["0"].assumed is False


def test_feature_maps_equal_a_direct_computation_through_bn():
    model = tiny_cnn().train()
    bn = model[4]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 1, 8, 8)
    maps = feature_maps(model, x[0])
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        a1 = F.conv2d(x, model[0].weight, model[0].bias, padding=1)
        a2 = F.conv2d(F.max_pool2d(torch.relu(a1), 2), model[3].weight, model[3].bias, padding=1)
        post2 = torch.relu(bn(a2))
    torch.testing.assert_close(maps["0"].pre, a1[0])
    torch.testing.assert_close(maps["0"].post, torch.relu(a1[0]))
    torch.testing.assert_close(maps["3"].pre, a2[0])
    torch.testing.assert_close(maps["3"].post, post2[0])  # after BN + ReLU, not ReLU(conv)


class _Wrapped(nn.Module):
    """A cnnlab-Conv2D look-alike: .conv then .activation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.activation = nn.Tanh()

    def forward(self, x):
        return self.activation(self.conv(x))


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(_Wrapped())
        self.c2 = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return F.relu(self.c2(self.body(x))).mean((2, 3))


def test_wrapper_layers_and_functional_activations():
    model = _Functional()
    assert conv_layers(model) == ["body.0", "c2"]
    x = torch.randn(1, 1, 7, 7)
    maps = feature_maps(model, x, layers=["body.0.conv", "c2"])
    assert list(maps) == ["body.0", "c2"]
    with torch.no_grad():
        a = model.body[0].conv(x)
        b = model.c2(torch.tanh(a))
    torch.testing.assert_close(maps["body.0"].post, torch.tanh(a)[0])
    torch.testing.assert_close(maps["c2"].pre, b[0])
    assert maps["c2"].assumed and torch.equal(maps["c2"].post, torch.relu(b[0]))


def test_unknown_layer_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'conv9'.*valid names: 0, 3"):
        feature_maps(tiny_cnn(), torch.zeros(1, 1, 8, 8), layers=["conv9"])


def test_every_channel_is_normalised_and_constant_ones_are_grey():
    maps = torch.stack([torch.linspace(-5, -4, 16).view(4, 4),       # all negative
                        torch.full((4, 4), 3.0),                      # constant
                        torch.relu(torch.randn(4, 4)) * 1e-3])        # tiny values
    maps[2, 0, 0] = 1e-3
    scaled, const = normalize_channels(maps)
    assert const.tolist() == [False, True, False]
    for c in (0, 2):
        assert scaled[c].min() == 0.0 and scaled[c].max() == pytest.approx(1.0)
    fig = maps_figure(maps, "layer x")
    shown = [_images(ax)[0] for ax in fig.axes if ax.get_visible()]
    np.testing.assert_allclose(shown[0], scaled[0])
    assert all(np.asarray(s).max() > 0 for s in shown)  # no all-black tile
    assert np.all(np.asarray(shown[1]) == 0.5) and "const" in fig.axes[1].get_title()
    assert "(3 channels)" in fig._suptitle.get_text()


def test_filters_figure_grey_rgb_and_multi_input():
    w = torch.randn(5, 1, 3, 3)
    fig = filters_figure(w)
    tiles = [ax for ax in fig.axes if ax.get_images() and ax.get_title()]
    assert len(tiles) == 5
    np.testing.assert_allclose(_images(tiles[2])[0], w[2, 0].numpy())
    assert tiles[0].get_images()[0].get_clim() == pytest.approx((-float(w.abs().max()), float(w.abs().max())))
    rgb = filters_figure(torch.randn(4, 3, 5, 5), rgb=True)
    arr = _images(rgb.axes[0])[0]
    assert arr.shape == (5, 5, 3) and arr.min() == 0 and arr.max() == pytest.approx(1)
    deep = filters_figure(nn.Conv2d(6, 20, 3), max_inputs=4)
    assert sum(1 for ax in deep.axes if ax.get_images()) == 16 * 4  # 16 filters x 4 inputs


def test_inspect_image_writes_every_picture_and_the_top_k(tmp_path):
    model = tiny_cnn()
    x, _ = tiny_data(n=1)
    out = inspect_image(model, x[0], CLASSES, (0.5,), (0.25,), tmp_path, top_k=2)
    paths = out["paths"]
    assert len(paths["features"]) == len(paths["activations"]) == len(paths["filters"]) == 2
    for p in [*paths["features"], *paths["activations"], *paths["filters"], paths["gradcam"]]:
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 200
    with torch.no_grad():
        probs = torch.softmax(model(normalise(x[0], (0.5,), (0.25,))), 1)[0]
    top = probs.topk(2)
    assert [t["index"] for t in out["topk"]] == top.indices.tolist()
    assert out["topk"][0]["probability"] == pytest.approx(top.values[0].item(), rel=1e-5)
    assert out["target_layer"] == "3" and out["class_index"] == top.indices[0].item()


def test_cnnlab_conv2d_layers_are_found_by_their_own_name():
    layers = pytest.importorskip("cnnlab.layers")
    model_mod = pytest.importorskip("cnnlab.model")
    try:
        model = model_mod.Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"),
                                      layers.MaxPool2D(2), layers.Flatten(), layers.Dense(3)],
                                     input_shape=(1, 8, 8))
    except Exception as e:  # the model module is still being written by another helper
        pytest.skip(f"cnnlab Sequential not usable yet: {e}")
    model.eval()
    assert conv_layers(model)[0] == "0"
    x = torch.randn(1, 1, 8, 8)
    maps = feature_maps(model, x)["0"]
    conv = dict(model.named_modules())["0"].conv
    torch.testing.assert_close(maps.pre, conv(x)[0].detach())
    torch.testing.assert_close(maps.post, torch.relu(conv(x))[0].detach())


def test_class_names_with_dollar_signs_are_drawn_as_written():
    # matplotlib reads "$...$" as a mathtext formula: "$5_to_$10" failed to parse and "$5-$10" lost
    # its $ signs; the house style draws text as written
    from cnnlab.explain.confusion import confusion_figure, top_losses_figure
    from cnnlab.explain.figures import figure_png

    classes = ["under_$5", "$5_to_$10", "over_$10"]
    fig = confusion_figure(torch.eye(3, dtype=torch.long) * 4, classes, title="prices $5-$10")
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"  # rendering parses every text
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert not any(t.get_parse_math() for t in ax.get_xticklabels() + [ax.title])
    images = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    figure_png(top_losses_figure(images, torch.tensor([0, 1]), torch.tensor([1, 2]),
                                 torch.tensor([0.6, 0.7]), classes))


def test_a_conv2d_without_its_own_activation_shows_the_activation_that_follows():
    # Keras' Conv2D -> BatchNormalization -> Activation (and the zoo's ResNets): the activation map
    # is ReLU(BN(conv)), not the feature map again
    import cnnlab
    from cnnlab.layers import Activation, BatchNorm, Conv2D

    torch.manual_seed(0)
    model = cnnlab.Sequential([Conv2D(4, 3, padding="same"), BatchNorm(), Activation("relu")],
                              input_shape=(1, 8, 8)).eval()
    with torch.no_grad():
        model[1].bn.running_mean.fill_(0.2)
    x = torch.randn(1, 8, 8)
    (maps,) = feature_maps(model, x).values()
    with torch.no_grad():
        conv_out = model[0](x[None])[0]
        expected = torch.relu(model[1](conv_out[None]))[0]
    assert torch.allclose(maps.pre, conv_out) and torch.allclose(maps.post, expected)
    assert not maps.assumed and not torch.equal(maps.pre, maps.post)


def test_the_filters_figure_says_what_it_leaves_out():
    fig = filters_figure(torch.randn(32, 16, 3, 3), title="conv")
    assert fig.get_suptitle() == "conv (32 x 16 x 3x3; first 16 of 32 filters, first 8 of 16 inputs)"
    assert filters_figure(torch.randn(8, 4, 3, 3), title="c").get_suptitle() == "c (8 x 4 x 3x3)"


def test_one_epochs_curves_have_whole_epoch_ticks_and_true_percent_labels():
    rows = [{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.6, "val_acc": 0.775}]
    fig = curves_figure(rows)
    fig.canvas.draw()
    ax_loss, ax_acc = fig.axes
    assert all(float(t).is_integer() for t in ax_loss.get_xticks())  # not 0.96, 0.98, ...
    for tick, label in zip(ax_acc.get_yticks(), ax_acc.get_yticklabels()):  # 77.50% sits at 0.775
        assert float(label.get_text().rstrip("%")) == pytest.approx(tick * 100)


def test_small_settings_read_as_written_and_small_values_are_not_zero():
    from cnnlab.explain.html import fmt

    assert fmt(3e-05, exact=True) == "3e-05" and fmt(0.99995, exact=True) == "0.99995"
    assert fmt(3e-05) == "3.000e-05" and fmt(0.41234) == "0.4123" and fmt(0.0) == "0.0000"
    assert fmt([0.5, 1e-4], exact=True) == "(0.5, 0.0001)"


def test_curves_take_what_fit_returns_and_its_keras_dict():
    from cnnlab.train.engine import History

    fitted = History(HISTORY)
    for given in (fitted, fitted.history):  # model.fit's result, and history.history as the lecture plots it
        ax_loss, _ = curves_figure(given).axes
        lines = {ln.get_label(): ln for ln in ax_loss.get_lines()}
        assert lines["train"].get_xdata().tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose(lines["validation"].get_ydata(), [r["val_loss"] for r in HISTORY])


def test_maps_and_grad_cam_take_a_uint8_image_as_the_dataset_holds_it():
    from cnnlab.explain.gradcam import grad_cam

    model = tiny_cnn()
    model.input_mean, model.input_std = (0.5,), (0.25,)  # as cnnlab.load_model gives them
    x, _ = tiny_data(1)
    as_trained = (x[0].float() / 255 - 0.5) / 0.25
    got, want = feature_maps(model, x[0]), feature_maps(model, as_trained)
    assert all(torch.equal(got[k].pre, want[k].pre) for k in want)
    assert torch.equal(grad_cam(model, x[0]).cam, grad_cam(model, as_trained).cam)
    with pytest.raises(Exception, match="uint8 or float image"):
        feature_maps(model, x[0].long())


def test_filters_figure_takes_a_cnnlab_conv2d():
    from cnnlab.layers import Conv2D

    layer = Conv2D(4, 3)
    layer.build((1, 8, 8))
    shown, torchs = filters_figure(layer), filters_figure(layer.conv)  # the layer, and the nn.Conv2d it holds
    tiles = [ax for ax in shown.axes if _images(ax)]  # one tile per filter, and a colour bar
    assert len(tiles) == 4 and len(shown.axes) == len(torchs.axes)
    for a, b in zip(tiles, torchs.axes):
        np.testing.assert_array_equal(_images(a)[0], _images(b)[0])


def test_the_activation_map_of_a_conv_feeding_a_residual_add_is_relu_of_its_norm_not_the_blocks_output():
    from cnnlab import zoo

    torch.manual_seed(0)
    model = zoo.create("resnet18", num_classes=10, in_channels=1, input_size=(28, 28)).eval()
    x = torch.randn(1, 1, 28, 28)
    seen = {}
    def keep(name):
        def hook(module, inputs, out):
            seen[name] = out[0].detach().clone()  # (returning nothing: a hook's return value replaces the output)
        return hook

    hooks = [dict(model.named_modules())[n].register_forward_hook(keep(n)) for n in ("layer1.0.bn2", "layer1.0")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    maps = feature_maps(model, x, ["layer1.0.conv2", "layer1.0.conv1"])
    block = maps["layer1.0.conv2"]  # conv2 -> bn2 -> (+ identity) -> ReLU: the add comes between
    assert block.assumed and torch.allclose(block.post, torch.relu(seen["layer1.0.bn2"]))
    assert not torch.allclose(block.post, seen["layer1.0"])  # not the block's output, ReLU(bn2 + identity)
    assert not maps["layer1.0.conv1"].assumed  # conv1 -> bn1 -> ReLU: a real activation module
