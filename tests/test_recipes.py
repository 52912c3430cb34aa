"""Recipes resolve to valid configs, keep labels intact, and their code paths train on the CPU."""

import math
import re

import pytest
import torch

from cnnlab import zoo
from cnnlab.bench.session import accuracy_on_test, train_in_memory
from cnnlab.data import FLIP_KEEPS_LABEL, ImageDataset, load_dataset
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig
from cnnlab.train.recipes import (RECIPES, gpu_recipe_on_cpu_warning, recipe_config, recipe_names, recipe_overrides,
                                  recipe_tta)

PAIRS = sorted(RECIPES)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a machine shared with other test runs, two threads spinning at OpenMP
    barriers made these trainings up to 6x slower (measured: 3.2 s vs 21 s for one epoch here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
DEVICES = (None, "cpu", "cuda")  # "cuda" only selects the GPU variant; nothing runs on it here


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("data,name", PAIRS)
def test_every_recipe_is_a_valid_config(data, name, device):
    over = recipe_overrides(data, name, device)
    cfg = TrainConfig.from_dict({**over, "data": data})
    assert cfg.recipe == name
    assert cfg.model in {m.name for m in zoo.list_models()}
    # a schedule must fit its budget: warm-up shorter than training
    assert 0 <= cfg.warmup_epochs < cfg.epochs
    assert recipe_tta(data, name, device) in (None, "flip", "flip-translate")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("data,name", PAIRS)
def test_flip_only_where_it_keeps_the_label(data, name, device):
    cfg = recipe_config(data, name, device)
    flips = bool((cfg.augment or {}).get("flip")) or recipe_tta(data, name, device) is not None
    if flips:
        assert FLIP_KEEPS_LABEL[data]


def test_cuda_variant_differs_and_cpu_follows_the_hardware():
    cpu, gpu = recipe_overrides("fashion-mnist", "fast", "cpu"), recipe_overrides("fashion-mnist", "fast", "cuda")
    assert cpu["model"] == "fastnet" and gpu["model"] == "fastnet-large"
    assert gpu["batch_size"] == 1024 and gpu["nesterov"] and gpu["channels_last"]
    from cnnlab.train.fast import cpu_has_bf16

    assert cpu["precision"] == ("bf16" if cpu_has_bf16() else "fp32")


def test_mini_set_uses_fashion_mnist_recipes():
    assert recipe_overrides("fashion-mnist-mini", "fast") == recipe_overrides("fashion-mnist", "fast")


def test_unknown_recipe_names_the_valid_pairs():
    with pytest.raises(ConfigError, match="fashion-mnist fast") as e:
        recipe_overrides("mnist", "fastest")
    assert "mnist" in str(e.value) and "'fastest'" in str(e.value)
    with pytest.raises(ConfigError, match="valid pairs"):
        recipe_overrides("svhn", "fast")
    assert {"cifar10 fast", "cifar10 best", "mnist best", "kmnist best"} <= set(recipe_names())


def test_overrides_win_over_the_recipe():
    cfg = recipe_config("fashion-mnist", "fast", "cpu", epochs=1, batch_size=32, seed=3)
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.model) == (1, 32, 3, "fastnet")


def _small(n_train: int, n_test: int) -> ImageDataset:
    """A class-balanced slice of the shipped mini Fashion-MNIST (sorted by nothing: its own order)."""
    d = load_dataset("fashion-mnist-mini")
    return ImageDataset(d.name, d.classes, d.x_train[:n_train], d.y_train[:n_train], d.x_test[:n_test],
                        d.y_test[:n_test])


def _finite(model):
    return all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


def test_fast_recipe_cpu_path_trains_without_nan():
    data = _small(640, 200)
    cfg = recipe_config(data.name, "fast", "cpu", epochs=1, batch_size=64)
    losses = []
    session = train_in_memory(cfg, data, "cpu", on_epoch=lambda e, s, m: losses.append(s) and False)
    assert _finite(session.model) and len(session.epoch_seconds) == 1 and session.epoch_seconds[0] > 0
    assert accuracy_on_test(session.model, cfg, data, torch.device("cpu")) > 0.3  # 10 steps: well above chance


def test_gpu_recipe_path_runs_on_cpu_with_a_tiny_budget():
    """The CUDA variant (fastnet-large, batch 1024, EMA, flip+translate, TTA) with 2 steps of 32."""
    from cnnlab.bench.gpu_recipe import bench_gpu_recipe

    data = _small(64, 64)
    # everything of the CUDA variant but its CUDA graphs, which need a GPU (cuda_graph=True on the CPU is
    # a ConfigError, tested in test_engine)
    over = {**recipe_overrides("fashion-mnist", "fast", "cuda"), "precision": "fp32", "channels_last": True,
            "cuda_graph": False}
    cfg = TrainConfig.from_dict({**over, "data": data.name, "epochs": 1, "batch_size": 32, "warmup_epochs": 0.5})
    session = train_in_memory(cfg, data, "cpu")
    assert _finite(session.model)
    acc = accuracy_on_test(session.model, cfg, data, torch.device("cpu"), recipe_tta("fashion-mnist", "fast", "cuda"))
    assert 0.0 <= acc <= 1.0
    # and the bench wrapper around it, on the CPU variant of the recipe
    lines = []
    out = bench_gpu_recipe(data, torch.device("cpu"), "fast", runs=2, warmup=False, progress=lines.append,
                           epochs=1, batch_size=32)
    assert len(out["accuracies"]) == 2 and out["min_accuracy"] <= out["mean_accuracy"] and out["seeds"] == [0, 1]
    assert [line.split(":")[:2] for line in lines] == [["gpu-recipe fast", " run 1/2 (seed 0)"],
                                                       ["gpu-recipe fast", " run 2/2 (seed 1)"]]
    assert re.fullmatch(r"gpu-recipe fast: run 2/2 \(seed 1\): \d+\.\d\d% in \d+\.\d s", lines[1]), lines[1]
    # a series continued in a later sitting: seed 1 alone scores what it scored as the second run
    later = bench_gpu_recipe(data, torch.device("cpu"), "fast", runs=1, warmup=False, first_seed=1,
                             epochs=1, batch_size=32)
    assert later["seeds"] == [1] and later["accuracies"] == [out["accuracies"][1]]
    assert len(out["median_epoch_seconds"]) == len(out["slowest_epoch_seconds"]) == 2
    assert all(0 < m <= slowest < s for m, slowest, s in zip(out["median_epoch_seconds"], out["slowest_epoch_seconds"],
                                                              out["seconds_per_run"]))
    assert all(s > 0 for s in out["seconds_per_run"]) and math.isclose(
        out["mean_seconds"], sum(out["seconds_per_run"]) / 2, rel_tol=1e-2, abs_tol=2e-3)


def test_bf16_channels_last_matches_fp32_accuracy():
    """Same seed, data order and init: only precision and layout differ. 1,000 test images give a
    binomial standard error of ~1.2 points at 80%, so 4 points (3 sigma) is what noise allows."""
    data = _small(3000, 1000)
    accs = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        cfg = recipe_config(data.name, "fast", None, epochs=2, batch_size=64, precision=precision,
                            channels_last=channels_last)
        session = train_in_memory(cfg, data, "cpu")
        accs[precision] = accuracy_on_test(session.model, cfg, data, torch.device("cpu"))
    assert accs["fp32"] > 0.7, accs  # it learned: the comparison means something
    assert abs(accs["bf16"] - accs["fp32"]) <= 0.04, accs


@pytest.mark.parametrize("data,shape", [("fashion-mnist", (1, 28, 28)), ("mnist", (1, 28, 28)),
                                        ("kmnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_best_recipes_take_steps_on_their_sets_shapes(data, shape):
    """Every best recipe (GPU recipes: fashion-mnist's Wide ResNet, and the fastnet-xl ones nobody has
    measured yet, with no copy of their sets here): net, augmentations and TTA run on random images
    of the set's shape, 2 steps of 16, without NaN."""
    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = lambda n: torch.arange(n) % 10  # noqa: E731
    fake = ImageDataset(data, [str(i) for i in range(10)], images(32), labels(32), images(16), labels(16))
    over = {**recipe_overrides(data, "best", "cuda"), "precision": "fp32", "cuda_graph": False}
    cfg = TrainConfig.from_dict({**over, "data": data, "epochs": 1, "batch_size": 16, "warmup_epochs": 0.5})
    session = train_in_memory(cfg, fake, "cpu")
    assert _finite(session.model)
    assert 0.0 <= accuracy_on_test(session.model, cfg, fake, torch.device("cpu"), recipe_tta(data, "best", "cuda")) <= 1


def test_the_gpu_sized_best_recipe_warns_before_training_for_days_on_a_cpu():
    best = recipe_config("fashion-mnist", "best", "cpu")
    warning = gpu_recipe_on_cpu_warning(best, "cpu")
    assert warning.startswith("recipe 'best' is sized for a GPU: 190 epochs of wrn-16-8 on the cpu")
    assert "--recipe fast" in warning and "--epochs" in warning
    assert gpu_recipe_on_cpu_warning(recipe_config("fashion-mnist", "best", "cuda"), "cuda") is None
    assert gpu_recipe_on_cpu_warning(recipe_config("fashion-mnist", "fast", "cpu"), "cpu") is None
    assert gpu_recipe_on_cpu_warning(recipe_config("fashion-mnist", "best", "cpu", epochs=3), "cpu") is None
    assert gpu_recipe_on_cpu_warning(TrainConfig(recipe="best", data="folder:/tmp/x"), "cpu") is None


@pytest.mark.parametrize("ensemble", [1, 3])
def test_train_warns_once_before_loading_anything(tmp_path, monkeypatch, caplog, ensemble):
    """pipeline.train logs the warning first, and once for an ensemble (its members come back
    through train with their own run_dir)."""
    from cnnlab import pipeline

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(pipeline, "prepare", stop)  # the data loading that follows the warning
    cfg = recipe_config("fashion-mnist", "best", "cpu", out=str(tmp_path), ensemble=ensemble).replace(device="cpu")
    with caplog.at_level("WARNING", logger="cnnlab.pipeline"), pytest.raises(Stop):
        pipeline.train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "sized for a GPU" in r.getMessage()]
    assert len(warnings) == 1


def test_fewer_epochs_than_the_recipes_warm_up_shorten_it_in_proportion():
    from cnnlab.api import resolve_config

    # best on fashion-mnist: 190 epochs with a 2-epoch warm-up; 2 epochs keep 2/190 of it
    short = recipe_config("fashion-mnist", "best", "cpu", epochs=2)
    assert short.epochs == 2 and short.warmup_epochs == pytest.approx(2.0 * 2 / 190)
    cli = resolve_config({"recipe": "best", "data": "mnist", "epochs": 4, "device": "cpu"}, source="test")
    assert cli.warmup_epochs == pytest.approx(5.0 * 4 / 40)  # mnist best: 5 of 40 epochs
    # a warm-up that still fits, or one given explicitly, is kept
    assert recipe_config("fashion-mnist", "best", "cpu", epochs=10).warmup_epochs == 2.0
    assert recipe_config("mnist", "best", "cpu", epochs=4, warmup_epochs=1.0).warmup_epochs == 1.0
