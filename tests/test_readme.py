"""The README's Python tour runs as written (with one epoch instead of several)."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    quick = re.sub(r"epochs=\d+", "epochs=1", code)
    assert quick.count("epochs=1") == 2, "the README's example changed: update this test's edits"
    monkeypatch.chdir(tmp_path)  # the run directory goes to tmp_path/runs; an empty folder, so the
    exec(compile(quick, str(README), "exec"), {})  # example must make the shoe.png it predicts on
    out = capsys.readouterr().out
    assert "Total params" in out and "shoe.png" in out
    with Image.open(tmp_path / "shoe.png") as shoe:
        assert shoe.size == (28, 28) and shoe.mode == "L"
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert sorted(p.name for p in (tmp_path / "my_cnn").iterdir()) == ["model.json", "model.safetensors"]
