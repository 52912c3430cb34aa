"""`cnnlab bench` end to end on the CPU with a tiny budget: well-formed results, never timings."""

import json
import math

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.bench import BENCHES, run_bench
from cnnlab.bench.plain_loop import plain_epoch
from cnnlab.data import ImageDataset, load_dataset
from cnnlab.errors import ConfigError, DatasetNotFound
from cnnlab.native.maxpool2x2 import LIBRARY as MAXPOOL_KERNEL

COMMON = ("bench", "device", "torch", "cnnlab", "python", "threads", "runs")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: two threads spinning at OpenMP barriers on a machine shared with other
    test runs made these trainings several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small():
    """1,024 training and 300 test images of the shipped mini Fashion-MNIST."""
    d = load_dataset("fashion-mnist-mini")
    return ImageDataset(d.name, d.classes, d.x_train[:1024], d.y_train[:1024], d.x_test[:300], d.y_test[:300])


@pytest.fixture(scope="module")
def bench_output(small):
    """Every bench once, as the CLI would print them: one JSON line per result (stdout), and the
    progress lines (stderr)."""
    printed, progress = [], []
    results = run_bench("cpu", runs=2, which=BENCHES, dataset=small, data="fashion-mnist-mini", batches=2,
                        threads=1, on_result=lambda r: printed.append(json.dumps(r)), on_progress=progress.append,
                        epochs=1, batch_size=128)
    assert len(printed) == len(results) == 3
    return printed, progress


@pytest.fixture(scope="module")
def lines(bench_output):
    return bench_output[0]


def test_long_benches_report_each_round_and_run_as_they_finish(bench_output, lines):
    progress = bench_output[1]
    rounds = [line for line in progress if line.startswith("cpu-epoch: round ")]
    assert [line.split(":")[1].split()[1] for line in rounds] == ["1/2", "2/2"]
    first = _by_name(lines)["cpu-epoch"]["samples_s_per_epoch"]["plain"][0]
    assert f"plain {first:.2f} s/epoch" in rounds[0]  # the round's own figures, as they come in
    runs = [line for line in progress if line.startswith("time-to-accuracy fast: run ")]
    assert len(runs) == 2 and "(seed 0)" in runs[0] and "(seed 1)" in runs[1]
    result = _by_name(lines)["time-to-accuracy"]
    for line, seconds in zip(runs, result["seconds_per_run"]):
        assert ("91% not reached" in line) is (seconds is None)
    assert len(progress) == 4  # gpu-recipe is skipped on the CPU: nothing more


def _by_name(lines):
    return {json.loads(line)["bench"]: json.loads(line) for line in lines}


def test_every_line_is_json_with_the_common_fields(lines):
    for line in lines:
        result = json.loads(line)
        assert "\n" not in line
        assert all(k in result for k in COMMON), result
        assert result["cnnlab"] == cnnlab.__version__ and result["torch"] == torch.__version__
        assert result["threads"] == 1
        assert isinstance(result["device"], str) and result["device"]


def test_cpu_epoch_figures(lines, small):
    r = _by_name(lines)["cpu-epoch"]
    assert r["runs"] == 2 and r["batches_timed"] == 2 and r["extrapolated"] is True
    assert r["batches_per_epoch"] == 8  # 1,024 / 128
    for key in ("plain_s_per_epoch", "cnnlab_fp32_s_per_epoch", "cnnlab_fast_s_per_epoch"):
        assert r[key] > 0 and math.isfinite(r[key])
    assert math.isclose(r["ratio_fast"], r["cnnlab_fast_s_per_epoch"] / r["plain_s_per_epoch"], rel_tol=2e-3)
    assert math.isclose(r["ratio_fp32"], r["cnnlab_fp32_s_per_epoch"] / r["plain_s_per_epoch"], rel_tol=2e-3)
    assert set(r["samples_s_per_epoch"]) == {"plain", "cnnlab_fp32", "cnnlab_fast"}
    rounds = r["samples_s_per_epoch"]
    assert r["ratio_fast_per_round"] == pytest.approx(
        [f / p for f, p in zip(rounds["cnnlab_fast"], rounds["plain"])], rel=2e-3)
    assert r["fast_setting"]["precision"] in ("fp32", "bf16")
    assert r["native_kernels"] is (MAXPOOL_KERNEL.get() is not None)
    assert ("native_kernels_off" in r) is not r["native_kernels"]
    if r["native_kernels"]:  # torch's thread count where the kernels share its OpenMP pool, else 1
        assert r["native_threads"] == (r["threads"] if MAXPOOL_KERNEL.threaded else 1)


def test_time_to_accuracy_figures(lines):
    r = _by_name(lines)["time-to-accuracy"]
    assert r["recipe"] == "fast" and r["target"] == 0.91 and r["seeds"] == [0, 1]
    assert len(r["accuracies_per_run"]) == 2 and all(len(a) == 1 for a in r["accuracies_per_run"])  # epochs=1
    assert 0 <= r["best_accuracy"] <= 1
    assert all(s > 0 for run in r["epoch_seconds_per_run"] for s in run)
    if r["seconds"] is None:  # 8 steps on 1,024 images: 91% is not expected, and says so
        assert r["reached"] == 0 and r["epochs_per_run"] == [None, None]
    else:
        assert r["seconds"] > 0


def test_gpu_recipe_is_skipped_on_cpu(lines):
    r = _by_name(lines)["gpu-recipe"]
    assert r["skipped"] == "no CUDA device" and r["runs"] == 0


def test_time_to_accuracy_counts_only_training_until_the_target(small):
    from cnnlab.bench.time_to_accuracy import time_to_accuracy

    out = time_to_accuracy(small, torch.device("cpu"), target=0.0, epochs=3, batch_size=256)
    assert out["epoch"] == 1 and len(out["accuracies"]) == 1  # stopped at the first epoch reaching it
    assert out["seconds"] == pytest.approx(out["epoch_seconds"][0])


def test_plain_loop_times_the_batches_asked_and_trains(small):
    from cnnlab import zoo

    torch.manual_seed(0)
    model = zoo.create("seed-cnn")
    before = [p.detach().clone() for p in model.parameters()]
    x = small.x_train.float() / 255
    seconds, timed = plain_epoch(model, x, small.y_train, batch_size=128, batches=3, warmup=1)
    assert timed == 3 and seconds > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_tutorial_model_is_seed_cnn_in_torch_nn():
    from cnnlab import zoo

    from cnnlab.bench.plain_loop import tutorial_seed_cnn

    torch.manual_seed(0)
    ours = zoo.create("seed-cnn")
    theirs = tutorial_seed_cnn(ours)
    assert all(isinstance(m, (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear)) for m in theirs)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)  # the same function, the same starting weights


def test_first_seed_continues_a_series_of_runs(small):
    """A series too long for one sitting (the best recipe's five seeds on the device tool's 10-minute
    calls) continues with --first-seed: the same seed gives the same run."""
    both = run_bench("cpu", runs=2, which=("time-to-accuracy",), dataset=small, data="fashion-mnist-mini",
                     threads=1, epochs=1, batch_size=256)[0]
    second = run_bench("cpu", runs=1, which=("time-to-accuracy",), dataset=small, data="fashion-mnist-mini",
                       threads=1, first_seed=1, epochs=1, batch_size=256)[0]
    assert both["seeds"] == [0, 1] and second["seeds"] == [1]
    assert second["accuracies_per_run"] == both["accuracies_per_run"][1:]
    with pytest.raises(ConfigError, match="first seed must be at least 0, got -1"):
        run_bench("cpu", first_seed=-1)


def test_unknown_bench_and_bad_counts():
    with pytest.raises(ConfigError, match="cpu-epoch"):
        run_bench("cpu", which=("gpu",))
    with pytest.raises(ConfigError, match="runs"):
        run_bench("cpu", runs=0)
    with pytest.raises(ConfigError, match="gpu-recipe measures recipes 'fast' and 'best'"):
        run_bench("cpu", which=("gpu-recipe",), recipes=("fastest",))


def test_which_and_recipe_flags_take_repeats_and_comma_lists(capsys):
    from cnnlab.cli import build_parser

    args = build_parser().parse_args(["bench", "--which", "cpu-epoch, gpu-recipe", "--which", "time-to-accuracy",
                                      "--recipe", "best"])
    assert args.which == ["cpu-epoch", "gpu-recipe", "time-to-accuracy"] and args.recipe == ["best"]
    assert build_parser().parse_args(["bench"]).which is None  # run_bench's default: all three
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["bench", "--which", "cpu-epoch,gpu"])
    assert stop.value.code == 2
    assert "'gpu' is not one of cpu-epoch, time-to-accuracy, gpu-recipe" in capsys.readouterr().err


def test_missing_full_set_falls_back_to_mini_and_says_so(monkeypatch):
    import cnnlab.data
    from cnnlab.bench import _load

    real = cnnlab.data.load_dataset

    def fake(spec, *a, **kw):
        if spec in ("fashion-mnist", "mnist"):
            raise DatasetNotFound(f"{spec} is not in /nowhere")
        return real(spec, *a, **kw)

    monkeypatch.setattr(cnnlab.data, "load_dataset", fake)
    data, described = _load("fashion-mnist", None)
    assert data.name == "fashion-mnist-mini"
    assert described.startswith("fashion-mnist-mini") and "not found" in described
    with pytest.raises(DatasetNotFound, match="mnist"):  # only Fashion-MNIST has a shipped stand-in
        _load("mnist", None)


def test_a_figure_scaled_from_part_of_an_epoch_says_extrapolated(small):
    from cnnlab.bench.cpu_epoch import bench_cpu_epoch

    # 1,024 images are 8 batches of 128: 5 timed after 3 of warm-up are scaled by 8/5
    part = bench_cpu_epoch(small, runs=1, batches=5, warmup=3)
    assert part["batches_per_epoch"] == 8 and part["batches_timed"] == 5 and part["extrapolated"] is True
    whole = bench_cpu_epoch(small, runs=1, batches=None, warmup=0)
    assert whole["batches_timed"] == 8 and whole["extrapolated"] is False


def test_a_repeated_recipe_is_measured_once(monkeypatch, small):
    import cnnlab.bench.gpu_recipe
    import cnnlab.train.reproduce

    measured = []
    monkeypatch.setattr(cnnlab.train.reproduce, "pick_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(cnnlab.bench.gpu_recipe, "bench_gpu_recipe",
                        lambda data, device, recipe, runs, **kw: measured.append(recipe) or {"recipe": recipe})
    monkeypatch.setattr(cnnlab.bench, "environment", lambda device: {"device": str(device)})
    run_bench("cuda", which=("gpu-recipe",), recipes=("fast", "best", "fast"), dataset=small, data="mini")
    assert measured == ["fast", "best"]
