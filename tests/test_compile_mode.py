"""compile_mode: torch.compile's modes from TrainConfig, and the step marks its CUDA graphs need."""

from __future__ import annotations

import pytest
import torch

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab import zoo
from cnnlab.bench.session import accuracy_on_test, train_in_memory
from cnnlab.data import ImageDataset, TensorBatches, load_dataset
from cnnlab.errors import ConfigError
from cnnlab.pipeline import make_trainer
from cnnlab.train.config import TrainConfig


@pytest.fixture(scope="module")
def small():
    mini = load_dataset("fashion-mnist-mini")
    return ImageDataset(mini.name, mini.classes, mini.x_train[:128], mini.y_train[:128], mini.x_test[:64],
                        mini.y_test[:64])


def test_compile_mode_is_checked():
    with pytest.raises(ConfigError, match="compile_mode 'reduce-overhead' needs compile on: set compile: true"):
        TrainConfig(compile_mode="reduce-overhead")
    with pytest.raises(ConfigError, match="unknown compile mode 'reduce_overhead': did you mean 'reduce-overhead'"):
        TrainConfig(compile=True, compile_mode="reduce_overhead")
    with pytest.raises(ConfigError, match="cuda_graph and compile cannot be combined"):
        TrainConfig(compile=True, compile_mode="reduce-overhead", cuda_graph=True)
    assert TrainConfig(compile=True, compile_mode="max-autotune").compile_mode == "max-autotune"


@pytest.mark.parametrize("mode,marks", [("default", False), ("max-autotune-no-cudagraphs", False),
                                        ("reduce-overhead", True), ("max-autotune", True)])
def test_the_trainer_marks_steps_for_the_modes_that_record_cuda_graphs(small, mode, marks):
    cfg = TrainConfig(model="seed-cnn", batch_size=32, compile=True, compile_mode=mode)
    model = zoo.create("seed-cnn")
    batches = TensorBatches(small.x_train, small.y_train, 32, mean=small.mean, std=small.std)
    trainer = make_trainer(cfg, model, batches)
    assert trainer.mark_graph_steps is marks
    assert trainer.model is not model and trainer.model._orig_mod is model  # the compiled wrapper (lazy)


def test_marked_steps_call_cudagraph_mark_step_begin_before_each_forward(small, monkeypatch):
    """Before every training step's and every evaluation batch's forward pass, and never without the flag."""
    from cnnlab.train.engine import Trainer

    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    batches = TensorBatches(small.x_train, small.y_train, 32, mean=small.mean, std=small.std)
    test = TensorBatches(small.x_test, small.y_test, 32, shuffle=False, mean=small.mean, std=small.std)
    for flag, expected in ((False, 0), (True, 4 + 2)):  # 128 / 32 steps, then 64 / 32 evaluation batches
        calls.clear()
        model = zoo.create("seed-cnn")
        trainer = Trainer(model, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.01),
                          train_batches=batches, mark_graph_steps=flag)
        trainer.fit(1)
        trainer.evaluate(test)
        assert len(calls) == expected, flag


def test_a_reduce_overhead_compiled_model_trains(small):
    """The whole path with compile_mode reduce-overhead (on the CPU inductor records no CUDA graphs,
    so this checks the wiring and that training with the marks is sound, not the graphs)."""
    cfg = TrainConfig(model="seed-cnn", epochs=1, batch_size=64, optimizer="sgd", lr=0.05, val_split=0.0,
                      compile=True, compile_mode="reduce-overhead")
    session = train_in_memory(cfg, small, "cpu")
    assert len(session.epoch_seconds) == 1
    assert all(torch.isfinite(p).all() for p in session.model.parameters())


def test_compiled_training_matches_eager_accuracy_within_noise():
    """Same seed, data order and init; only torch.compile differs (reduce-overhead, the GPU candidate).
    1,000 test images give a binomial standard error of ~1.3 points at 80%: 4 points is 3 sigma."""
    mini = load_dataset("fashion-mnist-mini")
    data = ImageDataset(mini.name, mini.classes, mini.x_train[:3000], mini.y_train[:3000], mini.x_test[:1000],
                        mini.y_test[:1000])
    accs = {}
    for compile_on in (False, True):
        cfg = TrainConfig(model="seed-cnn", epochs=2, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9,
                          val_split=0.0, compile=compile_on,
                          compile_mode="reduce-overhead" if compile_on else "default")
        session = train_in_memory(cfg, data, "cpu")
        accs[compile_on] = accuracy_on_test(session.model, cfg, data, torch.device("cpu"))
    assert accs[False] > 0.7, accs  # it learned: the comparison means something
    assert abs(accs[True] - accs[False]) <= 0.04, accs
