"""TrainConfig refuses numeric settings outside their sensible range (NaN and inf included) with a
ConfigError naming the setting, the value and a fix, instead of a crash inside torch or a run that
trains garbage; the defaults and every recipe still validate."""

import json
import math
import re

import pytest

from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig
from cnnlab.train.recipes import RECIPES, recipe_config

NAN, INF = math.nan, math.inf


def _refused(match: str, **settings) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**settings)


@pytest.mark.parametrize("lr", [NAN, INF, -INF, 0.0, -1e-3])
def test_lr_must_be_finite_and_positive(lr):
    _refused(rf"lr must be a finite number > 0, got {re.escape(str(lr))}: try 1e-3 for adam", lr=lr)


@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5, NAN, INF])
def test_momentum_must_be_in_0_1(momentum):
    _refused(rf"momentum must be in \[0, 1\), got {momentum}: 0.9 is usual", optimizer="sgd", momentum=momentum)


@pytest.mark.parametrize("weight_decay", [-1e-4, NAN, INF])
def test_weight_decay_must_be_finite_and_non_negative(weight_decay):
    _refused(rf"weight_decay must be a finite number >= 0, got {weight_decay}: 0 turns it off",
             weight_decay=weight_decay)


@pytest.mark.parametrize("scale", [NAN, INF])
def test_bias_lr_scale_must_be_finite(scale):
    _refused(rf"bias_lr_scale must be a finite number > 0, got {scale}: 1 trains biases at lr", bias_lr_scale=scale)


@pytest.mark.parametrize("muon_lr", [NAN, INF])
def test_muon_lr_must_be_finite(muon_lr):
    _refused(rf"muon_lr must be > 0 and muon_momentum in \[0, 1\), got {muon_lr} and 0.6",
             optimizer="muon", muon_lr=muon_lr)


@pytest.mark.parametrize("warmup", [-1.0, NAN, INF, 10.0, 12.5])
def test_warmup_epochs_must_end_before_training_does(warmup):
    _refused(rf"warmup_epochs must be in \[0, 10\), got {warmup}: the warm-up must end before the 10 epochs",
             epochs=10, warmup_epochs=warmup)


@pytest.mark.parametrize("schedule", ["step", "exponential"])
@pytest.mark.parametrize("gamma", [0.0, -0.5, 1.5, NAN, INF])
def test_gamma_must_be_a_decay_factor_in_0_1(schedule, gamma):
    _refused(rf"gamma must be in \(0, 1\], got {gamma}: a decay factor", schedule=schedule, gamma=gamma)


@pytest.mark.parametrize("min_lr", [-1e-5, NAN, INF, 0.1])
def test_min_lr_must_lie_between_0_and_lr(min_lr):
    _refused(rf"min_lr must be in \[0, 0.01\], got {min_lr}: the cosine schedule falls from lr to min_lr",
             schedule="cosine", lr=0.01, min_lr=min_lr)


@pytest.mark.parametrize("factor", [0.0, 1.0, 2.0, -0.1, NAN])
def test_plateau_factor_must_be_in_0_1(factor):
    _refused(rf"plateau_factor must be in \(0, 1\), got {factor}: try 0.1 or 0.5",
             reduce_on_plateau=True, plateau_factor=factor)


def test_plateau_patience_must_not_be_negative():
    _refused(r"plateau_patience must be at least 0, got -1: e.g. 3 epochs", reduce_on_plateau=True,
             plateau_patience=-1)


def test_early_stopping_patience_must_not_be_negative():
    _refused(r"early_stopping_patience must be at least 0, got -2: e.g. 5 epochs", early_stopping_patience=-2)


@pytest.mark.parametrize("smoothing", [-0.5, 1.0, 2.0, NAN, INF])
def test_label_smoothing_must_be_in_0_1(smoothing):
    _refused(rf"label_smoothing must be in \[0, 1\), got {smoothing}: 0 turns it off, 0.1 is typical",
             label_smoothing=smoothing)


@pytest.mark.parametrize("clip", [0.0, -1.0, NAN, INF])
def test_grad_clip_must_be_positive_when_given(clip):
    _refused(rf"grad_clip must be a finite number > 0, got {clip}: 1.0 is typical; leave it unset", grad_clip=clip)


@pytest.mark.parametrize("ema", [0.0, 1.0, NAN, INF])
def test_ema_must_be_a_decay_in_0_1(ema):
    _refused(rf"ema must be in \(0, 1\), got {ema}: it is a decay, try 0.999", ema=ema)


@pytest.mark.parametrize("mix", [None, "cutmix"])
def test_mix_alpha_must_be_finite(mix):
    # inf passed BatchMix's own check, then random.betavariate(inf, inf) never returned
    _refused(r"mix_alpha must be a finite number > 0, got inf: CutMix uses 1.0", mix=mix, mix_alpha=INF)


@pytest.mark.parametrize("prob", [0.0, 1.5, NAN])
def test_mix_prob_must_be_in_0_1_even_with_mix_off(prob):
    _refused(rf"mix_prob must be in \(0, 1\], got {prob}: 1.0 mixes every batch", mix_prob=prob)


@pytest.mark.parametrize("delta", [-0.01, NAN, INF])
def test_min_delta_must_be_finite_and_non_negative(delta):
    _refused(rf"min_delta must be a finite number >= 0, got {delta}: it is the smallest decrease of val_loss",
             early_stopping_patience=3, min_delta=delta)


@pytest.mark.parametrize("key,value", [("translate", 2.5), ("translate", 2.0), ("cutout", 4.0),
                                       ("translate", NAN), ("cutout", True)])
def test_augment_pixel_counts_must_be_whole_numbers(key, value):
    # a float reached torch's pad / randint and raised a TypeError at the first batch
    _refused(rf"augment {key} must be a whole number of pixels, got {re.escape(repr(value))}: e.g. \{{flip",
             augment={"flip": True, key: value})


@pytest.mark.parametrize("key", ["translate", "cutout"])
def test_augment_pixel_counts_must_not_be_negative(key):
    # refused by Augment itself (before this change too): kept here so the range tests are in one place
    _refused(r"augment translate and cutout are pixel counts >= 0", augment={key: -2})


def test_the_edges_of_each_range_are_accepted():
    cfg = TrainConfig(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, epochs=3, warmup_epochs=2.9,
                      schedule="step", gamma=1.0, min_lr=0.01, label_smoothing=0.0, grad_clip=1e-6, ema=0.5,
                      reduce_on_plateau=True, plateau_factor=0.99, plateau_patience=0, early_stopping_patience=0,
                      min_delta=0.0, mix="mixup", mix_alpha=0.2, mix_prob=1.0,
                      augment={"flip": True, "translate": 0, "cutout": 0})
    assert cfg.to_dict()["gamma"] == 1.0
    assert TrainConfig(grad_clip=None, ema=None, gamma=None, early_stopping_patience=None).grad_clip is None


def _strict_json(cfg: TrainConfig) -> dict:
    """config.json's content, refusing NaN and Infinity as the JSON standard does."""
    return json.loads(json.dumps(cfg.to_dict(), allow_nan=False))


def test_the_defaults_validate_and_store_as_strict_json():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(_strict_json(cfg)) == cfg


@pytest.mark.parametrize("device", [None, "cpu", "cuda"])  # "cuda" selects the recipe's GPU part
@pytest.mark.parametrize("data,name", sorted(RECIPES))
def test_every_recipe_still_validates(data, name, device):
    cfg = recipe_config(data, name, device)
    assert TrainConfig.from_dict(_strict_json(cfg)) == cfg


def test_augment_that_is_not_a_mapping_says_so():
    with pytest.raises(ConfigError, match=r"augment must be a mapping of settings, got 'flip'"):
        TrainConfig(augment="flip")


def test_keras_class_names_of_optimizers_and_schedules_work():
    cfg = TrainConfig(optimizer="SGD", schedule="Cosine")
    assert cfg.optimizer == "sgd" and cfg.schedule == "cosine"
    assert TrainConfig(optimizer="RMSprop").optimizer == "rmsprop"
