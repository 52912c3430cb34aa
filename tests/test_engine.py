"""The training loop: exact resume, determinism, NaN stop, Ctrl-C, callbacks, regularisation, config."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from _train_helpers import FakeBatches, TinyCNN, make_trainer, single_thread, tiny_data  # noqa: F401 (fixture)
from cnnlab.errors import CheckpointError, ConfigError, TrainingError
from cnnlab.train.callbacks import (Callback, CheckpointCallback, CSVHistory, EarlyStopping, ReduceLROnPlateau,
                                    TensorBoard)
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import Trainer, TrainingInterrupted, pick_device, seed_everything
from cnnlab.train.regularize import ModelEMA

HELPER = Path(__file__).with_name("_train_helpers.py")


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def scramble(trainer: Trainer) -> None:
    """Make a fresh trainer differ from the saved one everywhere a resume must overwrite."""
    torch.manual_seed(999), random.seed(999), np.random.seed(999)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.normal_()


def strip_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# ---- exact resume ----
@pytest.mark.parametrize("optimizer", ["adam", "muon"])  # muon: two kinds of group in one optimizer
def test_resume_at_epoch_boundary_is_bitwise_identical(tmp_path, optimizer):
    straight = make_trainer(epochs=4, ema=lambda m: ModelEMA(m, 0.9), optimizer=optimizer)
    straight.fit(4)

    first = make_trainer(epochs=4, ema=lambda m: ModelEMA(m, 0.9), callbacks=[CheckpointCallback(tmp_path / "c.pt")],
                         optimizer=optimizer)
    first.fit(2)
    resumed = make_trainer(epochs=4, ema=lambda m: ModelEMA(m, 0.9), optimizer=optimizer)
    scramble(resumed)
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    assert resumed.epoch == 2
    resumed.fit(4)

    assert_same_weights(weights(straight), weights(resumed))
    assert_same_weights(straight.ema.shadow, resumed.ema.shadow)
    assert strip_seconds(straight.history.rows) == strip_seconds(resumed.history.rows)
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]


class _SigintAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer, logs):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, caught by the trainer's handler


def test_ctrl_c_mid_epoch_saves_and_resume_is_bitwise_identical(tmp_path):
    straight = make_trainer(epochs=4)
    straight.fit(4)

    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = signal.getsignal(signal.SIGINT)
    first = make_trainer(epochs=4, callbacks=[CheckpointCallback(ckpt), _SigintAt(step=8)])  # 5 batches/epoch
    with pytest.raises(TrainingInterrupted, match=r"epoch 2, step 3.*cnnlab train --resume .*run`") as e:
        first.fit(4)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert e.value.saved_to == str(ckpt)
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)

    resumed = make_trainer(epochs=4)
    scramble(resumed)
    resumed.load_state_dict(state)
    resumed.fit(4)
    assert_same_weights(weights(straight), weights(resumed))
    assert strip_seconds(straight.history.rows) == strip_seconds(resumed.history.rows)


def test_resume_with_another_optimizer_is_refused_before_a_step():
    trainer = make_trainer(optimizer="adam", epochs=1, n=64)
    trainer.fit(1)
    state = trainer.state_dict()
    assert state["optimizer_class"] == "Adam"
    with pytest.raises(ConfigError, match=r"the checkpoint was trained with Adam, but this run's optimizer is "
                                          r"SGD: put the optimizer in config.json back, or start a new run"):
        make_trainer(optimizer="sgd", epochs=2, n=64).load_state_dict(state)
    del state["optimizer_class"]  # a checkpoint written before the class was recorded
    with pytest.raises(ConfigError, match="trained with another optimizer, but this run's optimizer is SGD"):
        make_trainer(optimizer="sgd", epochs=2, n=64).load_state_dict(state)
    same = make_trainer(optimizer="adam", epochs=2, n=64)
    same.load_state_dict(state)  # the same optimizer still resumes
    same.fit(2)


def test_weights_of_another_model_name_the_first_keys_and_count_the_rest():
    trainer = make_trainer(epochs=1, n=64)
    state = trainer.state_dict()
    with pytest.raises(CheckpointError, match=r"\(other shapes: fc1.weight \(16, 256\) saved, \(32, 256\) here, "
                                              r"fc1.bias \(16,\) saved, \(32,\) here, fc2.weight .*\): it was saved by"):
        make_trainer(hidden=32, epochs=1, n=64).load_state_dict(state)
    state["model"] = {f"layer{i}.weight": torch.zeros(1) for i in range(5)}
    with pytest.raises(CheckpointError, match=r"\(missing conv.weight, conv.bias, bn.weight and 8 more; unexpected "
                                              r"layer0.weight, layer1.weight, layer2.weight and 2 more\): it was"):
        make_trainer(epochs=1, n=64).load_state_dict(state)


def test_same_seed_twice_gives_identical_weights_and_other_seed_differs():
    runs = []
    for seed in (3, 3, 4):  # seed, build and train one after the other, as a run does
        t = make_trainer(seed=seed)
        t.fit(2)
        runs.append(t)
    a, b, c = runs
    assert_same_weights(weights(a), weights(b))
    assert not torch.equal(a.model.fc2.weight, c.model.fc2.weight)


def test_deterministic_switches_on_torch_deterministic_algorithms():
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        seed_everything(0)  # a later run without it: the process-wide flags go back off
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)  # the user's own choice stays
        seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


# ---- NaN stop ----
def test_huge_lr_stops_with_message_and_leaves_checkpoint_untouched(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    t = make_trainer(optimizer="sgd", schedule=None, callbacks=[CheckpointCallback(ckpt)])
    t.fit(1)
    good = ckpt.read_bytes()
    for g in t.optimizer.param_groups:
        g["lr"] = 1e6
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 2, step \d+ \(lr 1e\+06\).*too high"):
        t.fit(3)
    assert ckpt.read_bytes() == good
    assert len(t.history.rows) == 1


class _Record(Callback):
    def __init__(self):
        self.logs, self.last = [], None

    def on_batch_end(self, trainer, logs):
        self.logs.append(dict(logs))
        self.last = {k: v.clone() for k, v in trainer.model.named_parameters()}


def test_nan_input_stops_at_that_step_before_any_update():
    x, y = tiny_data(96)
    x[70] = float("nan")  # batch 3 of 32 (no shuffle): steps 1 and 2 are fine
    torch.manual_seed(0)
    model = TinyCNN()
    rec = _Record()
    t = Trainer(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), 1e-3),
                train_batches=FakeBatches(x, y, 32, shuffle=False), callbacks=[rec])
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 3 "):
        t.fit(1)
    assert t.step_in_epoch == 2
    # no parameter moved (BatchNorm's running stats did see the NaN forward pass: that is documented)
    assert_same_weights(rec.last, {k: v for k, v in t.model.named_parameters()})
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_deferred_loss_reads_give_the_same_history_and_weights():
    """sync_every > 1 (the GPU default) only delays reading the loss: the same training and figures."""
    every_step = make_trainer(epochs=2, sync_every=1)
    every_step.fit(2)
    deferred = make_trainer(epochs=2, sync_every=4)  # 5 batches per epoch: a read mid-epoch and at its end
    deferred.fit(2)
    assert deferred.sync_every == 4 and every_step.sync_every == 1
    assert strip_seconds(deferred.history.rows) == strip_seconds(every_step.history.rows)
    assert_same_weights(weights(deferred), weights(every_step))


def test_deferred_loss_read_names_the_first_bad_step():
    x, y = tiny_data(192)
    x[70] = float("nan")  # batch 3 of 32 (no shuffle)
    torch.manual_seed(0)
    model = TinyCNN()
    t = Trainer(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), 1e-3),
                train_batches=FakeBatches(x, y, 32, shuffle=False), sync_every=4)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 3 "):
        t.fit(1)
    assert t.step_in_epoch == 5  # read after step 1 (the epoch's first) and then after 4 more


def test_sync_every_must_be_positive():
    model = TinyCNN()
    with pytest.raises(ConfigError, match="sync_every must be at least 1"):
        Trainer(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.1),
                train_batches=FakeBatches(*tiny_data(32), 32), sync_every=0)


# ---- callbacks and logs ----
def test_logs_carry_progress_and_history_matches_keras(tmp_path):
    rec = _Record()
    t = make_trainer(callbacks=[rec, CSVHistory(tmp_path / "history.csv")])
    hist = t.fit(2)
    assert [(l["epoch"], l["batch"], l["batches"]) for l in rec.logs][:2] == [(1, 1, 5), (1, 2, 5)]
    assert {"loss", "accuracy", "lr", "epochs"} <= rec.logs[0].keys()
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert hist.history["loss"][1] < hist.history["loss"][0]  # it learns the quadrant task
    assert rec.logs[4]["loss"] == pytest.approx(hist.history["loss"][0])  # running mean ends at the epoch's
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds" and len(lines) == 3
    val_loss, val_acc = t.evaluate(t.val_batches)
    assert val_loss == pytest.approx(hist.history["val_loss"][-1]) and 0 <= val_acc <= 1


def test_early_stopping_stops_after_patience_and_restores_best():
    es = EarlyStopping(patience=2, min_delta=0.0)
    t = SimpleNamespace(model=nn.Linear(2, 2), ema=None, stop_training=False, val_batches=[], epoch=0)
    es.on_train_begin(t, {})
    for epoch, loss in enumerate([1.0, 0.8, 0.85, 0.9, 0.7], start=1):
        if epoch == 2:
            best = {k: v.clone() for k, v in t.model.state_dict().items()}
        es.on_epoch_end(t, {"epoch": epoch, "val_loss": loss})
        with torch.no_grad():
            t.model.weight.add_(1.0)
        t.epoch = epoch
        if t.stop_training:
            break
    assert (epoch, es.best_epoch, es.best) == (4, 2, 0.8)
    es.on_train_end(t, {})
    assert_same_weights(best, t.model.state_dict())


def test_early_stopping_in_trainer_with_a_frozen_model():
    es = EarlyStopping(patience=2, min_delta=1e-9)
    t = make_trainer(lr=0.0, schedule=None, callbacks=[es])  # lr 0: val_loss never improves after epoch 1
    t.fit(10)
    assert len(t.history.rows) == 3 and es.stopped_epoch == 3 and es.best_epoch == 1
    assert t.stop_reason.startswith("early stopping: val_loss has not improved for 2 epochs (best ")
    assert t.stop_reason.endswith("at epoch 1); the weights of epoch 1 are kept")
    t.fit(3)  # a later fit starts without the old reason
    assert t.stop_reason is None


def test_a_reused_early_stopping_starts_each_fit_afresh_but_keeps_a_resumed_state():
    """Keras' on_train_begin resets wait, best and the best weights ("allow instances to be re-used"):
    a second model must neither stop early on the first one's record nor get its weights."""
    es = EarlyStopping(patience=2, min_delta=1e-9)
    make_trainer(lr=0.0, schedule=None, callbacks=[es]).fit(10)
    assert (es.stopped_epoch, es.wait) == (3, 2)
    again = make_trainer(lr=0.0, schedule=None, callbacks=[es])
    again.fit(10)
    assert len(again.history.rows) == 3 and (es.best_epoch, es.stopped_epoch) == (1, 3)
    other = make_trainer(lr=0.0, schedule=None, hidden=8, callbacks=[es])  # another architecture
    other.fit(2)
    assert es.best_state["model"]["fc1.weight"].shape == other.model.fc1.weight.shape
    # after load_state_dict (cnnlab train --resume) the saved record stands
    es.load_state_dict({"best": 0.5, "wait": 1, "best_epoch": 4, "stopped_epoch": 0, "best_state": None})
    es.on_train_begin(other, {})
    assert (es.wait, es.best, es.best_epoch) == (1, 0.5, 4)
    es.on_train_begin(other, {})  # a later fit, not a resume, starts afresh
    assert (es.wait, es.best, es.best_epoch) == (0, float("inf"), 0)
    rp = ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10)
    make_trainer(lr=0.01, schedule="constant", callbacks=[rp]).fit(3)
    make_trainer(lr=0.01, schedule="constant", callbacks=[rp]).fit(1)
    assert rp.reductions == 0  # epoch 1 of a new fit improves on no record


def test_monitors_take_kerass_names_and_refuse_unknown_ones():
    t = make_trainer(callbacks=[EarlyStopping(monitor="val_acc", patience=1), ReduceLROnPlateau(monitor="acc")])
    t.fit(1)
    with pytest.raises(ConfigError, match=r"EarlyStopping cannot monitor 'val_los': did you mean val_loss\? "
                                          r"the history has loss, accuracy, acc, val_loss"):
        EarlyStopping(monitor="val_los")
    with pytest.raises(ConfigError, match="ReduceLROnPlateau cannot monitor 'f1'"):
        ReduceLROnPlateau(monitor="f1")


def test_restore_best_weights_is_kerass_name_for_restore_best():
    assert EarlyStopping(restore_best_weights=False).restore_best is False
    assert EarlyStopping(restore_best=False, restore_best_weights=True).restore_best is True
    assert EarlyStopping().restore_best is True  # cnnlab's default (Keras': False)


def test_early_stopping_without_validation_is_a_config_error():
    t = make_trainer(val=False, callbacks=[EarlyStopping()])
    with pytest.raises(ConfigError, match="no validation data"):
        t.fit(1)


def test_reduce_on_plateau_scales_the_schedule():
    rp = ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10)
    t = make_trainer(lr=0.01, schedule="constant", callbacks=[rp])
    t.fit(3)  # epoch 1 improves on inf; with min_delta 10 epochs 2 and 3 do not, so each halves the lr
    assert rp.reductions == 2
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / 4)
    assert t.scheduler.base_lrs[0] == pytest.approx(0.01 / 4)  # kept by the schedule's next steps
    assert [r["lr"] for r in t.history.rows] == pytest.approx([0.01, 0.01, 0.005])
    with pytest.raises(ConfigError, match="cannot be combined with OneCycleLR"):
        make_trainer(schedule="onecycle", callbacks=[ReduceLROnPlateau()]).fit(1)


def test_regularization_loss_is_part_of_the_training_loss():
    class L2Linear(nn.Linear):
        def regularization_loss(self):
            return 0.5 * self.weight.pow(2).sum()

    torch.manual_seed(0)
    x, y = tiny_data(32)
    model = nn.Sequential(nn.Flatten(), L2Linear(64, 4))
    expected = nn.functional.cross_entropy(model(x), y) + 0.5 * model[1].weight.pow(2).sum()
    rec = _Record()
    t = Trainer(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.0),
                train_batches=FakeBatches(x, y, 32, shuffle=False), callbacks=[rec])
    t.fit(1)
    assert rec.logs[0]["loss"] == pytest.approx(expected.item(), rel=1e-6)
    loss, _ = t.evaluate(FakeBatches(x, y, 32, shuffle=False))
    assert loss == pytest.approx(expected.item(), rel=1e-6)


def test_kernel_regularizer_of_real_layers_counts_in_the_loss():
    model_mod = pytest.importorskip("cnnlab.model")
    layers = pytest.importorskip("cnnlab.layers")
    torch.manual_seed(0)
    model = model_mod.Sequential([layers.Flatten(), layers.Dense(8, kernel_regularizer="l2(0.01)"),
                                  layers.Dense(4)], input_shape=(1, 8, 8))
    x, y = tiny_data(32)
    w = model[1].linear.weight
    expected = nn.functional.cross_entropy(model(x), y) + 0.01 * w.pow(2).sum()  # Keras l2: lambda * sum(w^2)
    rec = _Record()
    Trainer(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.0),
            train_batches=FakeBatches(x, y, 32, shuffle=False), callbacks=[rec]).fit(1)
    assert rec.logs[0]["loss"] == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("mix", [None, "cutmix"])
def test_resume_with_the_real_tensor_batches_and_augmentation(tmp_path, mix):
    loader = pytest.importorskip("cnnlab.data.loader")
    augment = pytest.importorskip("cnnlab.data.augment")
    from cnnlab.data.mix import BatchMix

    x, y = tiny_data(160)
    x8 = ((x + 2) * 50).clamp(0, 255).to(torch.uint8)

    def trainer(callbacks=()):
        seed_everything(0)
        model = TinyCNN()
        opt = torch.optim.Adam(model.parameters(), 0.01)
        batches = loader.TensorBatches(x8[:128], y[:128], 16, shuffle=True, seed=0, mean=(0.4,), std=(0.2,),
                                       augment=augment.Augment(flip=True, translate=1),
                                       mix=BatchMix(mix, int(y.max()) + 1) if mix else None)
        return Trainer(model, nn.CrossEntropyLoss(), opt, train_batches=batches, callbacks=callbacks)

    straight = trainer()
    straight.fit(3)
    first = trainer([CheckpointCallback(tmp_path / "c.pt"), _SigintAt(step=13)])  # 8 batches/epoch
    with pytest.raises(TrainingInterrupted, match="epoch 2, step 5"):
        first.fit(3)
    resumed = trainer()
    scramble(resumed)
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    resumed.fit(3)
    assert_same_weights(weights(straight), weights(resumed))


def test_bf16_and_grad_clip_train_on_cpu():
    t = make_trainer(precision="bf16", grad_clip=0.5)
    hist = t.fit(2)
    assert all(np.isfinite(hist.history["loss"])) and hist.history["loss"][1] < hist.history["loss"][0]
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        make_trainer(precision="fp16")


def test_tensorboard_logs_or_says_how_to_install(tmp_path):
    tb = TensorBoard(tmp_path / "tb")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'cnnlab\[tensorboard\]'"):
            make_trainer(callbacks=[tb]).fit(1)
        return
    make_trainer(callbacks=[tb]).fit(1)
    assert any((tmp_path / "tb").iterdir())


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU.*--device cpu"):
            pick_device("cuda")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        pick_device("tpu")


# ---- Ctrl-C in a real process ----
def test_sigint_to_a_real_training_process_saves_and_tells_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(HELPER), str(run), "500", "--n", "4000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "STARTED"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"cnnlab train --resume {run}" in err
    state = load_checkpoint(run)
    resume = subprocess.run([sys.executable, str(HELPER), str(run), str(state["epoch"] + 1), "--n", "4000",
                             "--resume"], capture_output=True, text=True, timeout=60)
    assert resume.returncode == 0 and "DONE" in resume.stdout, resume.stderr
    assert load_checkpoint(run)["epoch"] == state["epoch"] + 1


# ---- configuration ----
def test_config_yaml_overrides_and_unknown_keys(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("epochs: 3\nlr: 1e-2\noptimizer: sgd\naugment: {flip: true}\n")
    cfg = TrainConfig.from_yaml(f)
    assert (cfg.epochs, cfg.lr, cfg.optimizer, cfg.augment) == (3, 0.01, "sgd", {"flip": True})
    assert cfg.replace(lr=0.1, epochs=None).lr == 0.1 and cfg.replace(epochs=None).epochs == 3
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    f.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'epoch' in .*run.yaml \(did you mean 'epochs'\?\)"):
        TrainConfig.from_yaml(f)
    with pytest.raises(ConfigError, match="unknown schedule 'cosin'.*did you mean 'cosine'"):
        TrainConfig(schedule="cosin")
    with pytest.raises(ConfigError, match="'lr' .* must be a float"):
        TrainConfig.from_dict({"lr": "fast"})


def test_config_fields_for_cli_cover_every_field_with_help():
    rows = TrainConfig.fields_for_cli()
    names = [r[0] for r in rows]
    assert names[:3] == ["model", "data", "data_dir"] and len(names) == len(set(names))
    by_name = {r[0]: r for r in rows}
    assert by_name["lr"][1:3] == ("float", 1e-3) and by_name["grad_clip"][1:3] == ("float", None)
    assert by_name["nesterov"][1] == "bool" and by_name["augment"][1] == "dict"
    assert all(r[3] for r in rows)


def test_kerass_early_stopping_and_plateau_arguments():
    es = EarlyStopping(monitor="val_accuracy", patience=1, mode="min", baseline=0.5, verbose=1)
    assert es.mode == "min" and es.best == 0.5  # mode given wins over the name; the baseline is to beat
    t = SimpleNamespace(model=nn.Linear(2, 2), ema=None, stop_training=False, val_batches=[], epoch=0)
    es.on_train_begin(t, {})
    es.on_epoch_end(t, {"epoch": 1, "val_acc": 0.6})  # not below the baseline 0.5: no improvement
    assert t.stop_training and "never better than the baseline 0.5000" in t.stop_reason
    ReduceLROnPlateau(verbose=1, mode="auto")
    with pytest.raises(ConfigError, match="does not take Keras' start_from_epoch="):
        EarlyStopping(start_from_epoch=3)
    with pytest.raises(ConfigError, match="mode must be 'auto', 'min' or 'max'"):
        ReduceLROnPlateau(mode="lower")
