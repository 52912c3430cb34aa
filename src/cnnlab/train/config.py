"""TrainConfig: every setting of a training run, with the lecture's defaults; the CLI derives from it."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError

SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "muon")
INITS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal", "lecun_uniform")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
TTAS = ("flip", "flip-translate")
# torch.compile's modes; the last two record CUDA graphs of the compiled code on a GPU
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")
# the names Keras users type for a few settings (model.fit / optimizer arguments) -> ours
KERAS_NAMES = {"learning_rate": "lr", "validation_split": "val_split"}


def _f(default: Any, help: str) -> Any:
    """A dataclass field whose help text the CLI shows (kept in the field's metadata)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def closest(name: str, choices: typing.Iterable[str]) -> str | None:
    """The valid choice nearest to a misspelt name, or None when nothing is close."""
    hits = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return hits[0] if hits else None


def check_choice(what: str, value: str, choices: typing.Sequence[str]) -> None:
    """Raise ConfigError naming the closest valid choice when value is not one of choices."""
    if value in choices:
        return
    near = closest(value, choices)
    hint = f"did you mean '{near}'? " if near else ""
    raise ConfigError(f"unknown {what} '{value}': {hint}choose one of {', '.join(choices)}")


# the settings ensemble_run.lr_find uses (it sweeps the learning rate; lr sets where each group's,
# such as muon_lr, stands against it): `cnnlab lr-find` offers these flags only
LR_FIND_SETTINGS = ("model", "data", "data_dir", "recipe", "batch_size", "optimizer", "lr", "momentum",
                    "nesterov", "muon_lr", "muon_momentum", "weight_decay", "bias_lr_scale",
                    "label_smoothing", "init", "augment", "mix", "mix_alpha", "mix_prob", "val_split",
                    "seed", "device")


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are the lecture's recipe."""

    # what to train on what
    model: str = _f("seed-cnn", "model: a zoo name (`cnnlab models` lists them) or a model YAML/JSON file")
    data: str = _f("fashion-mnist-mini", "dataset: fashion-mnist, fashion-mnist-mini, mnist, kmnist, cifar10, folder:PATH")
    data_dir: str | None = _f(None, "folder holding the dataset files (else the usual places)")
    # the loop
    epochs: int = _f(10, "passes over the training set")
    batch_size: int = _f(128, "images per optimizer step")
    optimizer: str = _f("adam", "optimizer: sgd, adam, adamw, rmsprop, adagrad, or muon (Muon for convolution "
                                "filters, sgd with lr/momentum/nesterov for the rest)")
    lr: float = _f(1e-3, "learning rate (the peak for onecycle)")
    momentum: float = _f(0.9, "momentum for sgd")
    nesterov: bool = _f(False, "Nesterov momentum (sgd and muon)")
    muon_lr: float = _f(0.24, "muon: learning rate of the convolution filters (airbench94_muon, with BatchNorm: "
                              "0.24; seed-cnn, without: 0.05 with lr 0.05, the best of 0.02 / 0.05 / 0.24)")
    muon_momentum: float = _f(0.6, "muon: momentum of the convolution filters (airbench94_muon: 0.6)")
    weight_decay: float = _f(0.0, "weight decay (L2 for sgd/adam, decoupled for adamw); not on BN or bias, "
                                  "nor on the filters muon steps (its orthogonalised steps keep their scale)")
    # learning-rate schedule, stepped every batch
    schedule: str = _f("constant", "lr schedule: constant, step, exponential, cosine, onecycle "
                                   "(which also cycles sgd's momentum / adam's beta1 0.95-0.85, "
                                   "except with muon)")
    warmup_epochs: float = _f(0.0, "linear warm-up from ~0 to lr over this many epochs (fractions allowed)")
    step_size: int = _f(10, "step schedule: multiply lr by gamma every step_size epochs")
    gamma: float | None = _f(None, "lr factor per step (step: default 0.1) or per epoch (exponential: default 0.95)")
    min_lr: float = _f(0.0, "cosine schedule: the lr reached at the end")
    reduce_on_plateau: bool = _f(False, "multiply lr by plateau_factor when val_loss stops improving")
    plateau_patience: int = _f(3, "epochs without val_loss improvement before reducing lr")
    plateau_factor: float = _f(0.1, "lr factor applied on a plateau")
    # regularisation
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy (0 = off, 0.1 typical)")
    grad_clip: float | None = _f(None, "clip the global gradient norm to this value (None = off)")
    init: str | None = _f(None, "weight init of Conv/Dense: he_normal, he_uniform, glorot_normal, "
                                "glorot_uniform, lecun_normal, lecun_uniform (None = the layers' own)")
    ema: float | None = _f(None, "keep an exponential moving average of the weights with this decay (e.g. 0.999)")
    bias_lr_scale: float = _f(1.0, "learning-rate multiplier for biases and BatchNorm parameters (airbench: 64)")
    whiten_stem: bool = _f(False, "initialise the first convolution as a frozen patch-whitening filter bank "
                                  "computed from 5,000 training images (airbench; needs 2*C*k*k filters)")
    augment: dict | None = _f(None, "batch augmentations, e.g. {flip: true, translate: 2, cutout: 8} (None = off); "
                                    "flip: true mirrors at random (p 0.5), flip: alternating mirrors each image "
                                    "every other epoch")
    mix: str | None = _f(None, "mix pairs of training images and their labels: mixup or cutmix (None = off)")
    mix_alpha: float = _f(1.0, "mix: the mixing ratio is drawn from Beta(mix_alpha, mix_alpha) (CutMix: 1.0)")
    mix_prob: float = _f(1.0, "mix: the share of batches mixed (CutMix on CIFAR: 0.5)")
    tta: str | None = _f(None, "test-time augmentation at evaluation: flip or flip-translate (None = off)")
    # stopping
    early_stopping_patience: int | None = _f(None, "stop after this many epochs without val_loss improvement")
    min_delta: float = _f(0.0, "smallest val_loss decrease that counts as an improvement (early "
                               "stopping and reduce-on-plateau)")
    restore_best: bool = _f(True, "with early stopping, end with the weights of the best epoch")
    val_split: float = _f(0.1, "fraction of the training set held out for validation")
    # reproducibility and hardware
    seed: int = _f(0, "seed for torch, numpy, python and the data order")
    split_seed: int | None = _f(None, "seed of the train/test split of a folder dataset without test/ "
                                      "(default: seed; an ensemble's members share the first's, so none is "
                                      "tested on another's training images)")
    deterministic: bool = _f(False, "use torch's deterministic algorithms (slower on GPU)")
    device: str = _f("auto", "device: auto (cuda, then mps, then cpu), cpu, cuda, mps")
    precision: str = _f("fp32", "fp32 or bf16 (autocast)")
    channels_last: bool = _f(False, "NHWC memory layout (faster convolutions on recent GPUs)")
    compile: bool = _f(False, "torch.compile the model")
    compile_mode: str = _f("default", "torch.compile's mode, with compile on: default, max-autotune-no-cudagraphs, "
                                      "reduce-overhead or max-autotune (the last two add CUDA graphs on a GPU)")
    cuda_graph: bool = _f(False, "replay the forward and backward pass as CUDA graphs (CUDA only): less "
                                 "launch overhead for small nets")
    # the run
    recipe: str | None = _f(None, "a named recipe of tuned settings for the dataset (flags override it)")
    ensemble: int = _f(1, "train this many members with seeds seed, seed+1, ... into one run")
    out: str = _f("runs", "folder the run directories go in")
    tensorboard: bool = _f(False, "also write TensorBoard logs (pip install cnnlab[tensorboard])")

    def __post_init__(self) -> None:
        for name in ("optimizer", "schedule"):  # Keras' class names work too: Adam, SGD, RMSprop
            if isinstance(getattr(self, name), str):
                setattr(self, name, getattr(self, name).lower())
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("device", self.device, DEVICES)
        if self.init is not None:
            check_choice("weight init", self.init, INITS)
        if self.tta is not None:
            check_choice("test-time augmentation", self.tta, TTAS)
        check_choice("compile mode", self.compile_mode, COMPILE_MODES)
        if self.compile_mode != "default" and not self.compile:
            raise ConfigError(f"compile_mode {self.compile_mode!r} needs compile on: set compile: true "
                              "(--compile) as well, or leave compile_mode at 'default'")
        for name in ("epochs", "batch_size", "ensemble", "step_size"):
            _check_count(name, getattr(self, name), 1, "set a positive value")
        if self.cuda_graph and self.compile:
            raise ConfigError("cuda_graph and compile cannot be combined: choose one (compile has its own "
                              "CUDA graphs: compile_mode reduce-overhead)")
        if not (0.0 < self.muon_lr < math.inf and 0.0 <= self.muon_momentum < 1.0):
            raise ConfigError(f"muon_lr must be > 0 and muon_momentum in [0, 1), got {self.muon_lr} and "
                              f"{self.muon_momentum}: airbench94_muon uses 0.24 and 0.6")
        if self.augment is not None:
            _check_augment(self.augment)
        if self.mix is not None:
            _check_mix(self.mix, self.mix_alpha, self.mix_prob)
        self._check_ranges()

    def _check_ranges(self) -> None:
        """ConfigError for a numeric setting outside the range it makes sense in (NaN and inf included)."""
        _check_range("val_split", self.val_split, "e.g. 0.1 holds out 10%", at_least=0, below=1)
        # the optimizer
        _check_range("lr", self.lr, "try 1e-3 for adam or 0.01 for sgd", above=0)
        _check_range("momentum", self.momentum, "0.9 is usual (momentum 1 never forgets and diverges)",
                     at_least=0, below=1)
        _check_range("weight_decay", self.weight_decay, "0 turns it off, 5e-4 is typical", at_least=0)
        _check_range("bias_lr_scale", self.bias_lr_scale, "1 trains biases at lr", above=0)
        # the schedule
        _check_range("warmup_epochs", self.warmup_epochs, f"the warm-up must end before the {self.epochs} "
                     "epochs do (0 = none)", at_least=0, below=self.epochs)
        if self.gamma is not None:  # a decay factor: > 1 would make the lr grow every step / epoch
            _check_range("gamma", self.gamma, "a decay factor, e.g. 0.1 every step_size epochs (step) or "
                         "0.95 per epoch (exponential)", above=0, at_most=1)
        _check_range("min_lr", self.min_lr, "the cosine schedule falls from lr to min_lr, e.g. 0 or lr / 100",
                     at_least=0, at_most=self.lr)
        _check_range("plateau_factor", self.plateau_factor, "try 0.1 or 0.5", above=0, below=1)
        _check_count("plateau_patience", self.plateau_patience, 0, "e.g. 3 epochs without improvement")
        # regularisation
        _check_range("label_smoothing", self.label_smoothing, "0 turns it off, 0.1 is typical",
                     at_least=0, below=1)
        if self.grad_clip is not None:
            _check_range("grad_clip", self.grad_clip, "1.0 is typical; leave it unset to turn clipping off",
                         above=0)
        if self.ema is not None:
            _check_range("ema", self.ema, "it is a decay, try 0.999", above=0, below=1)
        _check_range("mix_alpha", self.mix_alpha, "CutMix uses 1.0, mixup 0.2 to 1.0", above=0)
        _check_range("mix_prob", self.mix_prob, "1.0 mixes every batch, CutMix on CIFAR uses 0.5",
                     above=0, at_most=1)
        # stopping
        if self.early_stopping_patience is not None:
            _check_count("early_stopping_patience", self.early_stopping_patience, 0,
                         "e.g. 5 epochs without improvement")
        _check_range("min_delta", self.min_delta, "it is the smallest decrease of val_loss that counts, "
                     "e.g. 0 or 1e-4", at_least=0)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "the configuration") -> "TrainConfig":
        """Build from a plain dict; unknown keys raise ConfigError naming the closest field.

        Args:
            values: field name -> value (dashes in names are accepted as underscores).
            source: where the values came from, for the error message (e.g. the YAML path).
        """
        return cls(**cls.normalize(values, source=source))

    @classmethod
    def normalize(cls, values: dict[str, Any], *, source: str = "the configuration") -> dict[str, Any]:
        """The given settings only, under their field names (dashes and Keras names mapped) and types.

        Args:
            values: setting -> value, as a file or the command line gives them.
            source: where the values came from, for the error message.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must be a mapping of setting: value, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        types = {name: _type_name(hint) for name, hint in typing.get_type_hints(cls).items()}
        clean = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            name = KERAS_NAMES.get(name, name)
            if name not in names:
                near = closest(name, names)
                hint = f" (did you mean '{near}'?)" if near else ""
                raise ConfigError(f"unknown setting '{key}' in {source}{hint}: see `cnnlab train --help`")
            clean[name] = _coerce(name, value, types[name], source)
        return clean

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML (or JSON) file of settings.

        Args:
            path: the file; its keys are TrainConfig field names.
        """
        return cls.from_dict(read_settings(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-able dict (what config.json stores)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **overrides: Any) -> "TrainConfig":
        """A copy with some fields changed (CLI flags over file values); None values are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return TrainConfig.from_dict({**self.to_dict(), **given}, source="the overrides")

    @classmethod
    def fields_for_cli(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, help) per field, in order; type is 'int', 'float', 'bool', 'str' or 'dict'.

        Optional fields report their inner type (`float | None` -> 'float'); the default may be None.
        """
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            rows.append((f.name, _type_name(hints[f.name]), default, f.metadata["help"]))
        return rows


def _check_count(name: str, value: int, minimum: int, fix: str) -> None:
    """ConfigError unless the whole-number setting `name` is at least `minimum`."""
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}: {fix}")


def _check_range(name: str, value: float, fix: str, *, above: float | None = None,
                 at_least: float | None = None, below: float | None = None,
                 at_most: float | None = None) -> None:
    """ConfigError unless `value` is a finite number within the bounds: a lower one (above or
    at_least) and optionally an upper one (below or at_most).

    The message states the range: "in [0, 1)" with both ends, "a finite number > 0" with a lower one.
    """
    low = above if above is not None else at_least
    high = below if below is not None else at_most
    ok = isinstance(value, numbers.Real) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
    ok = ok and (below is None or value < below) and (at_most is None or value <= at_most)
    if ok:
        return
    if high is None:
        wanted = f"a finite number {'>' if above is not None else '>='} {low}"
    else:
        wanted = f"in {'(' if above is not None else '['}{low}, {high}{')' if below is not None else ']'}"
    raise ConfigError(f"{name} must be {wanted}, got {value}: {fix}")


def _check_augment(values: dict) -> None:
    """ConfigError now, before any run directory exists, for augment settings Augment refuses."""
    from cnnlab.data.augment import Augment  # torch-heavy: imported only when augment is set

    if not isinstance(values, dict):
        raise ConfigError(f"augment must be a mapping of settings, got {values!r}: "
                          "e.g. --augment '{flip: true, translate: 2}'")
    for key in ("translate", "cutout"):  # torch's pad and randint take whole pixel counts only
        value = values.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"augment {key} must be a whole number of pixels, got {value!r}: "
                              "e.g. {flip: true, translate: 2, cutout: 8}")
    try:
        Augment(**values)
    except TypeError:
        raise ConfigError(f"augment {values!r} has an unknown key: use flip, translate, cutout and padding, "
                          "e.g. {flip: true, translate: 2}") from None


def _check_mix(mode: str, alpha: float, prob: float) -> None:
    """ConfigError now, before any run directory exists, for mix settings BatchMix refuses."""
    from cnnlab.data.mix import BatchMix  # torch-heavy: imported only when mix is set

    BatchMix(mode, num_classes=2, alpha=alpha, prob=prob)


def read_settings(path: str | Path) -> dict[str, Any]:
    """The raw settings of a YAML (or JSON) file, as written; ConfigError if it is missing or malformed."""
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)  # where the parser stopped (0-based)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or e.__class__.__name__
        raise ConfigError(f"config file {path}{where} is not valid YAML ({problem}): fix its syntax") from None
    return {} if values is None else values


def _type_name(hint: Any) -> str:
    """'int' | 'float' | 'bool' | 'str' | 'dict' for a field annotation, Optional unwrapped."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    base = typing.get_origin(base) or base
    return base.__name__


def _coerce(name: str, value: Any, type_name: str, source: str) -> Any:
    """Convert a value to the field's type; YAML reads 1e-3 as a string, so floats accept strings."""
    if value is None:
        return None
    try:
        if type_name == "float" and not isinstance(value, bool):
            return float(value)
        if type_name == "int" and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if type_name == "bool" and isinstance(value, bool):
            return value
        if type_name == "bool" and str(value).lower() in ("true", "false", "yes", "no", "1", "0"):
            return str(value).lower() in ("true", "yes", "1")
        if type_name in ("str", "dict") and isinstance(value, (str, dict)):
            return value
    except (TypeError, ValueError):
        pass
    article = "an" if type_name[0] in "aeiou" else "a"  # an int, a float
    raise ConfigError(f"setting '{name}' in {source} must be {article} {type_name}, got {value!r}: fix its value")
