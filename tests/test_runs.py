"""The run directory: names, markers, atomic JSON, safetensors weights, load_run and its errors."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab import runs
from cnnlab.errors import CheckpointError
from cnnlab.train.callbacks import CSVHistory
from cnnlab.train.engine import History


def test_new_run_dir_name_marker_and_uniqueness(tmp_path, monkeypatch):
    # both runs start in the same second (the clock held still: a real one may tick in between)
    stamp = runs.time.strftime("%Y%m%d-%H%M%S")
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: stamp)
    a = runs.new_run_dir(tmp_path / "runs", "seed-cnn", "fashion mnist")
    b = runs.new_run_dir(tmp_path / "runs", "seed-cnn", "fashion mnist")
    assert re.fullmatch(r"\d{8}-\d{6}-seed-cnn-fashion_mnist", a.name)
    assert b.name == a.name + "-2"  # the same second: a suffixed second folder
    assert (a / runs.INCOMPLETE).exists() and not runs.is_complete(a)
    with pytest.raises(CheckpointError, match="no metrics.json yet"):
        runs.mark_complete(a)
    runs.write_json(a / "metrics.json", {"accuracy": 0.9, "shape": (1, 2), "where": a})
    runs.mark_complete(a)
    assert runs.is_complete(a) and not (a / runs.INCOMPLETE).exists()
    assert runs.read_json(a / "metrics.json") == {"accuracy": 0.9, "shape": [1, 2], "where": str(a)}
    runs.mark_incomplete(a)  # a resumed run is unfinished again
    assert not runs.is_complete(a)


def test_read_json_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"no config.json in .*not a cnnlab run directory"):
        runs.read_config(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        runs.read_config(tmp_path)


class Tied(nn.Module):
    """An embedding-style tie: the output layer reuses the input layer's weight."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 4, bias=False)
        self.out = nn.Linear(4, 4, bias=False)
        self.out.weight = self.inp.weight

    def forward(self, x):
        return self.out(torch.relu(self.inp(x)))


def test_weights_round_trip_with_tied_and_channels_last_tensors(tmp_path):
    torch.manual_seed(0)
    tied = Tied()
    runs.save_weights(tmp_path, tied)
    fresh = Tied()
    runs.load_weights(fresh, tmp_path / runs.WEIGHTS)
    assert fresh.out.weight is fresh.inp.weight and torch.equal(fresh.inp.weight, tied.inp.weight)
    from safetensors import safe_open

    with safe_open(str(tmp_path / runs.WEIGHTS), "pt") as f:
        assert list(f.keys()) == ["inp.weight"]  # stored once

    conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    runs.save_weights(tmp_path, conv)
    other = nn.Conv2d(3, 8, 3)
    runs.load_weights(other, tmp_path / runs.WEIGHTS)
    assert torch.equal(other.weight, conv.weight)


def _sequential():
    model_mod = pytest.importorskip("cnnlab.model")
    layers = pytest.importorskip("cnnlab.layers")
    torch.manual_seed(0)
    return model_mod.Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.BatchNorm(),
                                 layers.MaxPool2D(2), layers.Flatten(), layers.Dropout(0.2), layers.Dense(3)],
                                input_shape=(1, 8, 8))


def _write_run(run_dir, model, spec, history=True, input_shape=(1, 8, 8), classes=("a", "b", "c")):
    runs.save_model_json(run_dir, spec, classes, input_shape, (0.5,), (0.25,))
    runs.write_json(run_dir / "config.json", {"data": "x", "seed": 3})
    runs.save_weights(run_dir, model)
    if history:
        rows = [{"epoch": 1, "train_loss": 1.5, "train_acc": 0.4, "val_loss": None, "val_acc": None,
                 "lr": 0.001, "seconds": 2.0}]
        CSVHistory(run_dir / "history.csv").on_epoch_end(type("T", (), {"history": History(rows)})(), {})


def test_load_run_round_trip_sequential_gives_same_outputs(tmp_path):
    model = _sequential()
    with torch.no_grad():  # non-default BN statistics, so the buffers' round trip shows in eval outputs
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.fill_(0.3)
    _write_run(tmp_path, model, {"sequential": model.to_config()})
    run = runs.load_run(tmp_path)
    x = torch.randn(5, 1, 8, 8)
    model.eval()
    assert not run.model.training and any(n.endswith("running_mean") for n, _ in run.model.named_buffers())
    assert torch.equal(run.model(x), model(x))
    assert (run.classes, run.input_shape, run.mean, run.std) == (["a", "b", "c"], (1, 8, 8), (0.5,), (0.25,))
    assert run.config == {"data": "x", "seed": 3} and run.metrics is None and not run.complete
    assert run.history == [{"epoch": 1, "train_loss": 1.5, "train_acc": 0.4, "val_loss": None, "val_acc": None,
                            "lr": 0.001, "seconds": 2.0}]


def test_load_run_round_trip_zoo(tmp_path):
    zoo = pytest.importorskip("cnnlab.zoo")
    torch.manual_seed(0)
    model = zoo.create("seed-cnn").eval()
    # model.json as a seed-cnn run has it: load_run checks it against the model
    _write_run(tmp_path, model, model.spec, history=False, input_shape=(1, 28, 28), classes="0123456789")
    run = runs.load_run(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(run.model(x), model(x)) and run.history == []


def test_load_run_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere does not exist: pass the folder"):
        runs.load_run(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a run directory"):
        runs.load_run(tmp_path / "file.txt")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"no model.json in .*run"):
        runs.load_run(run)
    model = _sequential()
    runs.save_model_json(run, {"sequential": model.to_config()}, ["a", "b", "c"], (1, 8, 8), (0.5,), (0.25,))
    with pytest.raises(CheckpointError, match=r"no model.safetensors in .*cnnlab train --resume"):
        runs.load_run(run)
    runs.save_weights(run, nn.Linear(3, 3))  # weights of some other model
    with pytest.raises(CheckpointError, match=r"do not fit the model described by model.json \(Missing key"):
        runs.load_run(run)
    (run / runs.WEIGHTS).write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"model.safetensors cannot be read"):
        runs.load_run(run)
    (run / "model.json").write_text(json.dumps({"spec": {"keras": 1}, "classes": ["a"], "input_shape": [1, 8, 8],
                                                "mean": [0], "std": [1]}))
    with pytest.raises(CheckpointError, match="neither"):
        runs.load_run(run)


def test_a_model_json_edited_away_from_its_weights_is_refused(tmp_path):
    model = _sequential()  # 1x8x8 in, three classes out
    _write_run(tmp_path, model, {"sequential": model.to_config()})
    good = json.loads((tmp_path / "model.json").read_text())
    runs.load_run(tmp_path)
    for edit, words in (({"classes": ["a", "b"]}, r"names 2 classes but the model gives \(3,\) outputs"),
                        ({"input_shape": [3, 8, 8]}, r"says the model takes 3x8x8 inputs, but it does not"),
                        ({"mean": [0.5, 0.5, 0.5]}, r"has 3 means and 1 stds for 1 input channels")):
        (tmp_path / "model.json").write_text(json.dumps({**good, **edit}))
        with pytest.raises(CheckpointError, match=words):
            runs.load_run(tmp_path)


def test_an_ensemble_folder_points_at_its_members(tmp_path):
    (tmp_path / "member-1").mkdir()
    with pytest.raises(CheckpointError, match=r"is an ensemble of runs, not one run: pass one of its members"):
        runs.load_run(tmp_path)


@pytest.mark.parametrize("edit, words", [
    ({"input_shape": "1x28x28"}, r"input_shape must be 3 positive whole numbers \(C, H, W\), or 1 \(F,\) for a model taking vectors, not \"1x28x28\""),
    ({"input_shape": [1, 8, 8.5]}, r"input_shape must be 3 positive whole numbers"),
    ({"mean": 0.5}, r"mean must be a list of numbers, one per channel, not 0.5"),
    ({"std": ["a"]}, r"std must be a list of positive numbers, one per channel, not \[\"a\"\]"),
    ({"std": [0.0]}, r"std must be a list of positive numbers"),  # predict would print nan
    ({"data_size": [28]}, r"data_size must be 2 positive whole numbers \(H, W\), not \[28\]"),
    ({"classes": "abc"}, r"classes must be a list of class names"),
    ({"spec": "seed-cnn"}, r"spec must be a JSON object"),
])
def test_a_hand_edited_model_json_names_the_field(tmp_path, edit, words):
    model = _sequential()
    _write_run(tmp_path, model, {"sequential": model.to_config()})
    good = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**good, **edit}))
    with pytest.raises(CheckpointError, match=rf"model.json {words}.*: the file was edited or damaged; restore it"):
        runs.load_run(tmp_path)
    (tmp_path / "model.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"model.json is not a JSON object"):
        runs.load_run(tmp_path)


def test_a_damaged_history_csv_is_a_checkpoint_error_read_only_when_asked_for(tmp_path):
    model = _sequential()
    _write_run(tmp_path, model, {"sequential": model.to_config()})
    lines = (tmp_path / "history.csv").read_text().splitlines()
    for bad in ("1,abc,0.4,,,0.001,2.0", "1,1.5", "1,1.5,0.4,,,0.001,2.0,9"):
        (tmp_path / "history.csv").write_text("\n".join([lines[0], lines[1], bad]) + "\n")
        run = runs.load_run(tmp_path)  # the model loads: predicting needs no history
        with pytest.raises(CheckpointError, match=r"history.csv, line 3, is not a row of numbers under the header"):
            run.history


def test_metrics_json_that_is_not_an_object_is_a_checkpoint_error(tmp_path):
    model = _sequential()
    _write_run(tmp_path, model, {"sequential": model.to_config()})
    (tmp_path / "metrics.json").write_text("[]")
    with pytest.raises(CheckpointError, match=r"metrics.json is not a JSON object of figures .*cnnlab evaluate"):
        runs.load_run(tmp_path)
    assert runs.read_metrics(tmp_path / "nowhere") is None


def test_one_layer_used_twice_is_tied_again_after_loading(tmp_path):
    model_mod = pytest.importorskip("cnnlab.model")
    layers = pytest.importorskip("cnnlab.layers")
    torch.manual_seed(0)
    dense = layers.Dense(4, activation="relu")
    model = model_mod.Sequential([layers.Flatten(), dense, dense, layers.Dense(3)], input_shape=(1, 2, 2))
    model.save(tmp_path, classes=["a", "b", "c"])
    back = runs.load_model(tmp_path)
    assert back[1].linear.weight is back[2].linear.weight and back[1].linear.bias is back[2].linear.bias
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 1, 2, 2)
    assert torch.equal(back(x), model.eval()(x))
