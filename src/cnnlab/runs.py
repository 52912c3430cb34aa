"""The run directory: create it, write its JSON and weights atomically, and load a finished run back.

    runs/<YYYYmmdd-HHMMSS>-<model>-<data>/
      run.incomplete     present from the start until the run finished (metrics.json written)
      config.json  model.json  model.safetensors  checkpoint.pt  history.csv  metrics.json  ...

A run is complete when metrics.json exists and run.incomplete does not: a crash, Ctrl-C or NaN
leaves the marker (and the checkpoint to resume from), so a half-written run never looks finished.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from cnnlab.atomic import make_folder
from cnnlab.errors import CheckpointError, CnnlabError, OutputError
from cnnlab.train.checkpoint import atomic_write

INCOMPLETE = "run.incomplete"
WEIGHTS = "model.safetensors"


def _slug(name: str) -> str:
    """A file-name-safe piece of a run name: runs of other characters become '_' ('my pets' -> 'my_pets')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "x"


def new_run_dir(out: str | Path, model_name: str, data_name: str) -> Path:
    """Create runs/<YYYYmmdd-HHMMSS>-<model>-<data> (with -2, -3, ... if taken), marked incomplete.

    Args:
        out: the folder holding runs (created if missing).
        model_name: e.g. "seed-cnn" or a model file's stem.
        data_name: e.g. "fashion-mnist".

    Raises:
        OutputError: out or the run folder cannot be created (a file in the way, no permission, a
            read-only or missing place).
    """
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(model_name)}-{_slug(data_name)}"
    make_folder(out)
    for n in range(1, 1000):
        path = Path(out) / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()  # exclusive: two runs started in the same second get different folders
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create a run folder in {out} ({exc.strerror or exc}); "
                              "choose an output folder you can write to") from exc
        mark_incomplete(path)
        return path
    raise CnnlabError(f"could not create a run directory {base} in {out}: 999 already exist; clean up {out}")


def mark_incomplete(run_dir: str | Path) -> None:
    """Write the run.incomplete marker (training started or resumed; not finished yet)."""
    text = "this run has not finished; resume it with `cnnlab train --resume <this folder>`\n"
    atomic_write(Path(run_dir) / INCOMPLETE, lambda f: f.write(text.encode()))


def mark_complete(run_dir: str | Path) -> None:
    """Remove the marker once metrics.json is written (a run without metrics.json is never complete)."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists():
        raise CheckpointError(f"cannot mark {run_dir} complete: it has no metrics.json yet; write the metrics first")
    (run_dir / INCOMPLETE).unlink(missing_ok=True)


def is_complete(run_dir: str | Path) -> bool:
    """True when the run finished: metrics.json written and no run.incomplete marker."""
    run_dir = Path(run_dir)
    return (run_dir / "metrics.json").exists() and not (run_dir / INCOMPLETE).exists()


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (indented; tuples as lists, Paths and other objects as strings)."""
    data = (json.dumps(obj, indent=2, default=str) + "\n").encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def read_json(path: str | Path) -> Any:
    """Read a JSON file of a run; a missing or malformed file is a CheckpointError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"no {path.name} in {path.parent}: not a cnnlab run directory, or the run "
                              f"failed before writing it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}): the file is damaged; restore or rerun") from None


def read_config(run_dir: str | Path) -> dict:
    """The run's config.json as a dict."""
    return read_json(Path(run_dir) / "config.json")


def split_seed(config: dict) -> int:
    """The seed of a folder dataset's train/test split in a run's settings: split_seed, else its seed
    (what runs from before split_seed used)."""
    given = config.get("split_seed")
    return config.get("seed", 0) if given is None else given


def read_history(path: str | Path) -> list[dict]:
    """history.csv rows as dicts: epoch int, figures float, empty cells None; [] if the file is absent.

    Raises:
        CheckpointError: a cell is not a number, or a row has more or fewer cells than the header.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows, line = [], 1
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
                rows.append({k: (int(v) if k == "epoch" else float(v) if v != "" else None)
                             for k, v in row.items()})
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error):  # TypeError: a cell short (None) or over (list)
        raise CheckpointError(f"{path}, line {line}, is not a row of numbers under the header: the file was "
                              "edited or damaged; restore it or delete it (it only holds the learning curves)") from None
    return rows


def read_metrics(run_dir: str | Path) -> dict | None:
    """The run's metrics.json as a dict; None when the run has none yet."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path} is not a JSON object of figures ({{...}}): the file was edited or "
                              f"damaged; restore it, or delete it and run `cnnlab evaluate {run_dir}`")
    return metrics


def save_model_json(run_dir: str | Path, spec: dict, classes: Sequence[str], input_shape: Sequence[int],
                    mean: Sequence[float], std: Sequence[float],
                    data_size: Sequence[int] | None = None) -> Path:
    """Write model.json: how to rebuild the model and feed it.

    Args:
        run_dir: the run directory.
        spec: {"zoo": name, "args": {...}} (a zoo model's .spec) or {"sequential": Sequential.to_config()}.
        classes: class names, in label order.
        input_shape: (C, H, W) the model takes.
        mean, std: per-channel normalisation of x / 255 used in training.
        data_size: (H, W) of the dataset's own images, before they were converted to input_shape
            (28x28 Fashion-MNIST padded to LeNet-5's 32x32), so image files are converted alike.
    """
    import cnnlab

    info = {"spec": spec, "classes": list(classes), "input_shape": [int(v) for v in input_shape],
            "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    if data_size is not None:
        info["data_size"] = [int(v) for v in data_size]
    return write_json(Path(run_dir) / "model.json", {**info, "cnnlab_version": cnnlab.__version__})


def _tensors_for_saving(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """state_dict as contiguous CPU tensors, each tied tensor once; returns (tensors, {dropped: kept name})."""
    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper adds a prefix
    tensors, aliases, seen = {}, {}, {}
    for name, t in inner.state_dict().items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in seen:  # tied weights (one tensor under two names): store once
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    return tensors, aliases


def save_weights(run_dir: str | Path, model: nn.Module) -> Path:
    """Write model.safetensors atomically (no pickle); tied weights are stored once and restored on load.

    Args:
        run_dir: the run directory.
        model: any module (a torch.compile wrapper is unwrapped); channels_last tensors are made contiguous.
    """
    from safetensors.torch import save

    tensors, aliases = _tensors_for_saving(model)
    data = save(tensors, metadata={"format": "pt", "tied": json.dumps(aliases)})
    return atomic_write(Path(run_dir) / WEIGHTS, lambda f: f.write(data))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load model.safetensors into a model; corrupt or mismatched files are CheckpointErrors."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tied = json.loads((f.metadata() or {}).get("tied", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises SafetensorError, OSError, ... by damage
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}): the weights file is damaged; "
                              f"retrain or copy it again from the original run") from None
    state.update({dropped: state[kept] for dropped, kept in tied.items() if kept in state})
    inner = getattr(model, "_orig_mod", model)
    try:
        inner.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)[:200]]
        raise CheckpointError(f"the weights in {path} do not fit the model described by model.json "
                              f"({first[0].strip()}): both files must come from the same run") from None
    _tie(inner, tied)


def _tie(model: nn.Module, tied: dict[str, str]) -> None:
    """Make each dropped name hold its kept tensor itself, not a copy, so weights tied when saved (one
    layer used twice in a Sequential, which model.json lists twice) are tied again."""
    for dropped, kept in tied.items():
        owner, _, attr = dropped.rpartition(".")
        try:
            module = model.get_submodule(owner)
            if attr in module._parameters:
                setattr(module, attr, model.get_parameter(kept))
            elif attr in module._buffers:
                module._buffers[attr] = model.get_buffer(kept)
        except AttributeError:  # a parameter tied to a buffer, or a name that is gone: the values are equal anyway
            continue


@dataclass
class Run:
    """A loaded run: the model (eval mode, on the CPU) and everything needed to feed and judge it."""

    path: Path
    model: nn.Module
    classes: list[str]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    config: dict
    metrics: dict | None
    data_size: tuple[int, int] | None = None  # (H, W) of the training images before conversion

    @property
    def complete(self) -> bool:
        """Whether training finished (metrics.json written, no run.incomplete marker)."""
        return is_complete(self.path)

    @property
    def history(self) -> list[dict]:
        """history.csv's rows, read when asked for (predicting needs none, so a damaged file does not stop it)."""
        return read_history(self.path / "history.csv")


def build_from_spec(spec: dict, input_shape: Sequence[int] | None = None) -> nn.Module:
    """Rebuild the architecture model.json describes ({"zoo": ...} or {"sequential": config})."""
    if isinstance(spec, dict) and "zoo" in spec:
        from cnnlab.zoo import create_from_spec

        return create_from_spec(spec)
    if isinstance(spec, dict) and "sequential" in spec:
        from cnnlab.model import Sequential

        config = dict(spec["sequential"])
        if input_shape is not None and not config.get("input_shape"):
            config["input_shape"] = list(input_shape)
        return Sequential.from_config(config)
    raise CheckpointError(f"model.json spec {str(spec)[:80]!r} is neither {{'zoo': ...}} nor {{'sequential': ...}}: "
                          f"the file was not written by cnnlab")


def _check_model_json(model: nn.Module, info: dict, where: Path) -> None:
    """CheckpointError unless the model takes model.json's input_shape and gives one score per class
    it names (a hand-edited file would otherwise fail deep inside predict)."""
    shape = tuple(info["input_shape"])
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *shape)))
    except (RuntimeError, CnnlabError) as exc:
        reason = str(exc).strip().splitlines()[0][:120]
        raise CheckpointError(f"{where} says the model takes {'x'.join(map(str, shape))} inputs, but it "
                              f"does not ({reason}): the file was edited or damaged; restore it") from None
    if out.dim() != 2 or out.shape[1] != len(info["classes"]):
        raise CheckpointError(f"{where} names {len(info['classes'])} classes but the model gives "
                              f"{tuple(out.shape[1:])} outputs: the file was edited or damaged; restore it")
    if len(info["mean"]) != shape[0] or len(info["std"]) != shape[0]:
        raise CheckpointError(f"{where} has {len(info['mean'])} means and {len(info['std'])} stds for "
                              f"{shape[0]} input channels: the file was edited or damaged; restore it")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# model.json's fields: name -> (check, what it must be)
_FIELDS = {
    "spec": (lambda v: isinstance(v, dict), "a JSON object ({\"zoo\": ...} or {\"sequential\": ...})"),
    "classes": (lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(c, str) for c in v),
                "a list of class names"),
    "input_shape": (lambda v: isinstance(v, list) and len(v) in (1, 3) and all(map(_whole, v)),
                    "3 positive whole numbers (C, H, W), or 1 (F,) for a model taking vectors"),
    "mean": (lambda v: isinstance(v, list) and all(map(_number, v)), "a list of numbers, one per channel"),
    "std": (lambda v: isinstance(v, list) and all(_number(x) and x > 0 for x in v),
            "a list of positive numbers, one per channel"),
    "data_size": (lambda v: v is None or isinstance(v, list) and len(v) == 2 and all(map(_whole, v)),
                  "2 positive whole numbers (H, W)"),  # optional: written for converted datasets only
}


def _check_fields(info: Any, where: Path) -> None:
    """CheckpointError naming the field when model.json lacks one or holds a value of the wrong kind (a
    hand-edited file would otherwise fail with a TypeError, or predict NaN from a zero std)."""
    if not isinstance(info, dict):
        raise CheckpointError(f"{where} is not a JSON object: the file is damaged or not from cnnlab")
    missing = [k for k in _FIELDS if k not in info and k != "data_size"]
    if missing:
        raise CheckpointError(f"{where} lacks '{missing[0]}': the file is damaged or not from cnnlab")
    for key, (ok, what) in _FIELDS.items():
        if not ok(info.get(key)):
            shown = json.dumps(info.get(key))
            shown = shown if len(shown) <= 60 else shown[:56] + " ..."
            raise CheckpointError(f"{where} {key} must be {what}, not {shown}: the file was edited or "
                                  f"damaged; restore it")


def load_run(path: str | Path) -> Run:
    """Load a run directory: model with its weights, classes, normalisation, config, history, metrics.

    Args:
        path: the run directory (runs/<date>-<time>-<model>-<data>).
    """
    path = Path(path)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is a file, not a run directory"
        raise CheckpointError(f"{path} {what}: pass the folder `cnnlab train` created, e.g. runs/<date>-<time>-<model>-<data>")
    if not (path / "model.json").exists() and (path / "member-1").is_dir():
        raise CheckpointError(f"{path} is an ensemble of runs, not one run: pass one of its members, e.g. "
                              f"{path / 'member-1'}, or combine them with `cnnlab ensemble "
                              f"{path}/member-*`")
    info = read_json(path / "model.json")
    if not (path / WEIGHTS).exists():
        raise CheckpointError(f"no {WEIGHTS} in {path}: the run has not finished; continue it with "
                              f"`cnnlab train --resume {path}`")
    _check_fields(info, path / "model.json")
    model = build_from_spec(info["spec"], info["input_shape"])
    load_weights(model, path / WEIGHTS)
    model.eval()
    _check_model_json(model, info, path / "model.json")
    # the normalisation of x / 255 it was trained with: model.predict / evaluate / fit apply it to uint8 images
    model.input_mean, model.input_std = tuple(info["mean"]), tuple(info["std"])
    config = read_config(path) if (path / "config.json").exists() else {}
    return Run(path=path, model=model, classes=list(info["classes"]), input_shape=tuple(info["input_shape"]),
               mean=tuple(info["mean"]), std=tuple(info["std"]), config=config, metrics=read_metrics(path),
               data_size=tuple(info["data_size"]) if info.get("data_size") else None)


def load_model(path: str | Path) -> nn.Module:
    """The model a run directory or a `model.save(path)` folder holds, with its weights, in eval mode.

    It predicts as the run did: model.predict / evaluate / fit give uint8 images the run's normalisation,
    ((x / 255) - mean) / std, kept as model.input_mean and model.input_std; floats are taken as already
    normalised. Compile it again before fitting it further (the optimizer's state is not in the folder).
    """
    return load_run(path).model
