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

import inspect
import contextlib
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.atomic import make_folder
from cnnlab.data.loader import batch_count, batch_slice
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.outputs import as_logits, ends_in_softmax

# Keras loss names -> what the model's output is compared with: torch's CrossEntropyLoss, which takes
# indices or probabilities as targets. A model ending in softmax (from_logits=False in Keras) has its
# probabilities handed to it as log-probabilities by the Trainer (cnnlab/outputs.py).
_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "crossentropy")
_METRICS = ("accuracy", "acc")  # Keras logs the metric under the name it was given: acc, val_acc
# Keras options cnnlab's compile / fit / evaluate / predict do not take (refused with one sentence)
_KERAS_ONLY = ("sample_weight", "class_weight", "steps", "steps_per_epoch", "validation_steps",
               "validation_batch_size", "validation_freq", "callbacks", "loss_weights", "weighted_metrics",
               "run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")
# nn.Module.compile's (torch.compile's) options: given alone, compile() passes them on to torch's
_TORCH_COMPILE_OPTIONS = ("mode", "fullgraph", "dynamic", "backend", "options", "disable")
KERAS_BATCH_SIZE = 32  # what Keras' fit, evaluate and predict take batch_size=None to mean


def _batch_size(value: Any, method: str) -> int:
    """batch_size as a positive int (None: Keras' 32); ConfigError otherwise."""
    if value is None:
        return KERAS_BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{method} got batch_size={value!r}: give a positive whole number of images per "
                          f"step, like {KERAS_BATCH_SIZE}, or None for Keras' {KERAS_BATCH_SIZE}")
    return int(value)


def _refuse_options(method: str, options: dict) -> None:
    """ConfigError for the first keyword `method` does not take: one of Keras' that cnnlab leaves
    out, or a misspelling, named with the closest option."""
    from cnnlab.train.config import closest

    if not options:
        return
    name = next(iter(options))
    if name in _KERAS_ONLY:
        raise ConfigError(f"cnnlab's model.{method}() does not take Keras' {name}=: leave it out")
    params = inspect.signature(getattr(KerasFacade, method)).parameters.values()
    accepted = [p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD]
    near = closest(name, accepted)
    hint = f"did you mean {near}?" if near else f"it takes {', '.join(accepted)}"
    raise ConfigError(f"model.{method}() has no option {name}=: {hint}")


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    """ConfigError unless x holds images and y one label for each."""
    if len(x) == 0:
        raise ConfigError(f"{what} got no images: pass at least one image and its label")
    if len(x) != len(y):
        raise ConfigError(f"{what} got {len(x)} images but {len(y)} labels: pass one label per image")


def _split(x: torch.Tensor, y: torch.Tensor, fraction: float) -> tuple:
    """(x, y, (x_val, y_val)): the last images held out as Keras' validation_split holds them out."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation_split must be in (0, 1), got {fraction}")
    cut = math.floor(len(x) * (1.0 - fraction))  # Keras' split_at (train_validation_split)
    if cut in (0, len(x)):
        empty, fix = ("training", "a smaller") if cut == 0 else ("validation", "a larger")
        raise ConfigError(f"validation_split={fraction} of {len(x)} images leaves no {empty} images: pass "
                          f"more images or {fix} validation_split")
    return x[:cut], y[:cut], (x[cut:], y[cut:])


def _as_tensor(x: Any, what: str, model: nn.Module | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if what == "x":
        if t.dtype == torch.uint8:
            return _normalise(model, t.float() / 255.0)
        if not t.is_floating_point():
            raise ConfigError(f"x must be uint8 images or floats, got {t.dtype}: convert with .float()")
        return t.float()
    if t.ndim == 2 and t.shape[1] == 1:  # (N, 1) indices, as keras.datasets.cifar10 gives them
        t = t.reshape(-1)
    return t.float() if t.ndim == 2 else t.long()  # one-hot (N, K) as probabilities, else indices


def _normalise(model: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel of x (N, C, H, W) in [0, 1], by the input_mean and input_std a loaded
    model carries (runs.load_run); x itself for a model without them, or a shape _check_images refuses."""
    mean, std = getattr(model, "input_mean", None), getattr(model, "input_std", None)
    if mean is None or std is None or x.dim() != 4 or x.shape[1] != len(mean):
        return x
    mean, std = (torch.tensor(v, device=x.device).view(-1, 1, 1) for v in (mean, std))  # (C, 1, 1)
    return (x - mean) / std


def _per_channel(name: str, values: Any, channels: int, positive: bool) -> list[float]:
    """values as one finite float per channel (positive ones for a std); ConfigError otherwise."""
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        floats = []
    if len(floats) != channels or not all(math.isfinite(v) and (v > 0 or not positive) for v in floats):
        kind = "positive number" if positive else "number"
        raise ConfigError(f"save needs {name} as one {kind} per input channel ({channels}), got {values!r}")
    return floats


def _check_labels(model, y: torch.Tensor, what: str) -> None:
    """ShapeError, with the fix, when the model's scores cannot meet labels y: indices (N,) above
    its last output or below 0, or one-hot (N, K) for another K (check_num_classes words it)."""
    from cnnlab.model import check_num_classes

    if y.ndim == 2:
        check_num_classes(model, y.shape[1])
        return
    if y.ndim != 1:
        raise ConfigError(f"{what} got labels of shape {tuple(y.shape)}; pass class indices (N,) or "
                          "one-hot rows (N, K)")
    if len(y) == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise ConfigError(f"{what} got label {low}; labels are class indices 0, 1, ..., K - 1")
    out = getattr(model, "output_shape", None)
    if out is not None and (len(out) != 1 or high >= out[0]):
        check_num_classes(model, max(high + 1, 2))


def _check_images(model, x: torch.Tensor, what: str) -> None:
    """ShapeError, with the fix, when images x (N, C, H, W) do not fit the model's input (C, H, W):
    most often Keras' channels-last (N, H, W, C) or grey images without their channel axis."""
    expected = getattr(model, "input_shape", None)
    if expected is None or tuple(x.shape[1:]) == tuple(expected):
        return
    got, (c, h, w) = tuple(x.shape), tuple(expected)
    if x.dim() == 4 and got[1:] == (h, w, c):
        fix = ("they are channels-last (N, H, W, C), as Keras stores images; move the channels first with "
               "x.transpose(0, 3, 1, 2) (NumPy) or x.permute(0, 3, 1, 2) (torch)")
    elif x.dim() == 3 and c == 1 and got[1:] == (h, w):
        fix = "grey images need their channel axis: pass x[:, None] (NumPy or torch)"
    else:
        fix = f"resize or reshape them to (N, {c}, {h}, {w}), or build the model for their shape"
    raise ShapeError(f"{what} got images of shape {got} but the model takes (N, {c}, {h}, {w}) "
                     f"(N, C, H, W); {fix}")


class _ArrayBatches:
    """In-memory (x, y) batches with a seeded per-epoch shuffle (the Trainer's batch protocol)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int, device):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, batch_index: int) -> None:
        self.start = batch_index

    def __len__(self) -> int:
        return batch_count(len(self.x), self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for i in range(self.start, len(self)):
            idx = order[batch_slice(i, n, self.batch_size)]
            yield self.x[idx], self.y[idx]
        self.start = 0


class KerasFacade:
    """compile / fit / evaluate / predict for an nn.Module, Keras-style."""

    def compile(self, optimizer: str | torch.optim.Optimizer = "adam", loss: str = "sparse_categorical_crossentropy",
                metrics: Sequence[str] | str | None = ("accuracy",), *, lr: float = 1e-3, label_smoothing: float = 0.0,
                device: str = "auto", **keras_only) -> None:
        """Choose the optimizer and loss, as Keras's model.compile.

        Args:
            optimizer: sgd, adam, adamw, rmsprop, adagrad, muon, in any case (Keras' "Adam" too; muon
                trains the filters at its lr 0.24, the rest by SGD at lr), or a torch optimizer over
                self.parameters().
            loss: sparse_categorical_crossentropy (labels are indices) or categorical_crossentropy (one-hot).
            metrics: accuracy is always tracked; ["acc"] names it acc and val_acc in the history, as Keras does.
            lr: learning rate when optimizer is a name.
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
        _refuse_options("compile", keras_only)
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
        x_val, y_val = _as_tensor(validation_data[0], "x", self), _as_tensor(validation_data[1], "y")
        _check_pair(x_val, y_val, "fit's validation_data")
        _check_images(self, x_val, "fit's validation_data")
        _check_labels(self, y_val, "fit's validation_data")
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

        _refuse_options("fit", keras_only)
        batch_size = _batch_size(batch_size, "fit")
        if not 0 <= initial_epoch <= epochs:
            raise ConfigError(f"fit needs 0 <= initial_epoch <= epochs, got initial_epoch={initial_epoch} and "
                              f"epochs={epochs}: epochs is the epoch to train up to, as in Keras")
        x, y = _as_tensor(x, "x", self), _as_tensor(y, "y")
        _check_pair(x, y, "fit")
        self._need_compile("fit", x)
        _check_images(self, x, "fit")
        _check_labels(self, y, "fit")
        if validation_data is not None:
            validation_data = self._validation(validation_data)
        elif validation_split:
            x, y, validation_data = _split(x, y, validation_split)
        train_b = _ArrayBatches(x, y, batch_size, shuffle, seed, self._device)
        val_b = None if validation_data is None else _ArrayBatches(*validation_data, 1024, False, seed, self._device)
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

        _refuse_options("evaluate", keras_only)
        batch_size = _batch_size(batch_size, "evaluate")
        x, y = _as_tensor(x, "x", self), _as_tensor(y, "y")
        _check_pair(x, y, "evaluate")
        self._need_compile("evaluate", x)
        _check_images(self, x, "evaluate")
        _check_labels(self, y, "evaluate")
        batches = _ArrayBatches(x, y, batch_size, False, 0, self._device)
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
        mean, std = _per_channel("mean", mean, channels, False), _per_channel("std", std, channels, True)
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
        _refuse_options("predict", keras_only)
        batch_size = _batch_size(batch_size, "predict")
        x = _as_tensor(x, "x", self)
        if getattr(self, "built", True) is False:  # no input_shape given: built from x's shape
            self.build(tuple(x.shape[1:]))
        device = getattr(self, "_device", None) or next(self.parameters(), x).device
        _check_images(self, x, "predict")
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
