"""Sequential: build-time shapes, the lectures' Keras models, ShapeErrors, config round-trips."""

import warnings

import pytest
import torch

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import (
    Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Input,
    LocalResponseNorm, MaxPool2D, MinPool2D, Residual, ShapeWarning, ZeroPadding2D,
)
from cnnlab.model import Sequential, check_num_classes


def lecture_000():
    """Lecture 000's Keras model: four 3x3 'same' convolutions 32-32-64-64, each with 2x2 max pooling."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShapeWarning)  # 7 -> 3 and 3 -> 1 drop a row, as in Keras
        return Sequential([
            Conv2D(32, (3, 3), padding="same", activation="relu"), MaxPool2D((2, 2)),
            Conv2D(32, (3, 3), padding="same", activation="relu"), MaxPool2D((2, 2)),
            Conv2D(64, (3, 3), padding="same", activation="relu"), MaxPool2D((2, 2)),
            Conv2D(64, (3, 3), padding="same", activation="relu"), MaxPool2D((2, 2)),
            Flatten(), Dense(64, activation="relu"), Dense(10, activation="softmax"),
        ], input_shape=(1, 28, 28))


def lecture_004():
    """Lecture 004's Keras model: InputLayer((28,28,1)), 16-32-64 'same' convs, 'same' max pooling."""
    model = Sequential()
    model.add(Input((1, 28, 28)))
    model.add(Conv2D(filters=16, kernel_size=(3, 3), padding="same", strides=(1, 1), activation="relu"))
    model.add(MaxPool2D(pool_size=(2, 2), strides=(2, 2), padding="same"))
    model.add(Conv2D(filters=32, kernel_size=3, padding="same", activation="relu"))
    model.add(MaxPool2D(padding="same"))
    model.add(Conv2D(filters=64, kernel_size=3, padding="same", activation="relu"))
    model.add(MaxPool2D(padding="same"))
    model.add(Flatten())
    model.add(Dense(units=256, activation="relu"))
    model.add(Dense(units=10, activation="softmax"))
    return model


def n_params(layer):
    return sum(p.numel() for p in layer.parameters())


def test_lecture_000_model_matches_keras():
    # Keras' model.summary(), shapes turned to C x H x W. Params: conv = (3*3*C_in + 1)*F,
    # dense = (IN + 1)*OUT: 3*3*1*32+32 = 320, 3*3*32*32+32 = 9248, 3*3*32*64+64 = 18496,
    # 3*3*64*64+64 = 36928, 64*64+64 = 4160, 64*10+10 = 650.
    shapes = [(32, 28, 28), (32, 14, 14), (32, 14, 14), (32, 7, 7), (64, 7, 7), (64, 3, 3), (64, 3, 3),
              (64, 1, 1), (64,), (64,), (10,)]
    params = [320, 0, 9248, 0, 18496, 0, 36928, 0, 0, 4160, 650]
    model = lecture_000()
    assert [layer.output_shape for layer in model] == shapes
    assert [n_params(layer) for layer in model] == params
    assert n_params(model) == 69_802
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_lecture_004_model_matches_keras():
    # 'same' pooling of 7 gives ceil(7/2) = 4, so Flatten gets 4*4*64 = 1024 and Dense(256) has
    # 1024*256+256 = 262400; convs 3*3*1*16+16 = 160, 3*3*16*32+32 = 4640, 3*3*32*64+64 = 18496.
    shapes = [(16, 28, 28), (16, 14, 14), (32, 14, 14), (32, 7, 7), (64, 7, 7), (64, 4, 4), (1024,), (256,), (10,)]
    params = [160, 0, 4640, 0, 18496, 0, 0, 262_400, 2570]
    model = lecture_004()
    assert model.input_shape == (1, 28, 28) and len(model) == 9  # the Input marker is not a layer
    assert [layer.output_shape for layer in model] == shapes
    assert [n_params(layer) for layer in model] == params
    assert n_params(model) == 288_266


def test_keras_layer_names_import_as_the_same_classes():
    """Every Keras name model files accept (base.ALIASES) imports from cnnlab.layers as that class,
    so lecture code with MaxPooling2D / BatchNormalization runs unchanged."""
    import cnnlab.layers as layers
    from cnnlab.layers.base import ALIASES, LAYERS

    layer_aliases = {a: n for a, n in ALIASES.items() if LAYERS[n].__module__.startswith("cnnlab.layers.")}
    assert len(layer_aliases) >= 11  # the rest is "Model", which names cnnlab.Sequential in configs
    for alias, name in layer_aliases.items():
        assert getattr(layers, alias) is LAYERS[name], alias
        assert alias in layers.__all__, alias
    model = Sequential([layers.Convolution2D(8, 3, padding="same", activation="relu"), layers.BatchNormalization(),
                        layers.MaxPooling2D(2), layers.GlobalAveragePooling2D(), Dense(10)], input_shape=(1, 28, 28))
    assert [type(layer).__name__ for layer in model] == ["Conv2D", "BatchNorm", "MaxPool2D", "GlobalAvgPool2D",
                                                         "Dense"]


def test_five_valid_convolutions_fail_at_build_with_one_sentence():
    layers = []
    for filters in (8, 16, 32, 64, 64):
        layers += [Conv2D(filters, 3, activation="relu"), MaxPool2D(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShapeWarning)
        with pytest.raises(ShapeError) as err:
            Sequential(layers + [Flatten(), Dense(10)], input_shape=(1, 28, 28))  # no data has flowed
    message = str(err.value)
    # 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5 -conv-> 3 -pool-> 1 -conv-> (1 - 3)/1 + 1 = -1
    assert message == ("layer 6 (Conv2D) gets 32x1x1: (1 + 2*0 - 3)/1 + 1 = -1 rows; use padding='same', "
                       "a smaller kernel or stride, or remove one pooling layer before it.")
    assert message.count(". ") == 0 and message.endswith(".")


def test_pooling_below_one_names_layer_and_fix():
    with pytest.raises(ShapeError, match=r"^layer 3 \(MaxPool2D\) gets 4x1x1: \(1 \+ 2\*0 - 2\)/2 \+ 1 = 0.5 -> 0 rows; "
                                         r"use padding='same' or remove one pooling layer.$"):
        Sequential([Conv2D(4, 2, strides=2), MaxPool2D(), MaxPool2D(), MaxPool2D()], input_shape=(1, 8, 8))


def test_dense_without_flatten():
    with pytest.raises(ShapeError, match=r"^layer 1 \(Dense\) needs a vector of features but gets 8x26x26; "
                                         r"add Flatten\(\) before it \(it would then get 5408 features\).$"):
        Sequential([Conv2D(8, 3), Dense(10)], input_shape=(1, 28, 28))


def test_channel_mismatch_and_channels_last_hint():
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2D\) was made for 3 input channels but gets 1x28x28"):
        Sequential([Conv2D(8, 3, in_channels=3)], input_shape=(1, 28, 28))
    with pytest.raises(ShapeError, match=r"did you mean \(1, 28, 28\)\?"):
        Sequential([Conv2D(8, 3), MaxPool2D()], input_shape=(28, 28, 1))


def test_a_dilated_kernel_too_big_names_its_span_and_dilation_rate():
    with pytest.raises(ShapeError, match=r"layer 0 \(Conv2D\) gets 1x8x8: \(8 \+ 2\*0 - 9\)/1 \+ 1 = 0 rows "
                                         r"\(kernel 3 dilated by 4 spans 9\); use padding='same', a "
                                         r"smaller kernel, stride or dilation_rate"):
        Sequential([Conv2D(4, 3, dilation_rate=4)], input_shape=(1, 8, 8))


def test_non_divisible_valid_layers_warn_how_much_is_dropped():
    with pytest.warns(ShapeWarning, match=r"layer 1 \(MaxPool2D\) gets 4x7x7 and never reaches the last 1 row"):
        Sequential([Conv2D(4, 3, padding="same"), MaxPool2D()], input_shape=(1, 7, 7))
    # 3x3 windows, stride 3: (8 - 3) % 3 = 2 rows and (7 - 3) % 3 = 1 column no window reaches (a
    # window narrower than its stride skips pixels by design and is not warned about: test_layers.py)
    with pytest.warns(ShapeWarning, match="never reaches the last 2 rows and the last 1 column"):
        Sequential([Conv2D(4, 3, strides=3)], input_shape=(1, 8, 7))


def test_residual_shapes_and_projection_hint():
    with pytest.raises(ShapeError, match=r"layer 1 \(Residual\) gets 8x16x16 and its block gives 16x8x8 but its "
                                         r"shortcut gives 8x16x16; add shortcut=\[Conv2D\(16, 1, strides=2\)\]"):
        Sequential([Conv2D(8, 3, padding="same"), Residual([Conv2D(16, 3, strides=2, padding="same")])],
                   input_shape=(3, 16, 16))
    model = Sequential([Conv2D(8, 3, padding="same"),
                        Residual([Conv2D(16, 3, strides=2, padding="same"), BatchNorm()],
                                 shortcut=[Conv2D(16, 1, strides=2, padding="same")], activation="relu")],
                       input_shape=(3, 16, 16))
    assert model.output_shape == (16, 8, 8)
    x = torch.randn(2, 3, 16, 16)
    res = model[1].eval()
    h = model[0](x)
    torch.testing.assert_close(res(h), torch.relu(res.block(h) + res.shortcut(h)))


def test_inner_residual_errors_are_named_by_path():
    with pytest.raises(ShapeError, match=r"^layer 1.block.1 \(Dense\) needs a vector"):
        Sequential([Conv2D(4, 3), Residual([Conv2D(4, 3, padding="same"), Dense(3)])], input_shape=(1, 8, 8))


def test_check_num_classes():
    model = lecture_004()
    check_num_classes(model, 10)
    with pytest.raises(ShapeError, match=r"^layer 8 \(Dense\) gives 10 outputs but the dataset has 3 classes; "
                                         r"make the last layer Dense\(3\)"):
        check_num_classes(model, 3)
    with pytest.raises(ShapeError, match="not one score per class; end the model with Flatten"):
        check_num_classes(Sequential([Conv2D(4, 3)], input_shape=(1, 8, 8)), 10)


def test_add_builds_at_once_and_unknown_objects_are_refused():
    model = Sequential(input_shape=(3, 32, 32))
    model.add(Conv2D(8, 5))
    assert model.built and model.output_shape == (8, 28, 28) and model[0].conv.in_channels == 3
    with pytest.raises(ConfigError, match="Sequential takes cnnlab layers"):
        model.add(torch.nn.ReLU())
    with pytest.raises(ConfigError, match="must come first"):
        model.add(Input((3, 32, 32)))


def every_layer_model():
    return Sequential([
        ZeroPadding2D((1, 2)), Conv2D(6, 3, strides=2, padding="same", activation="leaky_relu",
                                 kernel_regularizer="l2(1e-4)", dilation_rate=1),
        BatchNorm(momentum=0.9), LocalResponseNorm(3), MinPool2D(2, strides=1, padding="same"),
        Residual([Conv2D(6, 3, padding="same", kernel_initializer="he_normal"), Activation("gelu")], activation="relu"),
        AvgPool2D(3, strides=2, padding="same"), Conv2D(4, (1, 2), padding=((0, 1), (1, 0))), GlobalAvgPool2D(),
        Dropout(0.25), Dense(5, activation="swish", use_bias=False), Dense(3, kernel_regularizer={"l1": 1e-3}),
    ], input_shape=(2, 11, 9), name="every")


def test_config_round_trip_gives_identical_outputs():
    model = every_layer_model().eval()
    config = model.to_config()
    assert config["name"] == "every" and config["input_shape"] == [2, 11, 9]
    assert config["layers"][0] == {"ZeroPadding2D": {"padding": [1, 2]}}
    clone = Sequential.from_config(config).eval()
    assert clone.to_config() == config
    assert [layer.output_shape for layer in clone] == [layer.output_shape for layer in model]
    clone.load_state_dict(model.state_dict())
    x = torch.randn(4, 2, 11, 9)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


def test_from_config_accepts_all_layer_forms_and_names_the_bad_layer():
    model = Sequential.from_config({"input_shape": [1, 8, 8], "layers": [
        {"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"MaxPooling2D": None}, "Flatten", {"Dense": {"units": 2}}]})
    assert model.output_shape == (2,) and isinstance(model[1], MaxPool2D)
    with pytest.raises(ConfigError, match=r"layer 1 \(Conv2D\): Conv2D has no argument 'stride' \(did you mean strides\?\)"):
        Sequential.from_config({"layers": ["Flatten", {"Conv2D": {"filters": 2, "kernel_size": 1, "stride": 2}}]})
    with pytest.raises(ConfigError, match=r"unknown layer 'Conv2d' \(did you mean Conv2D\?\)"):
        Sequential.from_config({"layers": [{"Conv2d": {"filters": 2}}]})


def test_plain_module_state_dict_and_export():
    model = every_layer_model().eval()
    assert isinstance(model, torch.nn.Module) and list(model.state_dict())[:2] == ["1.conv.weight", "1.conv.bias"]
    fresh = every_layer_model().eval()
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 11, 9)
    torch.testing.assert_close(fresh(x), model(x))
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


def test_regularization_losses_sum_over_modules():
    model = every_layer_model()
    total = sum(m.regularization_loss() for m in model.modules() if hasattr(m, "regularization_loss"))
    expected = 1e-4 * model[1].conv.weight.pow(2).sum() + 1e-3 * model[11].linear.weight.abs().sum()
    torch.testing.assert_close(total, expected)


def test_every_public_name_resolves_in_a_fresh_interpreter():
    # cnnlab imports its API lazily; a fresh process shows a name the package only gets as a side
    # effect of another import (cnnlab.layers once imported anywhere)
    import subprocess
    import sys

    for name in ("layers", "Sequential", "train_run", "load_dataset"):  # each one first
        code = f"import cnnlab; cnnlab.{name}; [getattr(cnnlab, n) for n in cnnlab.__all__]"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_keras_input_shape_on_the_first_layer():
    # lecture 000: layers.Conv2D(32, (3,3), padding='same', activation='relu', input_shape=(28, 28, 1))
    model = Sequential([Conv2D(32, (3, 3), padding="same", activation="relu", input_shape=(1, 28, 28)),
                        MaxPool2D(), Flatten(), Dense(10)])
    assert model.input_shape == (1, 28, 28) and model.output_shape == (10,)
    assert "input_shape" not in model.to_config()["layers"][0]["Conv2D"]
    assert Sequential.from_config(model.to_config()).to_config() == model.to_config()
    keras = Sequential()
    keras.add(Dense(2, input_shape=(4,)))  # the Keras guide's Sequential example
    assert keras.output_shape == (2,)
    with pytest.warns(ShapeWarning, match=r"did you mean \(1, 28, 28\)\?"):  # channels last, as Keras writes it
        Sequential([Conv2D(32, 3, padding="same", input_shape=(28, 28, 1))])
    with pytest.raises(ConfigError, match=r"input_shape of layer 1 \(Dense\) is read only on the first layer"):
        Sequential([Flatten(), Dense(2, input_shape=(4,))])
    with pytest.raises(ConfigError, match=r"input_shape of layer 0 \(Dense\), \[4\], disagrees with input_shape=\[5\]"):
        Sequential([Dense(2, input_shape=(4,))], input_shape=(5,))


def test_a_missing_argument_in_a_config_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^layer 0 \(Dense\): Dense needs units"):
        Sequential.from_config({"input_shape": [4], "layers": [{"Dense": {}}]})


def test_building_again_at_the_same_shape_warns_once():
    with pytest.warns(ShapeWarning) as caught:
        model = Sequential([Conv2D(4, 3, padding="same")], input_shape=(28, 28, 1))
        model.build((28, 28, 1))  # summarize() does this with a model load_model_file built
    assert len(caught) == 1


def test_a_layer_pickled_before_input_shape_was_kept_joins_a_new_model():
    layer = Conv2D(4, 3)
    del layer.given_input_shape  # as torch.load gives back a layer saved by an older cnnlab
    model = Sequential([layer, Flatten(), Dense(5)], input_shape=(1, 8, 8))
    assert model.output_shape == (5,)
