"""The `cnnlab` command end to end on the embedded Fashion-MNIST subset (issue 2's spine)."""

from __future__ import annotations

import csv
import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from cnnlab.cli import main

RUN_FILES = ("config.json", "model.json", "model.safetensors", "checkpoint.pt", "history.csv",
             "metrics.json", "curves.png", "report.html")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def only_run(out_dir: Path) -> Path:
    runs = [p for p in out_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One short seed-cnn run on the mini set, shared by the tests that use a finished run."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["--quiet", "train", "--epochs", "2", "--out", str(out)])
    assert code == 0
    return only_run(out)


def test_train_writes_a_complete_run_directory(trained_run):
    for name in RUN_FILES:
        assert (trained_run / name).is_file(), name
    assert not (trained_run / "run.incomplete").exists()
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "seed-cnn" and config["data"] == "fashion-mnist-mini"
    assert config["torch_version"] and config["cnnlab_version"] and config["seed"] == 0
    rows = list(csv.DictReader((trained_run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["n_test"] == 1000
    assert 0.6 < metrics["test_accuracy"] <= 1.0  # 2 epochs of the lecture CNN on 5,400 images
    assert (trained_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = load_file(str(trained_run / "model.safetensors"))
    assert any(k.endswith("weight") for k in weights)


def test_evaluate_prints_the_metrics_it_writes(trained_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", str(trained_run))
    assert code == 0
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in out
    assert sum(map(sum, metrics["confusion_matrix"])) == 1000
    assert (trained_run / "confusion.png").is_file() and (trained_run / "top_losses.png").is_file()


def test_predict_any_size_and_mode(trained_run, tmp_path, capsys):
    from cnnlab.data import load_dataset

    data = load_dataset("fashion-mnist-mini")
    sneaker = data.x_test[data.y_test == 7][0, 0].numpy()  # (28, 28) uint8
    path = tmp_path / "big-rgb-sneaker.png"
    Image.fromarray(sneaker).convert("RGB").resize((96, 96)).save(path)
    jpeg = tmp_path / "trouser.jpg"
    Image.fromarray(data.x_test[data.y_test == 1][0, 0].numpy()).save(jpeg)
    code, out, _ = run_cli(capsys, "predict", str(trained_run), str(path), str(jpeg))
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(str(path)) and lines[0].count(" 0.") + lines[0].count(" 1.0") == 3
    assert "Trouser" in lines[1].split(":")[1].split()[0]  # a trouser is the easiest class


def _error_line(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_model_is_one_sentence_and_no_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "resnet19", "--out", str(tmp_path))
    assert code == 2
    assert "resnet18" in _error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_malformed_idx_is_one_sentence_and_no_run(tmp_path, capsys):
    data = tmp_path / "fm"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 7))
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "train", "--data", "fashion-mnist", "--data-dir", str(data),
                           "--out", str(out))
    assert code == 2
    line = _error_line(err)
    assert "train-images-idx3-ubyte.gz" in line or "t10k" in line
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_dataset_offline_says_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("CNNLAB_MIRROR", "http://127.0.0.1:9")  # the discard port: refused
    code, _, err = run_cli(capsys, "train", "--data", "kmnist", "--out", str(tmp_path / "runs"))
    assert code == 2
    line = _error_line(err)
    assert str(tmp_path / "cache") in line and "/usr/share/datasets/kmnist" in line
    assert not (tmp_path / "runs").exists()


def test_a_download_failing_midway_ends_its_bar_before_the_error(tmp_path, capsys, monkeypatch):
    from _data_helpers import serve, write_idx_set

    write_idx_set(tmp_path / "srv" / "mnist", n_train=500, side=28)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    with serve(tmp_path / "srv", drop_mid_body=True) as url:
        monkeypatch.setenv("CNNLAB_MIRROR", url)
        code = main(["train", "--data", "mnist", "--out", str(tmp_path / "runs")])  # not --quiet
    err = capsys.readouterr().err
    assert code == 2 and "downloading mnist" in err  # the bar was drawn
    # what a terminal shows of the error's line: the text after its last carriage return
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n") if "error:" in line]
    assert len(shown) == 1 and shown[0].startswith("error: mnist was not found"), err
    assert not (tmp_path / "runs").exists()


def _png_tree(root: Path, classes: dict[str, int], size=(20, 20)) -> None:
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            img = rng.integers(0, 60, size, dtype=np.uint8)
            img[k * 5:(k + 1) * 5] = 255  # each class has a bright band at its own height
            Image.fromarray(img).save(root / name / f"{i}.png")


def test_folder_dataset_trains(tmp_path, capsys):
    _png_tree(tmp_path / "imgs", {"low": 30, "mid": 30, "high": 30})
    code, out, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'imgs'}", "--epochs", "3",
                             "--batch-size", "16", "--out", str(tmp_path / "runs"))
    assert code == 0, err
    run = only_run(tmp_path / "runs")
    model = json.loads((run / "model.json").read_text())
    assert model["classes"] == ["high", "low", "mid"]
    assert json.loads((run / "metrics.json").read_text())["n_test"] == 18  # 20% of each class


def test_evaluate_on_other_data_keeps_the_runs_own_metrics_and_checks_class_names(
        tmp_path, capsys, monkeypatch):
    _png_tree(tmp_path / "a", {"cat": 10, "dog": 10})
    _png_tree(tmp_path / "b", {"cat": 10, "dog": 10})
    _png_tree(tmp_path / "c", {"emu": 10, "fox": 10})
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "train", "--data", "folder:a", "--epochs", "1", "--out", "runs")
    assert code == 0, err
    run = only_run(tmp_path / "runs")
    # the relative folder is kept absolute: evaluate, report and --resume work from anywhere
    assert json.loads((run / "config.json").read_text())["data"] == f"folder:{tmp_path / 'a'}"
    own = (run / "metrics.json").read_text()
    code, out, err = run_cli(capsys, "evaluate", str(run), "--data", "folder:b")
    assert code == 0, err
    assert f"pictures and metrics.json in {run / 'evaluate' / 'folder-b'}" in out
    assert (run / "metrics.json").read_text() == own  # the run's own test metrics are kept
    other = json.loads((run / "evaluate" / "folder-b" / "metrics.json").read_text())
    assert other["data"] == f"folder:{tmp_path / 'b'}" and other["n_test"] == 4
    assert (run / "evaluate" / "folder-b" / "confusion.png").is_file()
    code, _, err = run_cli(capsys, "evaluate", str(run), "--data", "folder:c")
    assert code == 2
    assert "folder:c has classes emu, fox but the run's model was trained on cat, dog" in _error_line(err)
    monkeypatch.chdir(tmp_path / "c")  # a folder holding no a/: the run still finds its data
    code, out, err = run_cli(capsys, "evaluate", str(run))
    assert code == 0 and f"pictures and metrics.json in {run}\n" in out, err


def test_splits_that_would_be_empty_are_refused_before_training(tmp_path, capsys):
    _png_tree(tmp_path / "few", {"cat": 2, "dog": 2})  # a fifth of 2, rounded: no test image
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'few'}", "--out",
                           str(tmp_path / "runs"))
    assert code == 2 and "few has no test images to evaluate on" in _error_line(err)
    _png_tree(tmp_path / "ten", {"cat": 10, "dog": 10})  # 8 training images a class
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'ten'}", "--val-split",
                           "0.05", "--out", str(tmp_path / "runs"))
    assert code == 2
    assert ("--val-split 0.05 holds out no images: ten's classes have at most 8 training images "
            "and round(8 x 0.05) = 0") in _error_line(err)
    assert not (tmp_path / "runs").exists()


def test_a_channel_that_never_varies_trains(tmp_path, capsys):
    # RGB images whose blue channel is always 0: its std is 0, floored at one grey level
    rng = np.random.default_rng(0)
    for k, name in enumerate(("left", "right")):
        (tmp_path / "rg" / name).mkdir(parents=True)
        for i in range(10):
            img = np.zeros((12, 12, 3), np.uint8)
            img[..., :2] = rng.integers(0, 60, (12, 12, 2))
            img[:, k * 6:(k + 1) * 6, 0] = 255
            Image.fromarray(img, "RGB").save(tmp_path / "rg" / name / f"{i}.png")
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'rg'}", "--epochs", "2",
                           "--batch-size", "8", "--out", str(tmp_path / "runs"))
    assert code == 0, err
    model = json.loads((only_run(tmp_path / "runs") / "model.json").read_text())
    assert model["std"][2] == pytest.approx(1 / 255) and model["mean"][2] == 0.0


def test_folder_with_empty_class_and_non_image(tmp_path, capsys):
    _png_tree(tmp_path / "a", {"cat": 3, "dog": 3})
    (tmp_path / "a" / "bird").mkdir()
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'a'}", "--out", str(tmp_path / "r"))
    assert code == 2 and "bird" in _error_line(err)
    _png_tree(tmp_path / "b", {"cat": 3, "dog": 3})
    (tmp_path / "b" / "dog" / "notes.png").write_text("not an image")
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'b'}", "--out", str(tmp_path / "r"))
    assert code == 2 and "notes.png" in _error_line(err)
    assert not (tmp_path / "r").exists()


def test_huge_learning_rate_stops_in_the_first_epoch(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--lr", "1e6", "--epochs", "3", "--out", str(tmp_path))
    assert code == 2
    line = _error_line(err)
    assert "epoch 1" in line and "learning rate" in line
    # no epoch finished, so no checkpoint: the run directory would hold nothing to resume
    assert f"no epoch had finished, so {tmp_path}" in line and "was removed" in line
    assert list(tmp_path.iterdir()) == []


def test_console_script_exit_code_and_debug_traceback(tmp_path):
    exe = Path(sys.executable).with_name("cnnlab")
    plain = subprocess.run([str(exe), "train", "--model", "nope", "--out", str(tmp_path)],
                           capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stderr.startswith("error: ") and "Traceback" not in plain.stderr
    for argv in (["--debug", "train"], ["train", "--quiet", "--debug"]):  # before or after the subcommand
        debug = subprocess.run([str(exe), *argv, "--model", "nope", "--out", str(tmp_path)],
                               capture_output=True, text=True)
        assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_ctrl_c_exits_130_with_the_resume_hint(tmp_path):
    exe = Path(sys.executable).with_name("cnnlab")
    proc = subprocess.Popen([str(exe), "train", "--epochs", "50", "--batch-size", "32", "--out", str(tmp_path)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in proc.stderr:  # plain mode: one line per epoch
            lines.append(line)
            if line.startswith("epoch 1/50"):
                proc.send_signal(signal.SIGINT)
                break
        err = "".join(lines) + proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err  # as shells report a Ctrl-C, not the bad-input 2
    run = only_run(tmp_path)
    assert f"interrupted: training interrupted at epoch 2" in err and f"--resume {run}`" in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    exe = Path(sys.executable).with_name("cnnlab")
    proc = subprocess.Popen([str(exe), "summary", "resnet152", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err, err


def test_numbers_out_of_range_are_usage_errors(capsys, trained_run):
    for argv in (["predict", str(trained_run), "x.png", "--top-k", "0"], ["summary", "seed-cnn", "--classes", "0"],
                 ["explain", "conv", "--stride", "0"], ["explain", "pool", "--pool-size", "0"],
                 ["bench", "--threads", "0"], ["report", str(trained_run), "--examples", "-3"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
        assert "is below" in capsys.readouterr().err, argv


def test_summary_of_a_run_keeps_its_trained_input(trained_run, capsys):
    code, out, _ = run_cli(capsys, "summary", str(trained_run), "--input", "1x28x28")  # its own: fine
    assert code == 0 and "Total params" in out
    code, _, err = run_cli(capsys, "summary", str(trained_run), "--input", "1x56x56")
    assert code == 2
    assert "holds a model trained on 1x28x28 inputs, whose weights fix that size" in _error_line(err)


def test_resume_takes_only_epochs(trained_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--resume", str(trained_run), "--lr", "5", "--model", "lenet5")
    assert code == 2
    assert "--resume continues a run with its own settings, so --model, --lr cannot change it" in _error_line(err)
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "nosuch"))
    assert code == 2 and f"{tmp_path / 'nosuch'} does not exist" in _error_line(err)


def test_models_summary_and_explain(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "seed-cnn" in out and "resnet50" in out
    code, out, _ = run_cli(capsys, "summary", "seed-cnn")
    assert code == 0 and "(28 + 2*1 - 3)/1 + 1 = 28" in out
    code, out, _ = run_cli(capsys, "summary", "resnet50", "--input", "3x224x224", "--json")
    assert code == 0 and json.loads(out)
    code, out, _ = run_cli(capsys, "explain", "conv")
    assert code == 0 and "40" in out and "25" in out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_full_fashion_mnist_ten_epochs_reaches_91_percent(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--data", "fashion-mnist", "--epochs", "10", "--out", str(tmp_path))
    assert code == 0, err
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.91


def test_lenet5_trains_on_28px_data_padded_to_its_32px_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "lenet5", "--epochs", "1", "--out", str(tmp_path))
    assert code == 0, err
    model = json.loads((only_run(tmp_path) / "model.json").read_text())
    assert model["input_shape"] == [1, 32, 32]


def test_config_file_with_flags_over_it(tmp_path, capsys):
    settings = tmp_path / "run.yaml"
    settings.write_text("epochs: 1\nbatch_size: 256\nlr: 3e-3\noptimizer: adamw\nschedule: cosine\n")
    code, _, err = run_cli(capsys, "train", "--config", str(settings), "--lr", "2e-3", "--out", str(tmp_path / "r"))
    assert code == 0, err
    saved = json.loads((only_run(tmp_path / "r") / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["optimizer"], saved["schedule"]) == (1, 256, "adamw", "cosine")
    assert saved["lr"] == 2e-3  # the flag wins over the file
    settings.write_text("epochs: 1\nlearning_rate: 0.005\n")  # Keras's name for lr, from the file
    code, _, err = run_cli(capsys, "train", "--config", str(settings), "--out", str(tmp_path / "keras"))
    assert code == 0, err
    assert json.loads((only_run(tmp_path / "keras") / "config.json").read_text())["lr"] == 0.005
    settings.write_text("epoch: 1\nlearning_rate: 0.1\n")
    code, _, err = run_cli(capsys, "train", "--config", str(settings), "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown setting 'epoch'" in _error_line(err) and "did you mean 'epochs'" in err
    assert not (tmp_path / "bad").exists()


def test_summary_of_a_model_file(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text("input_shape: [1, 28, 28]\nlayers:\n  - Conv2D: {filters: 4, kernel_size: 5}\n"
                    "  - Flatten\n  - Dense: {units: 10}\n")
    code, out, _ = run_cli(capsys, "summary", str(path))
    assert code == 0 and "(28 + 2*0 - 5)/1 + 1 = 24" in out and "Total params: 23,154" in out


def test_folder_of_real_fashion_images_learns(tmp_path, capsys):
    """Fashion-MNIST images saved as PNG files, one folder per class: a real image tree."""
    from cnnlab.data import load_dataset

    data = load_dataset("fashion-mnist-mini")
    for label in (1, 5, 8):  # trouser, sandal, bag: clearly different shapes
        name = data.classes[label].replace("/", "-")
        for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            folder = tmp_path / "tree" / split / name
            folder.mkdir(parents=True)
            for i, image in enumerate(x[y == label][:60 if split == "train" else 30]):
                Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'tree'}", "--epochs", "5",
                           "--batch-size", "32", "--val-split", "0", "--out", str(tmp_path / "runs"))
    assert code == 0, err
    metrics = json.loads((only_run(tmp_path / "runs") / "metrics.json").read_text())
    assert metrics["classes"] == ["Bag", "Sandal", "Trouser"] and metrics["n_test"] == 90
    assert metrics["test_accuracy"] >= 0.8  # chance is 0.33


def test_shape_warning_is_one_line_and_shape_error_names_the_file_line(tmp_path):
    path = tmp_path / "five.yaml"
    layers = "".join("  - Conv2D: {filters: 8, kernel_size: 3}\n  - MaxPool2D: {}\n" for _ in range(5))
    path.write_text("input_shape: [1, 28, 28]\nlayers:\n" + layers + "  - Flatten\n  - Dense: {units: 10}\n")
    done = subprocess.run([str(Path(sys.executable).with_name("cnnlab")), "summary", str(path)],
                          capture_output=True, text=True)  # a real process: pytest would catch the warnings
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith(f"error: {path}, line 9: layer 6 (Conv2D) gets 8x1x1")
    assert all(line.startswith(("warning: ", "error: ")) for line in lines), lines
    assert any("never reaches the last 1 row" in line for line in lines)


def test_a_model_file_with_the_wrong_number_of_outputs_is_named(tmp_path, capsys):
    path = tmp_path / "five.yaml"
    path.write_text("input_shape: [1, 28, 28]\nlayers:\n  - Flatten\n  - Dense: {units: 5}\n")
    code, _, err = run_cli(capsys, "train", "--model", str(path), "--out", str(tmp_path / "runs"))
    assert code == 2
    assert _error_line(err).startswith(f"error: {path}: layer 1 (Dense) gives 5 outputs but the dataset "
                                       "has 10 classes")


def test_lr_find_prints_the_suggestion_and_the_notes(tmp_path, capsys):
    png = tmp_path / "lr.png"
    code, out, err = run_cli(capsys, "lr-find", "--optimizer", "muon", "--lr", "0.05", "--plot", str(png))
    assert code == 0, err
    assert "suggested learning rate" in out or "no learning rate to suggest" in out
    assert "note: the optimizer's groups moved together" in out  # Muon's filters keep muon_lr / lr
    assert png.stat().st_size > 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_offers_only_the_settings_it_uses(capsys):
    from cnnlab.train.config import LR_FIND_SETTINGS

    with pytest.raises(SystemExit) as info:  # epochs play no part in a range test
        main(["lr-find", "--epochs", "3"])
    assert info.value.code == 2 and "unrecognized arguments: --epochs 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lr-find", "--help"])
    shown = capsys.readouterr().out
    assert all(f"--{name.replace('_', '-')}" in shown for name in LR_FIND_SETTINGS)
    assert "--schedule" not in shown and "--tensorboard" not in shown


def test_lr_find_without_a_suggestion_says_so(tmp_path, capsys, monkeypatch):
    """Too few usable points (the loss blew up at once): one line saying so and the finder's note."""
    import cnnlab.ensemble_run as ensemble_run
    from cnnlab.train.lr_find import LRFindResult

    blown = LRFindResult([1e-7], [2.3], [2.3], None, "loss became nan", ["only 1 usable points: lower start_lr"])
    monkeypatch.setattr(ensemble_run, "lr_find", lambda cfg, out: (blown, Path(out)))
    code, out, _ = run_cli(capsys, "lr-find", "--plot", str(tmp_path / "lr.png"))
    assert code == 0
    assert "no learning rate to suggest" in out and "note: only 1 usable points" in out


def test_report_takes_top_losses_from_the_runs_own_test_set_and_survives_a_moved_dataset(
        tmp_path, capsys, caplog):
    import re

    _png_tree(tmp_path / "own", {"cat": 10, "dog": 10, "emu": 10})
    _png_tree(tmp_path / "other", {"cat": 3, "dog": 3, "emu": 3})  # fewer test images than own
    code, _, err = run_cli(capsys, "train", "--data", f"folder:{tmp_path / 'own'}", "--epochs", "1",
                           "--batch-size", "8", "--out", str(tmp_path / "runs"))
    assert code == 0, err
    run = only_run(tmp_path / "runs")

    def examples() -> int:
        return len(re.findall(r'class="example"', (run / "report.html").read_text()))

    for n in (0, 2):
        assert run_cli(capsys, "report", str(run), "--examples", str(n))[0] == 0
        assert examples() == n
    # examples from another set; the top losses (indices into the run's own test set) still work
    code, _, err = run_cli(capsys, "report", str(run), "--data", f"folder:{tmp_path / 'other'}")
    assert code == 0, err
    assert examples() == 3 and 'id="losses"' in (run / "report.html").read_text()
    (tmp_path / "own").rename(tmp_path / "moved")  # the run's dataset is gone
    with caplog.at_level("WARNING"):
        code, _, err = run_cli(capsys, "report", str(run))
    assert code == 0, err
    assert "the run's own dataset cannot be loaded" in caplog.text and examples() == 0


def test_inspect_refuses_before_writing_and_replaces_an_earlier_inspection(trained_run, tmp_path, capsys):
    image = tmp_path / "img.png"
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(image)
    out = tmp_path / "look"
    code, _, err = run_cli(capsys, "inspect", str(trained_run), str(image), "--class", "10", "--out", str(out))
    assert code == 2 and "class 10 is out of range: the model has 10 classes" in _error_line(err)
    assert not out.exists() or not any(out.iterdir())  # refused before any picture
    assert run_cli(capsys, "inspect", str(trained_run), str(image), "--out", str(out))[0] == 0
    everything = {p.name for p in out.iterdir()}
    code, _, err = run_cli(capsys, "inspect", str(trained_run), str(image), "--layer", "2", "--out", str(out))
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"features_2.png", "activations_2.png", "filters_2.png",
                                               "gradcam.png"} < everything | {"gradcam.png"}
    a_file = tmp_path / "notes.png"
    a_file.write_bytes(b"not a folder")
    code, _, err = run_cli(capsys, "inspect", str(trained_run), str(image), "--out", str(a_file))
    assert code == 2 and "it is a file" in _error_line(err) and a_file.read_bytes() == b"not a folder"


def test_explain_takes_a_matrix_starting_with_a_negative_number(capsys):
    # argparse reads '-1.5,2;...' after --input as an option unless cnnlab attaches it
    code, out, err = run_cli(capsys, "explain", "conv", "--input", "-1.5,2;4,-5", "--kernel", "-1,0;0,1")
    assert code == 0, err
    assert "-1.5*-1 + 2*0 + 4*0 + -5*1 = -3.5" in out


def test_explain_refuses_the_other_walk_throughs_options(capsys):
    code, _, err = run_cli(capsys, "explain", "pool", "--kernel", "1,1;1,1")
    assert code == 2 and "--kernel does not apply to `cnnlab explain pool`" in err
    code, _, err = run_cli(capsys, "explain", "conv", "--pool-size", "3", "--mode", "min")
    assert code == 2 and "--pool-size and --mode do not apply to `cnnlab explain conv`" in err
    code, out, _ = run_cli(capsys, "explain", "pool", "--mode", "avg")
    assert code == 0 and "3.5" in out  # mean of 1, 2, 5, 6: the defaults still apply


def test_summary_refuses_classes_for_a_model_file(capsys, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("input_shape: [1, 8, 8]\nlayers:\n  - Flatten\n  - Dense: {units: 4}\n")
    code, out, err = run_cli(capsys, "summary", str(path), "--classes", "3")
    assert code == 2 and "--classes is for zoo models" in err and out == ""
    code, out, _ = run_cli(capsys, "summary", str(path))
    assert code == 0 and "Dense" in out


def test_a_misspelt_flag_is_named_in_the_subcommands_usage_with_the_closest(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--optimiser", "adam"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "usage: cnnlab train" in err
    assert "unrecognized arguments: --optimiser adam (did you mean --optimizer?)" in err


def test_version_and_python_dash_m(capsys):
    from cnnlab import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"cnnlab {__version__}"
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "explain", "pool"], capture_output=True, text=True)
    assert proc.returncode == 0 and "pooled map 2x2" in proc.stdout


def test_summary_of_a_zoo_model_with_channels_last_input_says_so(capsys):
    from cnnlab.layers.shapes import ShapeWarning

    with pytest.warns(ShapeWarning, match=r"--input 224x224x3 reads as 224 channels.*did you mean \(3, 224, 224\)"):
        code, _, _ = run_cli(capsys, "summary", "resnet18", "--input", "224x224x3")
    assert code == 0


def test_config_syntax_error_names_the_line(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\nlr: [1\n")
    code, _, err = run_cli(capsys, "train", "--config", str(path), "--out", str(tmp_path))
    assert code == 2 and f"config file {path}, line 3, column 1 is not valid YAML" in err


def test_a_data_dir_that_does_not_exist_is_said(capsys, tmp_path, caplog):
    from cnnlab.data import load_dataset

    with caplog.at_level("WARNING", logger="cnnlab.data.sources"):
        try:
            load_dataset("fashion-mnist", tmp_path / "nowhere", download=False)
        except Exception:  # not installed here: the warning came first all the same
            pass
    assert f"the data folder {tmp_path / 'nowhere'} does not exist" in caplog.text
