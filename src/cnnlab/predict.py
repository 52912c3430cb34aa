"""Using a finished run: evaluate it, predict image files, inspect one image, summarise a model."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Sequence

import torch

from cnnlab import runs
from cnnlab.data import load_dataset
from cnnlab.data.dataset import convert_images
from cnnlab.data.folder import image_size, load_image
from cnnlab.data.sources import absolute_spec
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.layers.shapes import ShapeWarning
from cnnlab.model import _channels_last_hint
from cnnlab.outputs import as_logits, ends_in_softmax

log = logging.getLogger(__name__)


def run_dataset(run: runs.Run, data: str | None, data_dir: str | None,
                input_shape: tuple[int, int, int] | None = None):
    """The run's own test set (or another dataset's), converted to the model's input shape (or input_shape)."""
    spec = data or run.config.get("data")
    if not spec:
        raise ConfigError(f"{run.path} names no dataset (it has no config.json: a model.save "
                          "folder, not a training run); pass --data, e.g. --data fashion-mnist")
    dataset = load_dataset(spec, data_dir or (None if data else run.config.get("data_dir")),
                           seed=runs.split_seed(run.config))
    if dataset.num_classes != len(run.classes):
        raise ConfigError(f"{spec} has {dataset.num_classes} classes but the run's model predicts "
                          f"{len(run.classes)}: evaluate on a dataset with the same classes")
    if list(dataset.classes) != list(run.classes):
        raise ConfigError(f"{spec} has classes {', '.join(dataset.classes)} but the run's model "
                          f"was trained on {', '.join(run.classes)}: evaluate on a dataset with the "
                          "same classes in the same order")
    channels, height, width = input_shape or run.input_shape
    return dataset.with_shape(channels, (height, width))


def evaluation_dir(run_dir: str | Path, data: str | None = None) -> Path:
    """Where evaluate_run writes: the run directory for the run's own test set, and
    RUN/evaluate/<data>/ for another dataset, so that the run's own metrics stay as they are."""
    run_dir = Path(run_dir)
    # a model.save folder has no config.json: every dataset is another one
    own = runs.read_config(run_dir).get("data") if (run_dir / "config.json").is_file() else None
    if data is None or own is not None and absolute_spec(data) == absolute_spec(own):
        return run_dir
    name = "folder-" + Path(data.removeprefix("folder:")).name if data.startswith("folder:") else data
    return run_dir / "evaluate" / (re.sub(r"[^\w.-]+", "_", name) or "data")


RUN_TTA = "run"  # evaluate_run's default: the test-time augmentation the run was trained with


def evaluate_run(run_dir: str | Path, *, data: str | None = None, data_dir: str | None = None,
                 tta: str | None = RUN_TTA) -> dict:
    """Evaluate a run on its test set; writes metrics.json, confusion.csv and the pictures.

    Args:
        run_dir: a finished run directory.
        data: another dataset spec to evaluate on (the same classes), default the run's own; its
            files go to RUN/evaluate/<data>/ (evaluation_dir), leaving the run's own in place.
        data_dir: where that dataset lives.
        tta: test-time augmentation: "run" (default: the run's own setting, so its metrics.json
            keeps the figures training wrote), None or "none", "flip" or "flip-translate".

    Returns:
        The metrics dict written to metrics.json, with "data": the dataset evaluated on.
    """
    from cnnlab.data.augment import flip_label_warning
    from cnnlab.evaluate import predict_proba, tta_warning, write_metrics
    from cnnlab.explain.confusion import confusion_figure, top_losses_figure
    from cnnlab.explain.figures import save_figure
    from cnnlab.pipeline import test_batches

    run = runs.load_run(run_dir)
    tta = run.config.get("tta") if tta == RUN_TTA else None if tta == "none" else tta
    for warning in (tta_warning(tta, run.config.get("augment")),
                    flip_label_warning(data or run.config.get("data", ""), None, tta)):
        if warning is not None:
            log.warning(warning)
    dataset = run_dataset(run, data, data_dir)
    device = next(run.model.parameters()).device
    probs, y = predict_proba(run.model, test_batches(dataset, run.mean, run.std, device), device, tta=tta)
    out = evaluation_dir(run.path, data)
    metrics = write_metrics(out, probs, y, run.classes, tta=tta,
                            data=absolute_spec(data or run.config.get("data", "")) or None)
    cm = torch.tensor(metrics["confusion_matrix"])
    save_figure(confusion_figure(cm, run.classes), out / "confusion.png")
    worst = [row["index"] for row in metrics["top_losses"]]
    pred = probs.argmax(1)
    save_figure(top_losses_figure(dataset.x_test[worst], y[worst], pred[worst], probs[worst, pred[worst]],
                                  run.classes), out / "top_losses.png")
    return metrics


def report_run(run_dir: str | Path, *, data: str | None = None, data_dir: str | None = None,
               examples: int = 4) -> Path:
    """(Re)write RUN/report.html, with top losses, feature maps and Grad-CAM from the run's test set.

    Args:
        run_dir: a finished run directory.
        data: another dataset spec for the example images (the same classes), default the run's
            own; the top losses always come from the run's own test set (metrics.json indexes it).
        data_dir: where that dataset lives.
        examples: how many test images get feature maps and Grad-CAM.
    """
    from cnnlab.explain.report import pick_examples, write_report

    run = runs.load_run(run_dir)
    try:
        own = run_dataset(run, None, None)
        own_test = (own.x_test, own.y_test)
    except CnnlabError as exc:  # moved or deleted since training: write what needs no images
        own_test = None
        log.warning("the run's own dataset cannot be loaded (%s), so the report leaves out its "
                    "top-loss images%s", exc, "" if data else " and the examples: pass --data to "
                    "take examples from another copy")
    if data is None:
        return write_report(run.path, run=run, test_data=own_test, n_examples=examples)
    other = run_dataset(run, data, data_dir)
    return write_report(run.path, run=run, test_data=own_test,
                        examples=pick_examples(other.x_test, other.y_test, examples))


def model_input(run: runs.Run, path: str | Path) -> torch.Tensor:
    """One image file as the run's model input, uint8 (C, H, W), converted as training converted
    its dataset: to the dataset's own image size first (run.data_size), then by convert_images'
    rules to the model's (28x28 Fashion-MNIST zero-padded to LeNet-5's 32x32, not stretched)."""
    channels, height, width = run.input_shape
    # the dataset's image size; a model.save folder (or a run from before data_size was kept) has
    # none, so the file's own: a 28x28 file is then zero-padded to 32x32 as evaluate --data pads it
    size = run.data_size or image_size(path)
    image = load_image(path, channels, size)
    return convert_images(image[None], channels, (height, width))[0]


def predict_images(run_dir: str | Path, paths: Sequence[str | Path] | str | Path, *, top_k: int = 3
                   ) -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-k classes with probabilities for image files (any size or mode, converted as in training).

    Returns:
        [(path, [(class name, probability), ...]), ...] in the order given.
    """
    if isinstance(paths, (str, Path)):  # one image, not the characters of its name
        paths = [paths]
    if not paths:
        raise ConfigError("predict_images needs at least one image file; got none")
    run = runs.load_run(run_dir)
    images = torch.stack([model_input(run, p) for p in paths])
    mean = torch.tensor(run.mean).view(1, -1, 1, 1)
    std = torch.tensor(run.std).view(1, -1, 1, 1)
    with torch.inference_mode():
        out = run.model((images.float() / 255 - mean) / std)
        probs = torch.softmax(as_logits(out, ends_in_softmax(run.model)), dim=1)
    k = min(top_k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [(str(path), [(run.classes[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())])
            for path, vs, ix in zip(paths, values, indices)]


def inspect_run(run_dir: str | Path, image: str | Path, *, layers: Sequence[str] | None = None,
                out: str | Path | None = None, class_index: int | None = None) -> dict:
    """Feature maps, activation maps, filters and Grad-CAM of a run's model on one image file.

    Returns:
        {"paths": [written PNG paths], "topk": [(class name, probability), ...]}
    """
    from cnnlab.explain.inspect import inspect_image

    run = runs.load_run(run_dir)
    x = model_input(run, image)
    out_dir = Path(out) if out else run.path / "inspect" / Path(image).stem
    result = inspect_image(run.model, x, run.classes, run.mean, run.std, out_dir, layers=layers,
                           class_index=class_index)
    paths = [p for group in result["paths"].values() for p in (group if isinstance(group, list) else [group])]
    topk = [(row["class"], row["probability"]) for row in result["topk"]]
    return {"paths": paths, "topk": topk}


def summarize_model(model: str, *, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None):
    """The summary table of a zoo model, a model file or a run's model.

    Args:
        model: zoo name, YAML/JSON model file, or run directory.
        input_shape: (C, H, W) to build for; default the model's own input.
        num_classes: a zoo model's output size (default 10).
    """
    from cnnlab.model_file import load_model_file
    from cnnlab.pipeline import MODEL_FILE_SUFFIXES
    from cnnlab.summary import summarize

    if input_shape is not None and len(input_shape) != 3:
        raise ConfigError(f"--input {'x'.join(map(str, input_shape))} must be CxHxW, e.g. 1x28x28")
    if num_classes is not None and (Path(model).is_dir() or model.endswith(MODEL_FILE_SUFFIXES)):
        raise ConfigError(f"--classes is for zoo models; the output layer of {model} fixes its classes, "
                          "so leave --classes out (or edit the model file's last Dense)")
    if Path(model).is_dir():
        run = runs.load_run(model)
        if input_shape is not None and tuple(input_shape) != tuple(run.input_shape):
            # its weights fix the sizes (a Dense layer's inputs): another input needs another model
            shown = "x".join(map(str, run.input_shape))
            raise ConfigError(f"{model} holds a model trained on {shown} inputs, whose weights fix "
                              f"that size; leave --input out, or summarise its architecture for "
                              f"other inputs by zoo name or model file")
        net = run.model
    elif model.endswith(MODEL_FILE_SUFFIXES):
        net = load_model_file(model, input_shape=input_shape)
    else:
        from cnnlab import zoo

        kw = {"num_classes": num_classes or 10}
        if input_shape is not None:
            kw.update(in_channels=input_shape[0], input_size=tuple(input_shape[1:]))
            if hint := _channels_last_hint(tuple(input_shape)):  # the zoo keeps its own ShapeWarnings quiet
                warnings.warn(f"--input {'x'.join(map(str, input_shape))} reads as {input_shape[0]} channels "
                              f"of {input_shape[1]}x{input_shape[2]} images; {hint}", ShapeWarning, stacklevel=2)
        net = zoo.create(model, **kw)
    return summarize(net, tuple(input_shape) if input_shape else tuple(net.input_shape))
