"""The Keras workflow on a model: compile / fit / evaluate / predict, over cnnlab's Trainer.

Mixed into Sequential and the zoo's models, so the lecture's code reads the same in cnnlab:

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=5, batch_size=128, validation_split=0.1)
    history.history["val_accuracy"]

Inputs are (N, C, H, W) arrays or tensors: uint8 images are scaled to [0, 1] (the lecture's
`astype("float32") / 255`), floats are used as given. A model loaded from a run or a save folder
(cnnlab.load_model) carries the normalisation it was trained with, input_mean and input_std, and
gives uint8 images that too, ((x / 255) - mean) / std, so it predicts as the run did. Labels are
class indices (N,) or one-hot (N, K) as `categorical_crossentropy` expects.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.atomic import make_folder
from cnnlab.errors import ConfigError
from cnnlab.facade_inputs import (ArrayBatches, as_tensor, batch_size_of, check_images, check_labels, check_pair,
                                  per_channel, refuse_options, split_tail)
from cnnlab.outputs import as_logits, ends_in_softmax

# Keras loss names -> what the model's output is compared with: torch's CrossEntropyLoss, which takes
# indices or probabilities as targets. A model ending in softmax (from_logits=False in Keras) has its
# probabilities handed to it as log-probabilities by the Trainer (cnnlab/outputs.py).
_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "crossentropy")
_METRICS = ("accuracy", "acc")  # Keras logs the metric under the name it was given: acc, val_acc
# nn.Module.compile's (torch.compile's) options: given alone, compile() passes them on to torch's
_TORCH_COMPILE_OPTIONS = ("mode", "fullgraph", "dynamic", "backend", "options", "disable")


class KerasFacade:
    """compile / fit / evaluate / predict for an nn.Module, Keras-style."""

    def compile(self, optimizer: str | torch.optim.Optimizer = "adam", loss: str = "sparse_categorical_crossentropy",
                metrics: Sequence[str] | str | None = ("accuracy",), *, lr: float = 1e-3, label_smoothing: float = 0.0,
                device: str = "auto", learning_rate: float | None = None, **keras_only) -> None:
        """Choose the optimizer and loss, as Keras's model.compile.

        Args:
            optimizer: sgd, adam, adamw, rmsprop, adagrad, muon, in any case (Keras' "Adam" too; muon
                trains the filters at its lr 0.24, the rest by SGD at lr), or a torch optimizer over
                self.parameters().
            loss: sparse_categorical_crossentropy (labels are indices) or categorical_crossentropy (one-hot).
            metrics: accuracy is always tracked; ["acc"] names it acc and val_acc in the history, as Keras does.
            lr: learning rate when optimizer is a name (learning_rate=, Keras' optimizers' name for it, too).
            label_smoothing: as Keras's CategoricalCrossentropy(label_smoothing=...).
            device: auto (cuda, then mps, then cpu), cpu, cuda or mps.

        Given only torch.compile's options (mode=, fullgraph=, dynamic=, backend=, options=), it is
        torch's nn.Module.compile instead, which this method would otherwise hide.
        """
        from cnnlab.train.config import OPTIMIZERS, check_choice
        from cnnlab.train.reproduce import pick_device

        if keras_only and set(keras_only) <= set(_TORCH_COMPILE_OPTIONS):
            # model.compile(mode="max-autotune"): torch's nn.Module.compile, which this method hides
            return nn.Module.compile(self, **keras_only)
        refuse_options(KerasFacade.compile, keras_only)
        lr = lr if learning_rate is None else learning_rate
        check_choice("loss", loss, _LOSSES)
        metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])  # "accuracy": one name
        for m in metrics:
            check_choice("metric", m, _METRICS)
        unbuilt = getattr(self, "built", True) is False  # a Sequential without input_shape
        if unbuilt and isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError("this optimizer was made before the model had weights, so it would "
                              "leave out those the first batch creates; give the Sequential "
                              "input_shape=(C, H, W), or pass the optimizer's name")
        if not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer.lower() if isinstance(optimizer, str) else optimizer  # Keras' "Adam", "SGD"
            check_choice("optimizer", optimizer, OPTIMIZERS)
        self._device = pick_device(device)
        self.to(self._device)
        # a named optimizer is made once the model has all its weights: here, or in the first fit
        # of a model built from its data (an optimizer made now would miss the later weights)
        self._optimizer_spec = (optimizer, lr)
        self._optimizer = None if unbuilt else self._make_optimizer()
        # object.__setattr__: a loss assigned as an attribute would become a child layer of the model
        object.__setattr__(self, "_loss_fn", nn.CrossEntropyLoss(label_smoothing=label_smoothing))
        self._metric = metrics[0] if metrics else "accuracy"
        self._trainer = None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        from cnnlab.train.optim import make_optimizer

        optimizer, lr = self._optimizer_spec
        return optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(optimizer, self, lr)

    def _need_compile(self, what: str, x: torch.Tensor) -> None:
        """ConfigError unless compiled; a model with no input shape yet is built from images x's,
        and its optimizer made."""
        if getattr(self, "_optimizer_spec", None) is None:
            raise ConfigError(f"call model.compile(optimizer, loss) before model.{what}()")
        if getattr(self, "built", True) is False:
            self.build(tuple(x.shape[1:]))
            self.to(self._device)
        if self._optimizer is None and getattr(self, "built", True):
            self._optimizer = self._make_optimizer()

    def _validation(self, validation_data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """fit's validation_data as checked tensors (x_val, y_val)."""
        n = len(validation_data) if isinstance(validation_data, (tuple, list)) else None
        if n == 3:
            raise ConfigError("fit's validation_data has a third item, Keras' sample weights, which cnnlab "
                              "does not take: pass (x_val, y_val)")
        if n != 2:
            got = type(validation_data).__name__ if n is None else f"{n} item{'s' if n != 1 else ''}"
            raise ConfigError(f"fit's validation_data must be a pair (x_val, y_val), got {got}")
        x_val, y_val = as_tensor(validation_data[0], "x", self), as_tensor(validation_data[1], "y")
        check_pair(x_val, y_val, "fit's validation_data")
        check_images(self, x_val, "fit's validation_data")
        check_labels(self, y_val, "fit's validation_data")
        return x_val, y_val

    def fit(self, x, y, epochs: int = 1, batch_size: int | None = None, validation_data: tuple | None = None,
            validation_split: float = 0.0, verbose: int | str = "auto", callbacks: Sequence[Any] | None = None,
            shuffle: bool = True, seed: int = 0, initial_epoch: int = 0, **keras_only):
        """Train as Keras's model.fit; returns a History of this call's epochs, whose .history has
        loss, accuracy, val_* lists (acc, val_acc after compile(metrics=["acc"])).

        Args:
            x, y: images (N, C, H, W) and labels; see the module docstring for accepted types.
            epochs: as in Keras, the epoch to train up to, counted from initial_epoch: each call
                trains epochs - initial_epoch more epochs (a second fit(epochs=2) trains 2 more),
                with the same optimizer state. Epochs are numbered on across calls; each call
                starts a whole epoch, even after a call that failed part-way through one.
            batch_size: images per step (None: Keras' 32).
            validation_data: (x_val, y_val), or None.
            validation_split: the last fraction of x/y held out for validation, floor(N * (1 - fraction))
                images kept for training (Keras takes the tail, unshuffled).
            verbose: "auto" or 1 shows a progress bar and a line per epoch, 0 nothing.
            callbacks: extra trainer callbacks (cnnlab.train.callbacks.EarlyStopping, ...).
            shuffle: reshuffle the training set each epoch.
            seed: the data order.
            initial_epoch: as in Keras, the epoch this call counts from (0 <= initial_epoch <= epochs).
        """
        from cnnlab.console import Progress
        from cnnlab.train.engine import History, Trainer

        refuse_options(KerasFacade.fit, keras_only)
        batch_size = batch_size_of(batch_size, "fit")
        if not 0 <= initial_epoch <= epochs:
            raise ConfigError(f"fit needs 0 <= initial_epoch <= epochs, got initial_epoch={initial_epoch} and "
                              f"epochs={epochs}: epochs is the epoch to train up to, as in Keras")
        x, y = as_tensor(x, "x", self), as_tensor(y, "y")
        check_pair(x, y, "fit")
        self._need_compile("fit", x)
        check_images(self, x, "fit")
        check_labels(self, y, "fit")
        if validation_data is not None:
            validation_data = self._validation(validation_data)
        elif validation_split:
            x, y, validation_data = split_tail(x, y, validation_split)
        train_b = ArrayBatches(x, y, batch_size, shuffle, seed, self._device)
        val_b = None if validation_data is None else ArrayBatches(*validation_data, 1024, False, seed, self._device)
        progress = Progress(epochs) if verbose else None
        callbacks = [*(callbacks or ()), *([progress] if progress is not None else [])]
        if self._trainer is None:
            self._trainer = Trainer(self, self._loss_fn, self._optimizer, train_batches=train_b, val_batches=val_b,
                                    callbacks=callbacks, device=self._device)
        else:  # a further fit() continues: same optimizer state, new data and callbacks, a whole epoch
            self._trainer.train_batches, self._trainer.val_batches = train_b, val_b
            self._trainer.callbacks = callbacks
            self._trainer.restart_epoch()  # drop the steps a failed fit() left counted
        done = self._trainer.epoch
        with progress if progress is not None else contextlib.nullcontext():  # clears a bar an error leaves
            self._trainer.fit(done + epochs - initial_epoch)
        history = History(self._trainer.history.rows[done:])
        if self._metric != "accuracy":  # the keys Keras gives: acc, val_acc
            history._KERAS = {k.replace("accuracy", self._metric): col for k, col in History._KERAS.items()}
        return history

    def evaluate(self, x, y, batch_size: int | None = None, verbose: int | str = "auto", return_dict: bool = False,
                 **keras_only) -> tuple[float, float] | dict[str, float]:
        """(loss, accuracy) on (x, y), as Keras's model.evaluate with metrics=['accuracy'];
        with return_dict, {"loss": ..., "accuracy": ...} (the metric named as compile() was given it).
        verbose is taken for Keras' sake: evaluate prints nothing."""
        from cnnlab.train.engine import Trainer

        refuse_options(KerasFacade.evaluate, keras_only)
        batch_size = batch_size_of(batch_size, "evaluate")
        x, y = as_tensor(x, "x", self), as_tensor(y, "y")
        check_pair(x, y, "evaluate")
        self._need_compile("evaluate", x)
        check_images(self, x, "evaluate")
        check_labels(self, y, "evaluate")
        batches = ArrayBatches(x, y, batch_size, False, 0, self._device)
        trainer = self._trainer or Trainer(self, self._loss_fn, self._optimizer, train_batches=batches,
                                           device=self._device)
        loss, accuracy = trainer.evaluate(batches)
        return {"loss": loss, self._metric: accuracy} if return_dict else (loss, accuracy)

    def save(self, path, classes: Sequence[str] | None = None, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None):
        """Write the model to a folder, as Keras's model.save writes a .keras file: model.json (the
        layers, class names, input shape and input normalisation) and model.safetensors (the
        weights). `cnnlab.load_model(path)` reads it back; `cnnlab predict PATH image.png` and
        `cnnlab inspect` take the folder as they take a run directory.

        Args:
            path: the folder (created if needed; its model.json and model.safetensors are replaced).
            classes: class names in label order (default "0", "1", ...).
            mean, std: per channel, the normalisation of x / 255 the model was trained with: the
                default is the one a loaded model carries (input_mean, input_std), else 0 and 1,
                what fit() does with uint8 images; give yours if you fed it standardised floats, so
                predict on image files, and the loaded model on uint8 images, feed it the same.

        Weights tied by using one layer twice are stored once and tied again on loading.

        Returns:
            The folder's Path.
        """
        from cnnlab import runs  # lazily, as fit() imports the Trainer: building a model imports no training code

        if getattr(self, "built", True) is False or getattr(self, "input_shape", None) is None:
            raise ConfigError("the model has no input shape yet, so it cannot be saved: give Sequential "
                              "input_shape=(C, H, W) or call it on a batch first")
        spec = self._model_spec()
        if spec is None:
            raise ConfigError(f"save cannot write a {type(self).__name__} built by hand: make it with "
                              "cnnlab.create_model(name, ...), or train it with cnnlab.train_run")
        # everything is checked and converted before the first file is written
        channels, k = self.input_shape[0], self.output_shape[0]
        try:
            classes = [str(i) for i in range(k)] if classes is None else [str(c) for c in classes]
        except TypeError:
            raise ConfigError(f"save needs classes as a list of {k} names, got {classes!r}") from None
        if len(classes) != k:
            raise ConfigError(f"save got {len(classes)} class names for a model with {k} outputs: "
                              "give one name per output")
        mean = (getattr(self, "input_mean", None) or [0.0] * channels) if mean is None else mean
        std = (getattr(self, "input_std", None) or [1.0] * channels) if std is None else std
        mean, std = per_channel("mean", mean, channels, False), per_channel("std", std, channels, True)
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} is a file; save writes a folder: give a folder name")
        make_folder(path)
        runs.save_weights(path, self)  # the weights first: a model.json is only ever beside its weights
        runs.save_model_json(path, spec, classes, self.input_shape, mean, std)
        return path

    def _model_spec(self) -> dict | None:
        """model.json's "spec": a Sequential's layers when a layer list rebuilds it, else a zoo model's
        name and arguments (fastnet's private _Scale layer has no registered name); None for neither."""
        from cnnlab.model import Sequential

        if hasattr(self, "to_config"):
            config = self.to_config()
            try:
                with warnings.catch_warnings():  # the model's own ShapeWarnings were said when it was built
                    warnings.simplefilter("ignore")
                    Sequential.from_config(config)
                return {"sequential": config}
            except ConfigError as e:
                if getattr(self, "spec", None) is None:
                    raise ConfigError(f"save cannot describe this model as a layer list ({e}); use "
                                      "registered cnnlab layers, or a zoo model from cnnlab.create_model") from None
        return getattr(self, "spec", None)

    def predict(self, x, batch_size: int | None = None, verbose: int | str = "auto", **keras_only) -> np.ndarray:
        """Class probabilities (N, K) as a NumPy array, as Keras's model.predict: the softmax of the
        logits, or the model's own output when it ends in softmax. verbose is taken for Keras' sake."""
        refuse_options(KerasFacade.predict, keras_only)
        batch_size = batch_size_of(batch_size, "predict")
        x = as_tensor(x, "x", self)
        if getattr(self, "built", True) is False:  # no input_shape given: built from x's shape
            self.build(tuple(x.shape[1:]))
        device = getattr(self, "_device", None) or next(self.parameters(), x).device
        check_images(self, x, "predict")
        softmax = ends_in_softmax(self)
        # no images: one blank image is run only to learn K, for Keras' empty (0, K) answer
        chunks = [x[i:i + batch_size] for i in range(0, len(x), batch_size)] or [torch.zeros((1, *x.shape[1:]))]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                out = [torch.softmax(as_logits(self(chunk.to(device)), softmax).float(), 1).cpu() for chunk in chunks]
        finally:
            self.train(was_training)
        return torch.cat(out)[:len(x)].numpy()
