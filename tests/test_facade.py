"""Keras's workflow on a cnnlab Sequential: compile / fit / evaluate / predict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import Conv2D, Dense, Flatten, MaxPool2D


@pytest.fixture(scope="module")
def data():
    d = cnnlab.load_dataset("fashion-mnist-mini")
    return d.x_train[:1200], d.y_train[:1200], d.x_test[:300], d.y_test[:300]


def small_model() -> cnnlab.Sequential:
    torch.manual_seed(0)
    return cnnlab.Sequential([
        Conv2D(8, 3, padding="same", activation="relu"), MaxPool2D(2),
        Flatten(), Dense(32, activation="relu"), Dense(10),
    ], input_shape=(1, 28, 28))


def test_fit_returns_a_keras_history_and_learns(data):
    x, y, x_test, y_test = data
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0)
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["val_accuracy"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(x_test, y_test)
    with torch.no_grad():
        direct = float(torch.nn.functional.cross_entropy(model(x_test.float() / 255), y_test))
    assert acc > 0.5 and loss == pytest.approx(direct, rel=1e-4)


def test_predict_gives_probabilities_in_numpy(data):
    x, y, x_test, _ = data
    model = small_model()
    model.compile()
    probs = model.predict(x_test[:7])
    assert isinstance(probs, np.ndarray) and probs.shape == (7, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert model.training  # predict restores the mode it found


def test_one_hot_labels_and_numpy_inputs_as_the_lecture_writes_them(data):
    x, y, _, _ = data
    model = small_model()
    model.compile(optimizer="sgd", loss="categorical_crossentropy", lr=0.05)
    x_np = x.numpy().astype("float32") / 255.0  # the lecture's astype("float32") / 255
    one_hot = np.eye(10, dtype="float32")[y.numpy()]
    history = model.fit(x_np, one_hot, epochs=2, batch_size=128, verbose=0)
    assert len(history.history["loss"]) == 2 and history.history["accuracy"][-1] > 0.3


def test_a_second_fit_trains_that_many_more_epochs_as_keras_does(data):
    """Keras: each fit() trains epochs - initial_epoch epochs (initial_epoch defaults to 0) and
    returns that call's History; cnnlab numbers the epochs on across calls."""
    x, y, _, _ = data
    model = small_model()
    model.compile()
    first = model.fit(x, y, epochs=1, verbose=0)
    second = model.fit(x, y, epochs=2, verbose=0)
    assert first.epoch == [1] and second.epoch == [2, 3] and len(second.history["loss"]) == 2
    third = model.fit(x, y, epochs=5, initial_epoch=4, verbose=0)  # Keras' way to continue a count
    assert third.epoch == [4]
    assert model.fit(x, y, epochs=3, initial_epoch=3, verbose=0).epoch == []  # nothing left to train
    with pytest.raises(ConfigError, match="initial_epoch <= epochs"):
        model.fit(x, y, epochs=1, initial_epoch=2, verbose=0)


def lecture_model(final_activation) -> cnnlab.Sequential:
    """small_model's layers and initial weights, its last Dense ending as the lectures end it (softmax) or not."""
    torch.manual_seed(0)
    return cnnlab.Sequential([
        Conv2D(8, 3, padding="same", activation="relu"), MaxPool2D(2),
        Flatten(), Dense(32, activation="relu"), Dense(10, activation=final_activation),
    ], input_shape=(1, 28, 28))


def test_a_model_ending_in_softmax_trains_as_keras_trains_it(data):
    """The lectures end in Dense(10, activation='softmax') with Keras' from_logits=False loss: the
    loss is the log of those probabilities, so the model trains exactly as the same model with
    logits does (same start, same steps), where a second softmax would squash its outputs."""
    x, y, x_test, y_test = data
    runs = {}
    for activation in ("softmax", None):
        model = lecture_model(activation)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(x[:640], y[:640], epochs=1, batch_size=64, verbose=0)
        runs[activation] = (model, history.history["loss"][0], model.evaluate(x_test, y_test), model.predict(x_test))
    (soft, soft_loss, soft_eval, soft_probs), (_, logit_loss, logit_eval, logit_probs) = runs["softmax"], runs[None]
    assert soft_loss == pytest.approx(logit_loss, rel=1e-4)
    assert soft_eval == pytest.approx(logit_eval, rel=1e-4)
    np.testing.assert_allclose(soft_probs, logit_probs, atol=1e-4)
    soft.eval()
    with torch.no_grad():  # predict gives the model's own probabilities, not a softmax of them
        np.testing.assert_allclose(soft_probs, soft(x_test.float() / 255).numpy(), atol=1e-6)
    # a softmax of probabilities (values in [0, 1]) can never exceed e / (e + 9) = 0.232
    assert soft_probs.max() > math.e / (math.e + 9)


def test_mistakes_get_one_clear_sentence(data):
    x, y, _, _ = data
    model = small_model()
    with pytest.raises(ConfigError, match=r"call model.compile"):
        model.fit(x, y)
    with pytest.raises(ConfigError, match="mean_squared_error"):
        model.compile(loss="mean_squared_error")
    model.compile()
    with pytest.raises(ConfigError, match="1200 images but 10 labels"):
        model.fit(x, y[:10], verbose=0)
    with pytest.raises(ConfigError, match="validation_split"):
        model.fit(x, y, validation_split=1.5, verbose=0)


def test_images_that_do_not_fit_the_model_name_the_fix(data):
    """Keras' lectures keep images channels-last, (N, 28, 28, 1), or as (N, 28, 28): one sentence with the fix."""
    x, y, _, _ = data
    model = small_model()
    model.compile()
    nhwc = x.numpy().transpose(0, 2, 3, 1)
    with pytest.raises(ShapeError, match=r"fit got images of shape \(1200, 28, 28, 1\) but the model takes "
                                         r"\(N, 1, 28, 28\).*x.transpose\(0, 3, 1, 2\)"):
        model.fit(nhwc, y, verbose=0)
    with pytest.raises(ShapeError, match=r"evaluate got images of shape \(1200, 28, 28\).*x\[:, None\]"):
        model.evaluate(x[:, 0], y)
    with pytest.raises(ShapeError, match=r"predict got images of shape \(1200, 1, 14, 14\).*resize or reshape"):
        model.predict(x[:, :, ::2, ::2])
    with pytest.raises(ShapeError, match="fit's validation_data got images"):
        model.fit(x, y, validation_data=(nhwc, y), verbose=0)
    model.fit(nhwc.transpose(0, 3, 1, 2), y, verbose=0)  # the fix it names works


def test_compiling_adds_no_layer(data):
    model = small_model()
    before = [name for name, _ in model.named_children()]
    model.compile()
    assert [name for name, _ in model.named_children()] == before
    assert "_loss_fn" not in dict(model.named_modules())


def test_save_and_load_model_and_predict_on_image_files(data, tmp_path):
    """model.save(folder) -> cnnlab.load_model gives the same predictions, and the folder serves
    `cnnlab predict` as a run directory does (the same probabilities for the same picture)."""
    from PIL import Image

    x, y, x_test, _ = data
    model = lecture_model("softmax")
    model.compile()
    model.fit(x[:256], y[:256], epochs=1, verbose=0)
    classes = cnnlab.load_dataset("fashion-mnist-mini").classes
    folder = model.save(tmp_path / "my_cnn", classes=classes)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    loaded = cnnlab.load_model(folder)
    np.testing.assert_allclose(loaded.predict(x_test[:20]), model.predict(x_test[:20]), atol=1e-6)
    image = tmp_path / "test0.png"
    Image.fromarray(x_test[0, 0].numpy()).save(image)
    ((_, top),) = cnnlab.predict_images(folder, [image], top_k=10)
    expect = model.predict(x_test[:1])[0]
    assert [name for name, _ in top][0] == classes[int(expect.argmax())]
    assert dict(top) == pytest.approx({classes[i]: float(p) for i, p in enumerate(expect)}, abs=1e-5)
    # evaluate takes the folder too, given a dataset (it has no config.json naming one)
    with pytest.raises(ConfigError, match=r"names no dataset \(it has no config.json: a model.save folder"):
        cnnlab.evaluate_run(folder)
    metrics = cnnlab.evaluate_run(folder, data="fashion-mnist-mini")
    assert metrics["n_test"] == 1000 and (folder / "evaluate" / "fashion-mnist-mini" / "metrics.json").is_file()


def test_a_loaded_model_gives_uint8_images_its_normalisation(data, tmp_path):
    """A model trained on standardised images and saved with their mean and std predicts, evaluates
    and trains on uint8 images after loading as it did on the standardised ones; floats stay as given."""
    x, y, x_test, y_test = data
    mean, std = [0.29], [0.35]
    standard = lambda u: (u.float() / 255 - mean[0]) / std[0]  # noqa: E731 (as a CLI run feeds its model)
    model = small_model()
    model.compile()
    model.fit(standard(x[:256]), y[:256], epochs=1, verbose=0)
    loaded = cnnlab.load_model(model.save(tmp_path / "m", mean=mean, std=std))
    assert (loaded.input_mean, loaded.input_std) == ((0.29,), (0.35,))
    expect = model.predict(standard(x_test))
    np.testing.assert_allclose(loaded.predict(x_test), expect, atol=1e-6)
    np.testing.assert_allclose(loaded.predict(standard(x_test)), expect, atol=1e-6)  # floats: as given
    loaded.compile()
    assert loaded.evaluate(x_test, y_test) == pytest.approx(model.evaluate(standard(x_test), y_test), abs=1e-6)
    # saved again without mean and std, it keeps its own
    again = cnnlab.load_model(loaded.save(tmp_path / "again"))
    assert (again.input_mean, again.input_std) == ((0.29,), (0.35,))
    # fit: uint8 images train it as the standardised floats do
    again.compile()
    again.fit(x[:128], y[:128], epochs=1, verbose=0)
    loaded.fit(standard(x[:128]), y[:128], epochs=1, verbose=0)
    for a, b in zip(again.parameters(), loaded.parameters()):
        torch.testing.assert_close(a, b)
    # a model trained on uint8 images (mean 0, std 1) round-trips exactly as before
    plain = small_model()
    back = cnnlab.load_model(plain.save(tmp_path / "plain"))
    np.testing.assert_allclose(back.predict(x_test), plain.predict(x_test), atol=1e-6)


def test_save_refuses_what_it_cannot_write(tmp_path):
    unbuilt = cnnlab.Sequential([Flatten(), Dense(10)])
    with pytest.raises(ConfigError, match="no input shape yet"):
        unbuilt.save(tmp_path / "m")
    model = small_model()
    with pytest.raises(ConfigError, match="3 class names for a model with 10 outputs"):
        model.save(tmp_path / "m", classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"save needs std as one positive number per input channel \(1\)"):
        model.save(tmp_path / "m", mean=[0.5], std=[0.0])
    # values that fail only when converted: refused before the weights are written
    for kw, words in (({"mean": ["a"]}, r"mean as one number per input channel \(1\), got \['a'\]"),
                      ({"mean": 0.5}, r"mean as one number per input channel \(1\), got 0.5"),
                      ({"std": [float("nan")]}, r"std as one positive number"),
                      ({"classes": 10}, r"classes as a list of 10 names, got 10")):
        with pytest.raises(ConfigError, match=rf"save needs {words}"):
            model.save(tmp_path / "m", **kw)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        model.save(tmp_path / "file")
    assert not (tmp_path / "m").exists()  # nothing half written


def test_a_model_without_input_shape_trains_every_layer(data):
    x, y, _, _ = data
    torch.manual_seed(0)
    model = cnnlab.Sequential([Conv2D(8, 3, activation="relu", in_channels=1), MaxPool2D(2),
                               Flatten(), Dense(10)])  # built by the first batch, not before
    model.compile(optimizer="adam")
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert model.built and model.input_shape == (1, 28, 28)
    in_optimizer = {id(p) for g in model._optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}
    dense = model[3].linear.weight.detach().clone()
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert not torch.equal(dense, model[3].linear.weight)  # the Dense layer learns too
    unbuilt = cnnlab.Sequential([Flatten(), Dense(10)])
    assert unbuilt.predict(x[:3].numpy()).shape == (3, 10)  # predict builds it as well
    with pytest.raises(ConfigError, match="made before the model had weights"):
        cnnlab.Sequential([Conv2D(8, 3, in_channels=1), Flatten(), Dense(10)]).compile(
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))


def test_labels_shaped_n_by_1_are_class_indices(data):
    x, y, x_test, y_test = data  # keras.datasets.cifar10 gives labels as (N, 1)
    flat, column = small_model(), small_model()
    for model, labels in ((flat, y[:256]), (column, y[:256, None])):
        model.compile()
        model.fit(x[:256], labels.numpy(), epochs=1, batch_size=64, verbose=0, shuffle=False)
    assert column.evaluate(x_test, y_test[:, None].numpy()) == flat.evaluate(x_test, y_test)


def test_outputs_that_cannot_meet_the_labels_are_named(data):
    x, y, _, _ = data
    five = cnnlab.Sequential([Flatten(), Dense(5)], input_shape=(1, 28, 28))
    five.compile()
    with pytest.raises(ShapeError, match=r"layer 1 \(Dense\) gives 5 outputs but the dataset has "
                                         r"10 classes; make the last layer Dense\(10\)"):
        five.fit(x[:64], y[:64], verbose=0)
    with pytest.raises(ShapeError, match="gives 5 outputs"):
        five.evaluate(x[:64], y[:64])
    maps = cnnlab.Sequential([Conv2D(10, 3)], input_shape=(1, 28, 28))
    maps.compile()
    with pytest.raises(ShapeError, match=r"gives 10x26x26, not one score per class; end the model "
                                         r"with Flatten\(\) and Dense\(10\)"):
        maps.fit(x[:64], y[:64], verbose=0)
    with pytest.raises(ConfigError, match="got label -1"):
        five.fit(x[:2], np.array([0, -1]), verbose=0)


def test_a_last_batch_of_one_image_trains_with_batchnorm(data):
    from cnnlab.layers import Activation, BatchNorm

    x, y, _, _ = data
    model = cnnlab.Sequential([Flatten(), Dense(16), BatchNorm(), Activation("relu"), Dense(10)],
                              input_shape=(1, 28, 28))
    model.compile()
    history = model.fit(x[:65], y[:65], epochs=2, batch_size=64, verbose=0)  # 64 + 1 images
    assert all(math.isfinite(v) for v in history.history["loss"])


def test_a_channels_last_input_shape_is_warned_about_even_when_it_builds():
    from cnnlab.layers.shapes import ShapeWarning

    with pytest.warns(ShapeWarning, match=r"input_shape \(28, 28, 1\) reads as 28 channels of 28x1 "
                                          r"images; .*did you mean \(1, 28, 28\)\?"):
        cnnlab.Sequential([Conv2D(16, 3, padding="same"), Flatten(), Dense(10)],
                          input_shape=(28, 28, 1))


def test_a_fit_after_one_that_failed_mid_epoch_trains_a_whole_epoch(data):
    """A fit() that raised in its last batch (a callback, Ctrl-C, a NaN) left that epoch's steps
    counted: the next fit() must still train every batch and report only its own loss."""
    from cnnlab.train.callbacks import Callback

    class FailInLastBatch(Callback):
        def on_batch_end(self, trainer, logs):
            if logs["batch"] == logs["batches"]:
                raise RuntimeError("a callback failed")

    class Record(Callback):
        def __init__(self):
            self.seen = []

        def on_batch_end(self, trainer, logs):
            self.seen.append((logs["batch"], logs["loss"]))

    x, y, _, _ = data
    model = small_model()
    model.compile()
    with pytest.raises(RuntimeError, match="a callback failed"):
        model.fit(x[:256], y[:256], batch_size=64, callbacks=[FailInLastBatch()], verbose=0)
    before = [p.detach().clone() for p in model.parameters()]
    record = Record()
    history = model.fit(x[:256], y[:256], batch_size=64, callbacks=[record], verbose=0)
    assert [batch for batch, _ in record.seen] == [1, 2, 3, 4] and history.epoch == [1]
    assert history.history["loss"] == [pytest.approx(record.seen[-1][1])]  # this fit's batches only
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_evaluate_and_predict_take_kerass_verbose_and_return_dict(data):
    x, y, x_test, y_test = data
    model = small_model()
    model.compile()
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    assert model.evaluate(x_test, y_test, return_dict=True) == {"loss": loss, "accuracy": acc}
    assert model.predict(x_test[:5], verbose=0).shape == (5, 10)
    # Keras' options cnnlab leaves out, and misspellings, are one sentence each
    with pytest.raises(ConfigError, match=r"model.evaluate\(\) does not take Keras' sample_weight="):
        model.evaluate(x_test, y_test, sample_weight=np.ones(len(y_test)))
    with pytest.raises(ConfigError, match=r"model.predict\(\) does not take Keras' steps="):
        model.predict(x_test, steps=2)
    with pytest.raises(ConfigError, match=r"model.fit\(\) does not take Keras' class_weight="):
        model.fit(x, y, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ConfigError, match=r"model.evaluate\(\) has no option batchsize=: did you mean batch_size\?"):
        model.evaluate(x_test, y_test, batchsize=64)


def test_the_metric_is_named_as_compile_was_given_it(data):
    """Keras logs metrics=["acc"] as acc and val_acc; one string is one metric; monitors take those names."""
    from cnnlab.train.callbacks import EarlyStopping

    x, y, x_test, y_test = data
    model = small_model()
    model.compile(metrics=["acc"])
    history = model.fit(x[:256], y[:256], epochs=2, validation_split=0.25, verbose=0,
                        callbacks=[EarlyStopping(monitor="val_acc", patience=5)])
    assert list(history.history)[:4] == ["loss", "acc", "val_loss", "val_acc"]
    assert model.evaluate(x_test, y_test, return_dict=True).keys() == {"loss", "acc"}
    model.compile(metrics="accuracy")  # a string, not a list of its characters
    assert "accuracy" in model.fit(x[:64], y[:64], verbose=0).history
    with pytest.raises(ConfigError, match=r"cannot monitor 'val_los': did you mean val_loss\?"):
        EarlyStopping(monitor="val_los")


def test_kerass_none_defaults_and_bad_batch_sizes(data):
    x, y, x_test, y_test = data
    model = small_model()
    model.compile(metrics=None)
    history = model.fit(x[:64], y[:64], batch_size=None, callbacks=None, verbose=0)
    assert history.history["accuracy"]  # accuracy is tracked all the same
    assert model.evaluate(x_test, y_test, batch_size=None) == pytest.approx(model.evaluate(x_test, y_test, 1000))
    assert model.predict(x_test[:40], batch_size=None).shape == (40, 10)
    for bad in (0, -5, 64.0, "64", True):
        with pytest.raises(ConfigError, match=rf"fit got batch_size={bad!r}: give a positive whole number"):
            model.fit(x[:64], y[:64], batch_size=bad, verbose=0)
    with pytest.raises(ConfigError, match="predict got batch_size=0"):
        model.predict(x_test, batch_size=0)
    with pytest.raises(ConfigError, match="evaluate got batch_size=-1"):
        model.evaluate(x_test, y_test, batch_size=-1)


def test_validation_split_holds_out_as_keras_does_and_refuses_an_empty_part(data):
    """Keras keeps floor(N * (1 - validation_split)) images for training: 10 at 0.25 keeps 7, holds out 3."""
    from cnnlab.train.callbacks import Callback

    class Sizes(Callback):
        def on_train_begin(self, trainer, logs):
            self.sizes = len(trainer.train_batches.x), len(trainer.val_batches.x)

    x, y, _, _ = data
    model = small_model()
    model.compile()
    sizes = Sizes()
    model.fit(x[:10], y[:10], validation_split=0.25, callbacks=[sizes], verbose=0)
    assert sizes.sizes == (7, 3)
    model.fit(x[:10], y[:10], validation_split=0.0001, callbacks=[sizes], verbose=0)
    assert sizes.sizes == (9, 1)  # floor(9.999): one image held out, where rounding held out none
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=r"validation_split=1e-20 of 10 images leaves no validation images"):
        model.fit(x[:10], y[:10], validation_split=1e-20, verbose=0)
    with pytest.raises(ConfigError, match=r"validation_split=0.95 of 10 images leaves no training images"):
        model.fit(x[:10], y[:10], validation_split=0.95, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused before a step


def test_no_images_and_bad_validation_data_are_one_sentence(data):
    x, y, _, _ = data
    model = small_model()
    model.compile()
    with pytest.raises(ConfigError, match="fit got no images"):
        model.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ConfigError, match="evaluate got no images"):
        model.evaluate(x[:0], y[:0])
    assert model.predict(x[:0]).shape == (0, 10)  # Keras' empty answer
    with pytest.raises(ConfigError, match=r"validation_data has a third item, Keras' sample weights"):
        model.fit(x, y, validation_data=(x[:50], y[:50], np.ones(50)), verbose=0)
    with pytest.raises(ConfigError, match=r"validation_data must be a pair \(x_val, y_val\), got 1 item"):
        model.fit(x, y, validation_data=(x[:50],), verbose=0)
    with pytest.raises(ConfigError, match="fit's validation_data got 50 images but 5 labels"):
        model.fit(x, y, validation_data=(x[:50], y[:5]), verbose=0)
    with pytest.raises(ConfigError, match="fit's validation_data got no images"):
        model.fit(x, y, validation_data=(x[:0], y[:0]), verbose=0)


@pytest.mark.parametrize("name", ["Adam", "SGD", "RMSprop"])
def test_kerass_optimizer_class_names_work(data, name):
    x, y, _, _ = data
    model = small_model()
    model.compile(optimizer=name)
    assert type(model._optimizer).__name__ == name
    model.fit(x[:64], y[:64], verbose=0)


def test_a_model_taking_vectors_saves_and_loads(tmp_path):
    model = cnnlab.Sequential([Dense(8, activation="relu"), Dense(3)], input_shape=(12,))
    model.compile("adam")
    x, y = np.random.default_rng(0).random((16, 12), dtype=np.float32), np.arange(16) % 3
    model.fit(x, y, epochs=1, verbose=0)
    loaded = cnnlab.load_model(model.save(tmp_path / "vec"))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_save_uses_the_zoo_spec_where_a_layer_list_cannot_rebuild_the_model(tmp_path):
    from cnnlab.layers.base import Layer

    net = cnnlab.create_model("fastnet-large", in_channels=1, input_size=(28, 28))  # holds a private _Scale
    loaded = cnnlab.load_model(net.save(tmp_path / "fast"))
    x = torch.rand(2, 1, 28, 28)
    net.eval()
    assert torch.equal(loaded(x), net(x))

    class Doubler(Layer):  # a user's own layer, not registered: no model.json could name it
        def build(self, input_shape):
            return super().build(input_shape)

        def forward(self, x):
            return 2 * x

    custom = cnnlab.Sequential([Flatten(), Doubler(), Dense(3)], input_shape=(1, 4, 4))
    with pytest.raises(ConfigError, match="cannot describe this model as a layer list"):
        custom.save(tmp_path / "custom")
    assert not (tmp_path / "custom").exists()


def test_compile_with_only_torch_compile_options_is_torchs(tmp_path):
    net = cnnlab.create_model("lenet5", in_channels=1, input_size=32)
    net.compile(mode="default")  # torch.compile's option: nn.Module.compile, which the facade hides
    assert net._compiled_call_impl is not None
    with pytest.raises(ConfigError, match="has no option modes="):
        net.compile(modes="default")


def test_compile_takes_kerass_learning_rate():
    model = cnnlab.Sequential([Flatten(), Dense(3)], input_shape=(1, 4, 4))
    model.compile(optimizer="SGD", learning_rate=0.05)
    x, y = np.zeros((4, 1, 4, 4), np.float32), np.arange(4) % 3
    model.fit(x, y, epochs=1, verbose=0)
    assert model._optimizer.param_groups[0]["lr"] == 0.05
