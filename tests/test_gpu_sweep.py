"""scripts/gpu_sweep.py, the recipe-variant sweep, runs end to end on the CPU with a tiny budget."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_sweep.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_writes_one_line_per_variant_with_traces_and_ensembles(tmp_path, capsys):
    variants = [
        {"name": "tiny", "recipe": "fast", "seeds": [0, 1], "warmup": True, "trace": 1,
         "overrides": {"epochs": 2, "batch_size": 256, "warmup_epochs": 0.5}},
        {"name": "tiny-ensemble", "recipe": "fast", "seeds": [0, 1], "ensemble": True, "tta": "flip",
         "profile": 5, "overrides": {"epochs": 1, "batch_size": 256, "warmup_epochs": 0.0, "ema": None}},
    ]
    path = tmp_path / "variants.json"
    path.write_text(json.dumps(variants))
    out = tmp_path / "sweep.jsonl"
    probs = tmp_path / "probs"
    assert _load().main([str(path), "--device", "cpu", "--data", "fashion-mnist-mini", "--out", str(out),
                         "--probs-dir", str(probs)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["tiny", "tiny-ensemble"]
    first, second = lines
    assert [r["seed"] for r in first["runs"]] == [0, 1] and all(len(r["epoch_seconds"]) == 2 for r in first["runs"])
    assert [t[0] for t in first["runs"][0]["trace"]] == [1, 2]  # evaluated after each epoch
    assert first["min_accuracy"] <= first["mean_accuracy"] <= 1.0 and first["mean_seconds"] > 0
    assert all(0.0 <= r["ensemble_accuracy"] <= 1.0 for r in second["runs"])
    printed = capsys.readouterr().out
    assert "SUMMARY tiny-ensemble: mean" in printed
    assert "RUN tiny seed 1: " in printed and "TRACE tiny seed 0: epoch 2 " in printed
    table = printed.split("PROFILE tiny-ensemble\n")[1]  # torch.profiler's table of the costliest operations
    assert "Self CPU time total" in table and "aten::" in table
    assert all(set(r["accuracy_by_tta"]) == {"None", "flip", "flip-translate"} for r in first["runs"])
    # --probs-dir: each timed run's test probabilities (not the warm-up's), which reproduce its accuracy
    assert sorted(p.name for p in probs.iterdir()) == ["tiny-ensemble-seed0.pt", "tiny-ensemble-seed1.pt",
                                                       "tiny-seed0.pt", "tiny-seed1.pt"]
    saved = torch.load(probs / "tiny-seed1.pt")
    assert saved["probs"].shape == (len(saved["y"]), 10) and saved["tta"] is None
    accuracy = (saved["probs"].float().argmax(1) == saved["y"].long()).float().mean().item()
    assert accuracy == pytest.approx(first["runs"][1]["accuracy"], abs=2e-3)  # float16 may flip a near tie


# what a session with a GPU runs first, and the dataset gpu_sweep.py runs each file on (--data)
NEXT_FILES = {"gpu_next.json": "fashion-mnist", "gpu_next_mnist.json": "mnist"}
NEXT_VARIANTS = [(data, variant) for file, data in NEXT_FILES.items()
                 for variant in json.loads((SCRIPT.parent / file).read_text())]


def _on_the_cpu(variant: dict, data: str, recipe_data: str = "fashion-mnist", **tiny):
    """The variant's CUDA recipe and overrides, as gpu_sweep builds them on a GPU, with a tiny budget
    and without what needs one (CUDA graphs) or minutes here (compile), in fp32."""
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.recipes import recipe_overrides

    values = {**recipe_overrides(recipe_data, variant["recipe"], "cuda"), **variant.get("overrides", {}),
              "data": data, "epochs": 1, "cuda_graph": False, "compile": False, "compile_mode": "default",
              "precision": "fp32", **tiny}
    return TrainConfig.from_dict(values)


def test_the_next_gpu_sweeps_variants_are_valid_configs():
    """scripts/gpu_next*.json, what a session with a GPU runs first: every variant resolves to a
    TrainConfig for CUDA on its dataset, as gpu_sweep builds it, so no device minute goes on a typo."""
    import dataclasses

    import torch

    from cnnlab.train.recipes import recipe_config

    names = [v["name"] for _, v in NEXT_VARIANTS]
    assert len(set(names)) == len(names)
    for data, variant in NEXT_VARIANTS:
        cfg = recipe_config(data, variant["recipe"], torch.device("cuda"), seed=0)
        cfg = dataclasses.replace(cfg, **variant.get("overrides", {}))
        assert cfg.recipe == variant["recipe"] and cfg.data == data, variant["name"]


@pytest.mark.parametrize("data, name", [(data, v["name"]) for data, v in NEXT_VARIANTS])
def test_every_next_gpu_variant_takes_steps_on_the_cpu(data, name):
    """Each variant's net, optimizer, augmentations and TTA, 2 steps of 32 images, without NaN
    (CUDA graphs and compile off: they need a GPU or minutes here; test_layers covers compiling)."""
    import torch

    from cnnlab.bench.session import accuracy_on_test, train_in_memory
    from cnnlab.data import ImageDataset, load_dataset
    from cnnlab.train.recipes import recipe_tta

    recipe_data, variant = data, next(v for d, v in NEXT_VARIANTS if v["name"] == name)
    mini = load_dataset("fashion-mnist-mini")  # 28x28 grey images and 10 classes, as MNIST has
    data = ImageDataset(mini.name, mini.classes, mini.x_train[:64], mini.y_train[:64], mini.x_test[:32],
                        mini.y_test[:32])
    cfg = _on_the_cpu(variant, data.name, recipe_data, batch_size=32, warmup_epochs=0.5)
    session = train_in_memory(cfg, data, "cpu")
    assert all(torch.isfinite(t).all() for t in session.model.state_dict().values() if t.is_floating_point())
    tta = variant["tta"] if "tta" in variant else recipe_tta(recipe_data, variant["recipe"], "cuda")
    assert 0.0 <= accuracy_on_test(session.model, cfg, data, torch.device("cpu"), tta) <= 1


def test_only_picks_variants_by_name_or_prefix(tmp_path, capsys):
    variants = [{"name": f"{kind}-{i}", "recipe": "fast", "overrides": {"epochs": 1, "batch_size": 512,
                                                                        "warmup_epochs": 0.0}}
                for kind in ("a", "b") for i in (1, 2)]
    path = tmp_path / "variants.json"
    path.write_text(json.dumps(variants))
    out = tmp_path / "sweep.jsonl"
    args = [str(path), "--device", "cpu", "--data", "fashion-mnist-mini", "--out", str(out)]
    assert _load().main([*args, "--only", "b-, a-2"]) == 0
    assert [json.loads(line)["name"] for line in out.read_text().splitlines()] == ["a-2", "b-1", "b-2"]
    with pytest.raises(SystemExit):
        _load().main([*args, "--only", "c-"])
    assert "matches no variant" in capsys.readouterr().err


def test_trace_evaluations_are_not_in_a_runs_seconds(tmp_path, capsys, monkeypatch):
    import time

    sweep = _load()
    real = sweep.accuracy_on_test

    def slow(*args):  # each evaluation takes a second more: two traces and the final one
        time.sleep(1.0)
        return real(*args)

    monkeypatch.setattr(sweep, "accuracy_on_test", slow)
    variant = {"name": "traced", "recipe": "fast", "seeds": [0], "trace": 1, "warmup": True,
               "overrides": {"epochs": 2, "batch_size": 512, "warmup_epochs": 0.0}}
    data = sweep.load_dataset("fashion-mnist-mini")
    (summary,) = sweep.sweep([variant], data, torch.device("cpu"))
    run = summary["runs"][0]
    assert run["trace_seconds"] >= 2.0
    # the final evaluation's second stays in (airbench's timing: training plus evaluation)
    assert 1.0 <= run["seconds"] - sum(run["epoch_seconds"]) < 2.0
    assert "seed 1000" not in capsys.readouterr().out  # the untimed warm-up traces nothing


def test_a_misspelt_override_or_no_gpu_is_one_sentence(tmp_path, capsys):
    path = tmp_path / "variants.json"
    path.write_text(json.dumps([{"name": "typo", "recipe": "fast", "overrides": {"epoch": 1}}]))
    args = [str(path), "--data", "fashion-mnist-mini"]
    with pytest.raises(SystemExit):
        _load().main([*args, "--device", "cpu"])
    assert "unknown setting 'epoch' in variant 'typo' (did you mean 'epochs'?)" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            _load().main(args)  # --device cuda is the default
        assert "sees no CUDA GPU" in capsys.readouterr().err
