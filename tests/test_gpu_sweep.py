"""scripts/gpu_sweep.py, the recipe-variant sweep, runs end to end on the CPU with a tiny budget."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
         "overrides": {"epochs": 1, "batch_size": 256, "warmup_epochs": 0.0, "ema": None}},
    ]
    path = tmp_path / "variants.json"
    path.write_text(json.dumps(variants))
    out = tmp_path / "sweep.jsonl"
    assert _load().main([str(path), "--device", "cpu", "--data", "fashion-mnist-mini", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["tiny", "tiny-ensemble"]
    first, second = lines
    assert [r["seed"] for r in first["runs"]] == [0, 1] and all(len(r["epoch_seconds"]) == 2 for r in first["runs"])
    assert [t[0] for t in first["runs"][0]["trace"]] == [1, 2]  # evaluated after each epoch
    assert first["min_accuracy"] <= first["mean_accuracy"] <= 1.0 and first["mean_seconds"] > 0
    assert all(0.0 <= r["ensemble_accuracy"] <= 1.0 for r in second["runs"])
    assert "SUMMARY tiny-ensemble: mean" in capsys.readouterr().out
