"""YAML/JSON model files: the three layer forms, round-trips, and errors that name the line."""

import json
import warnings

import pytest
import torch

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import Conv2D, Dense, Flatten, MaxPool2D, Residual, ShapeWarning
from cnnlab.model import Sequential
from cnnlab.model_file import load_model_file, read_model_config, save_model_file

LECTURE = """\
name: lecture-004
input_shape: [1, 28, 28]
layers:
  - Conv2D: {filters: 16, kernel_size: 3, padding: same, activation: relu}
  - MaxPool2D: {padding: same}
  - type: Conv2D
    filters: 32
    kernel_size: 3
    padding: same
    activation: relu
  - MaxPooling2D:
      padding: same
  - Flatten
  - Dense: {units: 10, activation: softmax}
"""


def write(tmp_path, text, name="model.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_all_three_forms_load(tmp_path):
    model = load_model_file(write(tmp_path, LECTURE))
    assert model.name == "lecture-004" and model.input_shape == (1, 28, 28)
    assert [type(l).__name__ for l in model] == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Flatten", "Dense"]
    assert model.output_shape == (10,) and model[4].output_shape == (32 * 7 * 7,)


def test_yaml_and_json_round_trips_give_identical_outputs(tmp_path):
    model = Sequential([Conv2D(4, 3, strides=2, padding="same", activation="relu"), MaxPool2D(padding="same"),
                        Residual([Conv2D(4, 3, padding="same")], activation="relu"), Flatten(), Dense(3)],
                       input_shape=(2, 9, 9), name="rt").eval()
    x = torch.randn(2, 2, 9, 9)
    for name in ("m.yaml", "m.json"):
        path = save_model_file(model, tmp_path / name)
        clone = load_model_file(path).eval()
        clone.load_state_dict(model.state_dict())
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
        assert clone.to_config() == model.to_config()
    assert "- Flatten\n" in (tmp_path / "m.yaml").read_text()  # bare names for argument-free layers
    assert json.loads((tmp_path / "m.json").read_text())["input_shape"] == [2, 9, 9]


def test_unknown_layer_names_the_line_and_closest_name(tmp_path):
    path = write(tmp_path, LECTURE.replace("- Flatten", "- Flaten"))
    with pytest.raises(ConfigError, match=rf"^{path}, line 13: unknown layer 'Flaten' \(did you mean Flatten\?\)"):
        load_model_file(path)
    path = write(tmp_path, LECTURE.replace("MaxPool2D: {padding", "MaxPoolng2D: {padding"))
    with pytest.raises(ConfigError, match=r"line 5: unknown layer 'MaxPoolng2D' \(did you mean MaxPool2D\?\)"):
        load_model_file(path)


def test_unknown_argument_names_its_own_line(tmp_path):
    path = write(tmp_path, LECTURE.replace("    kernel_size: 3\n", "    kernel_sise: 3\n"))
    with pytest.raises(ConfigError, match=r"line 8: Conv2D has no argument 'kernel_sise' \(did you mean kernel_size\?\)"):
        load_model_file(path)
    nested = "input_shape: [1, 8, 8]\nlayers:\n  - Residual:\n      block:\n        - Conv2D: {filters: 1, kernel_size: 3,\n" \
             "            padding: same, activaton: relu}\n"
    with pytest.raises(ConfigError, match=r"line 6: Conv2D has no argument 'activaton' \(did you mean activation\?\)"):
        load_model_file(write(tmp_path, nested))


def test_json_errors_have_lines_too(tmp_path):
    text = json.dumps({"input_shape": [1, 8, 8], "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}},
                                                            {"Dense": {"unit": 3}}]}, indent=2)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '"unit"' in t)
    with pytest.raises(ConfigError, match=rf"line {line}: Dense has no argument 'unit' \(did you mean units\?\)"):
        load_model_file(write(tmp_path, text, "m.json"))


def test_bad_values_broken_syntax_and_top_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"line 4: Conv2D filters must be a positive whole number"):
        load_model_file(write(tmp_path, LECTURE.replace("filters: 16", "filters: -1")))
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML/JSON"):
        load_model_file(write(tmp_path, "layers:\n  - Conv2D: {filters: 2\n  - Flatten\n"))
    with pytest.raises(ConfigError, match=r"line 1: unknown key 'input' \(did you mean input_shape\?\)"):
        load_model_file(write(tmp_path, "input: [1, 8, 8]\nlayers: [Flatten]\n"))
    with pytest.raises(ConfigError, match="cannot read model file"):
        load_model_file(tmp_path / "missing.yaml")


def test_shape_errors_carry_the_file_line(tmp_path):
    text = "input_shape: [1, 4, 4]\nlayers:\n  - Input: {shape: [1, 4, 4]}\n  - MaxPool2D\n  - MaxPool2D\n  - MaxPool2D\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShapeWarning)
        with pytest.raises(ShapeError, match=r"line 6: layer 2 \(MaxPool2D\) gets 1x1x1"):
            load_model_file(write(tmp_path, text))


def test_input_shape_override(tmp_path):
    model = load_model_file(write(tmp_path, "layers: [Flatten, {Dense: {units: 2}}]\n"), input_shape=(3, 4, 4))
    assert model[1].linear.in_features == 48


def test_a_key_given_twice_is_an_error_at_its_line(tmp_path):
    # YAML 1.2 section 3.2.1.1: keys are unique; PyYAML alone keeps the last one
    path = write(tmp_path, LECTURE.replace("filters: 16,", "filters: 8, filters: 16,"))
    with pytest.raises(ConfigError, match=rf"^{path}, line 4: 'filters' is given twice in one mapping \(first on line 4\)"
                                          "; keep one"):
        load_model_file(path)
    with pytest.raises(ConfigError, match=r"line 2: 'input_shape' is given twice .*first on line 1"):
        load_model_file(write(tmp_path, "input_shape: [1, 8, 8]\ninput_shape: [1, 9, 9]\nlayers: [Flatten]\n"))
    # not the first list's error (Flaten on line 2)
    with pytest.raises(ConfigError, match=r"line 3: 'layers' is given twice .*first on line 2"):
        load_model_file(write(tmp_path, "input_shape: [1, 8, 8]\nlayers: [Flaten]\nlayers: [Flatten]\n"))
    text = '{"input_shape": [1, 8, 8],\n "layers": [{"Dense": {"units": 2,\n   "units": 3}}]}'
    with pytest.raises(ConfigError, match=r"m.json, line 3: 'units' is given twice .*first on line 2"):
        load_model_file(write(tmp_path, text, "m.json"))


@pytest.mark.parametrize("item, message", [
    ("Dense", "Dense needs units"), ("Conv2D", "Conv2D needs filters and kernel_size"),
    ("Conv2D: {filters: 4}", "Conv2D needs kernel_size"), ("Dropout", "Dropout needs rate"),
    ("Activation", "Activation needs name"), ("Input", "Input needs shape"),
])
def test_a_missing_argument_names_the_line(tmp_path, item, message):
    path = write(tmp_path, f"input_shape: [1, 8, 8]\nlayers:\n  - Flatten\n  - {item}\n")
    with pytest.raises(ConfigError, match=rf"^{path}, line 4: {message}; it takes "):
        load_model_file(path)


def test_exponent_floats_are_numbers_and_saved_files_read_back(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-5 as a string; YAML 1.2 and JSON read it as a number
    model = load_model_file(write(tmp_path, "input_shape: [2, 4, 4]\nlayers:\n  - BatchNorm: {epsilon: 1e-5}\n"
                                            "  - LocalResponseNorm: {alpha: 2E-4, beta: .75e0}\n"))
    assert model[0].epsilon == 1e-5 and model[0].bn.eps == 1e-5 and (model[1].alpha, model[1].beta) == (2e-4, 0.75)
    config, _ = read_model_config(tmp_path / "model.yaml")
    assert config["layers"][0] == {"BatchNorm": {"epsilon": 1e-5}}  # a float before BatchNorm sees it
    for name in ("m.json", "m.yaml"):
        path = save_model_file(model, tmp_path / name)
        assert load_model_file(path).to_config() == model.to_config()


def test_tab_indented_json_loads_and_bad_json_names_line_and_column(tmp_path):
    text = '{\n\t"input_shape": [1, 4, 4],\n\t"layers": [\n\t\t{"Dense": {"unit": 2}}\n\t]\n}\n'
    with pytest.raises(ConfigError, match=r"line 4: Dense has no argument 'unit'"):
        load_model_file(write(tmp_path, text, "m.json"))
    model = load_model_file(write(tmp_path, text.replace('{"Dense"', '"Flatten", {"Dense"').replace("unit", "units"),
                                  "m.json"))
    assert model.output_shape == (2,)
    with pytest.raises(ConfigError, match=r"m.json, line 2, column 24: not valid JSON \(Expecting value\)"):
        load_model_file(write(tmp_path, '{"layers": ["Flatten"],\n "input_shape": [1, 4, ]}', "m.json"))


def test_input_shape_on_the_first_layer_as_in_keras(tmp_path):
    path = write(tmp_path, "layers:\n  - Conv2D: {filters: 2, kernel_size: 3, input_shape: [1, 6, 6]}\n  - Flatten\n")
    model = load_model_file(path)
    assert model.input_shape == (1, 6, 6) and model.output_shape == (32,)
    assert load_model_file(save_model_file(model, tmp_path / "again.yaml")).to_config() == model.to_config()


def test_save_model_file_is_public():
    import cnnlab

    assert cnnlab.save_model_file is save_model_file and "save_model_file" in cnnlab.__all__


def test_a_json_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.json"  # Windows Notepad and PowerShell 5 write one; RFC 8259 lets readers skip it
    path.write_bytes(b'\xef\xbb\xbf{"input_shape": [1, 28, 28], "layers": ["Flatten", {"Dense": {"units": 10}}]}')
    assert load_model_file(path).output_shape == (10,)
