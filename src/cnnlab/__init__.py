"""cnnlab: convolutional neural networks for image classification, the way the lectures teach them.

The public API, imported lazily so `cnnlab --help` stays quick:

    Sequential, layers          build a model in Keras terms (cnnlab.layers has Conv2D, ...)
    create_model, list_models   the zoo (lenet5, alexnet, vgg16, resnet18, ...)
    summarize                   the layer table with the shape arithmetic
    load_model_file, save_model_file    a Sequential as a YAML/JSON model file (docs/model-files.md)
    load_dataset                fashion-mnist(-mini), mnist, kmnist, cifar10, folder:PATH
    train_run                   a whole training run -> a run directory (what `cnnlab train` does)
    load_run, evaluate_run, predict_images    use a finished run
    load_model                  the model of a run directory or of model.save(path)
    TrainConfig                 every setting of a run
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "layers": "",  # the subpackage itself: cnnlab.layers.Conv2D
    "Sequential": "cnnlab.model",
    "load_model_file": "cnnlab.model_file",
    "save_model_file": "cnnlab.model_file",
    "summarize": "cnnlab.summary",
    "load_dataset": "cnnlab.data",
    "TrainConfig": "cnnlab.train.config",
    "load_run": "cnnlab.runs",
    "load_model": "cnnlab.runs",
    "evaluate_run": "cnnlab.predict",
    "predict_images": "cnnlab.predict",
    "create_model": ("cnnlab.zoo", "create"),
    "list_models": ("cnnlab.zoo", "list_models"),
    "train_run": ("cnnlab.api", "train_run"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    if target == "":  # a subpackage: cnnlab.layers
        value = importlib.import_module(f"cnnlab.{name}")
        globals()[name] = value
        return value
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
