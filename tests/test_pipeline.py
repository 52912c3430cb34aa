"""The training job through the Python API: exact resume, ensembles, model files, using a run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab import pipeline
from cnnlab.errors import CheckpointError
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import TrainingInterrupted

# A small slice of the work keeps these tests quick: 2 epochs of the lecture CNN on the mini set.
SMALL = dict(epochs=2, batch_size=256)


class CtrlCAfterEpoch:
    """Sends this process a real SIGINT at the end of one epoch, as a user pressing Ctrl-C would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_and_resumed_run_equals_the_straight_run(tmp_path):
    """Issue 5: 4 epochs straight == 2 epochs, Ctrl-C, --resume: bitwise identical weights on CPU."""
    cfg = TrainConfig(epochs=4, batch_size=256, out=str(tmp_path / "straight"), augment={"translate": 2},
                      schedule="cosine")
    straight = pipeline.train(cfg)
    cfg_cut = cfg.replace(out=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted, match="--resume"):
        pipeline.train(cfg_cut, callbacks=[CtrlCAfterEpoch(2)])
    (cut_dir,) = (tmp_path / "cut").iterdir()
    assert (cut_dir / "run.incomplete").exists() and not (cut_dir / "metrics.json").exists()
    resumed = pipeline.resume(cut_dir)
    a = load_file(str(straight.run_dir / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["epoch"] for r in resumed.history.rows] == [1, 2, 3, 4]
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]


def test_resume_without_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    with pytest.raises(CheckpointError, match="checkpoint"):
        pipeline.resume(run)
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        pipeline.resume(run)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json"]


def test_resuming_a_finished_run_changes_nothing_unless_asked_for_more_epochs(tmp_path, caplog):
    """A run stopped by early stopping is finished: --resume returns it as it is (no epoch trained,
    no file rewritten) and says how to train further; --epochs above what it trained continues it."""
    # no improvement counts unless val_loss falls by 100: it stops after epoch 2
    cfg = TrainConfig(epochs=30, batch_size=256, early_stopping_patience=1, min_delta=100.0, out=str(tmp_path))
    first = pipeline.train(cfg)
    assert len(first.history.rows) == 2
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.run_dir.iterdir() if p.is_file()}
    with caplog.at_level("WARNING", logger="cnnlab.pipeline"):
        again = pipeline.resume(first.run_dir)
    assert "already finished (2 epochs, stopped early at epoch 2 of 30)" in caplog.text
    assert "--epochs N with N above 2" in caplog.text
    assert again.metrics == first.metrics and len(again.history.rows) == 2
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.run_dir.iterdir() if p.is_file()} == files
    more = pipeline.resume(first.run_dir, epochs=3)
    assert [r["epoch"] for r in more.history.rows] == [1, 2, 3]
    assert json.loads((first.run_dir / "config.json").read_text())["epochs"] == 3


def test_same_seed_twice_gives_identical_weights(tmp_path):
    one = cnnlab.train_run(**SMALL, out=str(tmp_path / "a"), verbose=False)
    two = cnnlab.train_run(**SMALL, out=str(tmp_path / "b"), verbose=False)
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (one, two))
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((one.run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["deterministic"] is False


def test_training_with_flip_tta_but_no_flips_says_so(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="cnnlab.pipeline"):
        pipeline.train(TrainConfig(epochs=1, batch_size=256, tta="flip", out=str(tmp_path / "a")))
    assert "test-time augmentation 'flip' averages over mirror images" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="cnnlab.pipeline"):
        pipeline.train(TrainConfig(epochs=1, batch_size=256, tta="flip", augment={"flip": True},
                                   out=str(tmp_path / "b")))
    assert "mirror images" not in caplog.text


def test_python_api_uses_a_finished_run(tmp_path, caplog):
    result = cnnlab.train_run(**SMALL, out=str(tmp_path), verbose=False)
    run = cnnlab.load_run(result.run_dir)
    assert run.classes[0] == "T-shirt/top" and tuple(run.input_shape) == (1, 28, 28)
    with caplog.at_level("WARNING"):
        metrics = cnnlab.evaluate_run(result.run_dir)
        assert "trained without flips" not in caplog.text
        cnnlab.evaluate_run(result.run_dir, tta="flip")  # the run trained without flips: said once
        assert caplog.text.count("averages over mirror images, but this model trained without flips") == 1
    metrics = cnnlab.evaluate_run(result.run_dir)  # metrics.json as training left it
    assert metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    data = cnnlab.load_dataset("fashion-mnist-mini")
    from PIL import Image

    image = tmp_path / "bag.png"
    Image.fromarray(data.x_test[data.y_test == 8][0, 0].numpy()).save(image)
    ((path, top),) = cnnlab.predict_images(result.run_dir, [image])
    assert path == str(image) and len(top) == 3
    assert abs(sum(p for _, p in top)) <= 1.0 + 1e-6 and top[0][1] >= top[1][1] >= top[2][1]
    assert cnnlab.predict_images(result.run_dir, str(image)) == [(path, top)]  # one path, not its letters
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="at least one image"):
        cnnlab.predict_images(result.run_dir, [])


def test_model_file_trains_and_is_rebuilt_from_the_run(tmp_path):
    model_file = tmp_path / "tiny.yaml"
    model_file.write_text(
        "input_shape: [1, 28, 28]\n"
        "layers:\n"
        "  - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu}\n"
        "  - MaxPool2D: {pool_size: 2}\n"
        "  - Flatten\n"
        "  - Dense: {units: 10}\n")
    result = cnnlab.train_run(model=str(model_file), **SMALL, out=str(tmp_path / "runs"), verbose=False)
    spec = json.loads((result.run_dir / "model.json").read_text())
    assert "sequential" in json.dumps(spec)
    run = cnnlab.load_run(result.run_dir)
    assert run.model[0].conv.out_channels == 8


def test_ensemble_trains_members_and_reports_each(tmp_path, capsys):
    from cnnlab.cli import main

    assert main(["--quiet", "train", "--ensemble", "2", "--epochs", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "mean of members" in printed and "majority vote" in printed
    (root,) = tmp_path.iterdir()
    members = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert members == ["member-1", "member-2"]
    report = json.loads((root / "metrics.json").read_text())
    seeds = [json.loads((root / m / "config.json").read_text())["seed"] for m in members]
    assert seeds == [0, 1]
    assert report["n_test"] == 1000 and 0 < report["test_accuracy"] <= 1
    capsys.readouterr()
    assert main(["--quiet", "ensemble", str(root / "member-1"), str(root / "member-2")]) == 0
    table = capsys.readouterr().out
    assert "member-1" in table and "member-2" in table and "mean" in table.lower()


def test_cli_run_killed_at_random_moments_always_resumes(tmp_path):
    """SIGKILL `cnnlab train` at random moments (mid-epoch, mid-checkpoint, mid-finish); resume each time."""
    import random
    import subprocess
    import sys
    import time

    exe = str(Path(sys.executable).with_name("cnnlab"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([exe, "--quiet", "train", "--epochs", "4", "--batch-size", "512",
                             "--out", str(tmp_path)], env=env, stderr=subprocess.DEVNULL)
    rng = random.Random(0)
    kills = 0
    while True:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob("*/checkpoint.pt")):
            time.sleep(0.05)
        if proc.poll() is None:
            time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is not None:
            break  # finished before the kill landed
        proc.kill()
        proc.wait()
        kills += 1
        (run,) = tmp_path.iterdir()
        assert (run / "checkpoint.pt").exists()
        proc = subprocess.Popen([exe, "--quiet", "train", "--resume", str(run)], env=env,
                                stderr=subprocess.DEVNULL)
        if kills == 4:
            break
    assert proc.wait() == 0
    (run,) = tmp_path.iterdir()
    assert kills >= 2, kills
    assert (run / "metrics.json").exists() and not (run / "run.incomplete").exists()
    assert [r["epoch"] for r in cnnlab.load_run(run).history] == [1, 2, 3, 4]


def test_settings_refused_before_training_leave_no_run_directory(tmp_path):
    from cnnlab.errors import ConfigError

    # refused by the configuration itself, before anything is read or written
    with pytest.raises(ConfigError, match="unknown key: use flip, translate, cutout and padding"):
        TrainConfig(augment={"flp": True})
    with pytest.raises(ConfigError, match="'random' or 'alternating'"):
        TrainConfig(augment={"flip": "sometimes"})
    # refused once the model is built: seed-cnn's first convolution has 16 filters, whitening a
    # 3x3 stem over 1 channel needs 18; the fresh run directory goes again
    cfg = TrainConfig(epochs=1, whiten_stem=True, out=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="whiten_stem needs a first convolution with 2\\*C\\*k\\*k = 18 filters"):
        pipeline.train(cfg)
    assert list((tmp_path / "runs").iterdir()) == []


def test_image_files_are_converted_as_training_converted_the_dataset(tmp_path):
    # LeNet-5 takes 32x32 images: training zero-pads the 28x28 Fashion-MNIST ones; a 28x28 PNG of a
    # test image must reach the model padded the same way, not stretched to 32x32
    from PIL import Image

    from cnnlab.predict import model_input

    result = cnnlab.train_run(model="lenet5", data="fashion-mnist-mini", epochs=1, batch_size=256,
                              out=str(tmp_path), verbose=False)
    run = cnnlab.load_run(result.run_dir)
    assert run.data_size == (28, 28) and run.input_shape == (1, 32, 32)
    data = cnnlab.load_dataset("fashion-mnist-mini")
    image = tmp_path / "t0.png"
    Image.fromarray(data.x_test[0, 0].numpy()).save(image)
    padded = data.with_shape(1, (32, 32)).x_test[:1]
    assert torch.equal(model_input(run, image), padded[0])
    with torch.inference_mode():
        probs = torch.softmax(run.model((padded.float() / 255 - run.mean[0]) / run.std[0]), 1)[0]
    ((_, top),) = cnnlab.predict_images(result.run_dir, [image], top_k=10)
    assert [name for name, _ in top] == [run.classes[i] for i in probs.argsort(descending=True)]
    assert [p for _, p in top] == pytest.approx(probs.sort(descending=True).values.tolist(), abs=1e-6)


class CtrlCAtStep:
    """Sends a real SIGINT after step `step` of epoch `epoch` of the `member`-th fit (counted by
    on_train_begin), so an ensemble can be interrupted inside one member."""

    def __init__(self, epoch: int, step: int, member: int = 1):
        self.epoch, self.step, self.member, self.fits = epoch, step, member, 0

    def on_train_begin(self, trainer, logs=None):
        self.fits += 1

    def on_batch_end(self, trainer, logs=None):
        if self.fits == self.member and trainer.epoch + 1 == self.epoch and logs["batch"] == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_ensemble_resumes_to_the_straight_ensemble(tmp_path):
    cfg = TrainConfig(ensemble=3, epochs=2, batch_size=256, out=str(tmp_path / "straight"))
    straight = pipeline.train(cfg)
    with pytest.raises(TrainingInterrupted) as info:  # inside member 2's second epoch
        pipeline.train(cfg.replace(out=str(tmp_path / "cut")), callbacks=[CtrlCAtStep(2, 5, member=2)])
    (root,) = (tmp_path / "cut").iterdir()
    assert f"cnnlab train --resume {root}`" in str(info.value)  # the ensemble, not member-2
    assert not (root / "member-3").exists() and not (root / "metrics.json").exists()
    member_1 = (root / "member-1" / "model.safetensors").read_bytes()
    resumed = pipeline.resume(root)
    assert (root / "member-1" / "model.safetensors").read_bytes() == member_1  # kept as it was
    for m in ("member-1", "member-2", "member-3"):
        assert load_file(root / m / "model.safetensors").keys() == load_file(
            straight.run_dir / m / "model.safetensors").keys()
        for name, t in load_file(root / m / "model.safetensors").items():
            assert torch.equal(t, load_file(straight.run_dir / m / "model.safetensors")[name]), (m, name)
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]
    assert not (root / "run.incomplete").exists()
    again = pipeline.resume(root)  # finished: left as it is
    assert again.metrics == resumed.metrics


def test_resume_cannot_stop_before_the_epoch_it_began(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=256, out=str(tmp_path))
    with pytest.raises(TrainingInterrupted):
        pipeline.train(cfg, callbacks=[CtrlCAtStep(2, 5)])
    (run,) = tmp_path.iterdir()
    with pytest.raises(cnnlab.errors.ConfigError, match=r"was interrupted inside epoch 2 \(step 5\), so it "
                                                        r"cannot stop at epoch 1; pass --epochs 2 or more"):
        pipeline.resume(run, epochs=1)
    assert pipeline.resume(run, epochs=2).history.rows[-1]["epoch"] == 2


def test_a_checkpoint_of_another_model_is_refused_in_a_sentence(tmp_path):
    seed = pipeline.train(TrainConfig(epochs=1, batch_size=256, out=str(tmp_path / "a")))
    lenet = pipeline.train(TrainConfig(model="lenet5", epochs=1, batch_size=256, out=str(tmp_path / "b")))
    (seed.run_dir / "checkpoint.pt").write_bytes((lenet.run_dir / "checkpoint.pt").read_bytes())
    (seed.run_dir / "run.incomplete").write_text("")
    with pytest.raises(CheckpointError, match="the checkpoint's weights do not fit this model"):
        pipeline.resume(seed.run_dir, epochs=2)


def test_a_onecycle_run_is_not_extended_and_is_left_untouched(tmp_path):
    run = pipeline.train(TrainConfig(epochs=2, batch_size=256, schedule="onecycle", out=str(tmp_path))).run_dir
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(cnnlab.errors.ConfigError, match="onecycle schedule, which is fixed to its 2 epochs"):
        pipeline.resume(run, epochs=3)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # no file changed


def test_ctrl_c_in_the_epoch_early_stopping_ends_lets_the_run_finish(tmp_path):
    cfg = TrainConfig(epochs=12, batch_size=256, lr=0.03, optimizer="sgd", momentum=0.99,
                      early_stopping_patience=1, restore_best=False, out=str(tmp_path / "straight"))
    straight = pipeline.train(cfg)
    stop = len(straight.history.rows)
    assert stop < 12, "early stopping did not fire: the test needs it"

    class CtrlCInLastEpoch:
        order = 50  # after EarlyStopping has decided

        def on_epoch_end(self, trainer, logs):
            if logs["epoch"] == stop:
                os.kill(os.getpid(), signal.SIGINT)

    cut = pipeline.train(cfg.replace(out=str(tmp_path / "cut")), callbacks=[CtrlCInLastEpoch()])
    assert len(cut.history.rows) == stop and cut.metrics["test_accuracy"] == straight.metrics["test_accuracy"]
    for name, t in load_file(cut.run_dir / "model.safetensors").items():
        assert torch.equal(t, load_file(straight.run_dir / "model.safetensors")[name]), name


def test_min_delta_counts_for_reduce_on_plateau_as_for_early_stopping(tmp_path):
    from cnnlab.train import callbacks as cb

    cfg = TrainConfig(epochs=1, batch_size=256, reduce_on_plateau=True, early_stopping_patience=2,
                      min_delta=0.05)
    p = pipeline.prepare(cfg)
    trainer = pipeline._trainer(cfg, p, tmp_path, [], torch.device("cpu"))
    watchers = [c for c in trainer.callbacks if isinstance(c, (cb.EarlyStopping, cb.ReduceLROnPlateau))]
    assert len(watchers) == 2 and all(c.min_delta == 0.05 for c in watchers)


def test_evaluate_and_ensemble_keep_the_runs_test_time_augmentation(tmp_path):
    # a run trained with tta 'flip' wrote its flip-TTA figures; re-evaluating it, or combining
    # it, must use that evaluation too, not overwrite it with plain figures
    cfg = TrainConfig(**SMALL, augment={"flip": True}, tta="flip", ensemble=2, out=str(tmp_path))
    result = pipeline.train(cfg)
    member = result.run_dir / "member-1"
    trained = json.loads((member / "metrics.json").read_text())
    assert trained["tta"] == "flip"
    again = cnnlab.evaluate_run(member)
    assert again["tta"] == "flip" and again["test_accuracy"] == trained["test_accuracy"]
    plain = cnnlab.evaluate_run(member, tta="none")
    assert plain["tta"] is None and plain["test_loss"] != trained["test_loss"]
    report = json.loads((result.run_dir / "metrics.json").read_text())
    assert report["member_tta"] == ["flip", "flip"]
    assert report["member_results"][0] == {"name": "member-1", "accuracy": trained["test_accuracy"]}


def test_flips_on_digits_are_warned_about(tmp_path, caplog):
    from cnnlab.data.augment import flip_label_warning

    assert "mirrored 2 is no digit" in flip_label_warning("mnist", {"flip": True}, None)
    assert "tta 'flip'" in flip_label_warning("kmnist", None, "flip")
    assert flip_label_warning("fashion-mnist", {"flip": True}, "flip") is None
    assert flip_label_warning("mnist", {"translate": 2}, None) is None
    assert flip_label_warning("folder:/x", {"flip": True}, None) is None  # a user's photos: their call


def test_a_finished_run_given_more_epochs_by_hand_is_not_said_to_have_stopped_early(tmp_path, caplog):
    first = pipeline.train(TrainConfig(epochs=1, batch_size=256, out=str(tmp_path)))
    path = first.run_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "epochs": 3}))
    with caplog.at_level("WARNING", logger="cnnlab.pipeline"):
        pipeline.resume(first.run_dir)
    assert "already finished (1 epochs, config.json now says 3 epochs)" in caplog.text
    assert "stopped early" not in caplog.text


def test_resuming_a_finished_run_whose_metrics_json_is_not_an_object_says_so(tmp_path):
    first = pipeline.train(TrainConfig(epochs=1, batch_size=256, out=str(tmp_path)))
    (first.run_dir / "metrics.json").write_text("[]")
    with pytest.raises(CheckpointError, match="is not a JSON object of figures"):
        pipeline.resume(first.run_dir)


def _flat_folder(root: Path, per_class: int = 20) -> Path:
    """Real Fashion-MNIST images in three class folders, with no train/ or test/: cnnlab splits it."""
    from PIL import Image

    data = cnnlab.load_dataset("fashion-mnist-mini")
    for label in (0, 1, 7):
        folder = root / data.classes[label].replace("/", "-")
        folder.mkdir(parents=True)
        for i, image in enumerate(data.x_train[data.y_train == label][:per_class]):
            Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    return root


def test_an_ensembles_members_share_a_folders_test_split(tmp_path):
    folder = _flat_folder(tmp_path / "flat")
    result = pipeline.train(TrainConfig(data=f"folder:{folder}", epochs=1, batch_size=16, seed=3, ensemble=2,
                                        val_split=0.0, out=str(tmp_path / "runs")))
    members = [json.loads((result.run_dir / m / "config.json").read_text()) for m in ("member-1", "member-2")]
    assert [m["seed"] for m in members] == [3, 4] and [m["split_seed"] for m in members] == [3, 3]
    own = json.loads((result.run_dir / "member-2" / "metrics.json").read_text())["test_accuracy"]
    assert result.metrics["member_results"][1]["accuracy"] == own  # scored on the test set it was tested on
    # two runs split with different seeds cannot be combined: one's test images are the other's training
    one, two = (pipeline.train(TrainConfig(data=f"folder:{folder}", epochs=1, batch_size=16, seed=s, val_split=0.0,
                                           out=str(tmp_path / f"single{s}"))) for s in (0, 1))
    from cnnlab.ensemble_run import combine_runs
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"different seeds \(0, 1\)"):
        combine_runs([one.run_dir, two.run_dir])


def test_a_model_save_folder_pads_an_image_file_as_evaluate_data_pads_the_dataset(tmp_path):
    # a model.save folder keeps no dataset image size: the file's own is taken, so a 28x28 file
    # reaches a 32x32 model zero-padded, as `evaluate --data` converts the dataset, not stretched
    from PIL import Image

    from cnnlab.layers import Dense, Flatten
    from cnnlab.predict import model_input

    folder = cnnlab.Sequential([Flatten(), Dense(10)], input_shape=(1, 32, 32)).save(tmp_path / "saved")
    run = cnnlab.load_run(folder)
    assert run.data_size is None
    data = cnnlab.load_dataset("fashion-mnist-mini")
    image = tmp_path / "t0.png"
    Image.fromarray(data.x_test[0, 0].numpy()).save(image)
    assert torch.equal(model_input(run, image), data.with_shape(1, (32, 32)).x_test[0])
