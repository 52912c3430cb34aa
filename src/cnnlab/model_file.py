"""Model files: a Sequential written as YAML or JSON, loaded with errors that name the line.

Canonical form (what save_model_file writes; docs/model-files.md has the rest):

    name: lecture-cnn
    input_shape: [1, 28, 28]        # C, H, W
    layers:
      - Conv2D: {filters: 16, kernel_size: 3, padding: same, activation: relu}
      - MaxPool2D
      - Flatten
      - Dense: {units: 10, activation: softmax}

`- type: Conv2D` mappings and bare names like `- Flatten` are read too. A key given twice in one
mapping is an error (YAML 1.2 section 3.2.1.1), not "the last one wins". JSON files are parsed by
the json module; the YAML reader, which reads JSON too, finds the lines that errors name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from cnnlab.atomic import write_text
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers import Residual, layer_from_config
from cnnlab.layers.base import check_arguments, closest, layer_class
from cnnlab.model import Sequential

TOP_KEYS = ("name", "input_shape", "layers")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with two YAML 1.2 rules: keys are unique, and 1e-5 is a float."""

    def __init__(self, text: str, path: Path):
        super().__init__(text)
        self.path = path

    def construct_mapping(self, node, deep=False):
        lines: dict = {}  # key -> line of its first appearance
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges a mapping whose keys the ones after it may override
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in lines
            except TypeError:
                continue  # an unhashable key, which SafeLoader itself reports
            if repeated:
                raise ConfigError(f"{self.path}, line {_line(key_node)}: {key!r} is given twice in one mapping "
                                  f"(first on line {lines[key]}); keep one, since YAML and JSON keys must be unique.")
            lines[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's floats with an exponent (1e-5, 2E+3, 1.0e5), which YAML 1.1 and so PyYAML read as
# strings: PyYAML's float needs a dot and a signed exponent.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
                              list("-+.0123456789"))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1  # marks count from 0


def _scalar(node: yaml.Node):
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _spec_nodes(item: yaml.Node, where) -> tuple[yaml.Node, list[tuple[yaml.Node, yaml.Node]]]:
    """(node of the type name, [(argument key node, value node)]) of one layer item in any form."""
    if isinstance(item, yaml.ScalarNode):
        return item, []
    if isinstance(item, yaml.MappingNode):
        keys = [_scalar(k) for k, _ in item.value]
        if "type" in keys:
            type_node = item.value[keys.index("type")][1]
            return type_node, [(k, v) for k, v in item.value if _scalar(k) != "type"]
        if len(item.value) == 1:
            name_node, args = item.value[0]
            if isinstance(args, yaml.MappingNode):
                return name_node, list(args.value)
            if isinstance(args, yaml.ScalarNode) and args.tag.endswith(":null"):
                return name_node, []
            raise ConfigError(f"{where(args)}: the arguments of {_scalar(name_node)} must be a mapping like "
                              "{filters: 16, kernel_size: 3}.")
    raise ConfigError(f"{where(item)}: write a layer as `- Conv2D: {{filters: 16, kernel_size: 3}}`, "
                      "`- type: Conv2D` with its arguments, or a bare name like `- Flatten`.")


def _check_layers(seq: yaml.Node, where) -> None:
    """ConfigError at the line of the first unknown layer name or argument (nested blocks too)."""
    if not isinstance(seq, yaml.SequenceNode):
        raise ConfigError(f"{where(seq)}: layers must be a list, one `- LayerName: {{...}}` per line.")
    for item in seq.value:
        type_node, args = _spec_nodes(item, where)
        try:
            cls = layer_class(str(_scalar(type_node)))
        except ConfigError as err:
            raise ConfigError(f"{where(type_node)}: {err}") from None
        for key, value in args:
            try:
                check_arguments(cls, {_scalar(key): None})
            except ConfigError as err:
                raise ConfigError(f"{where(key)}: {err}") from None
            if issubclass(cls, Residual) and _scalar(key) in ("block", "shortcut") and not (
                isinstance(value, yaml.ScalarNode)
            ):
                _check_layers(value, where)


def read_model_config(path) -> tuple[dict, dict[int, int]]:
    """The model config in `path` after checking names and arguments, and layer index -> line.

    Args:
        path: a .yaml, .yml or .json model file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad, PowerShell 5) is not text
    except OSError as err:
        raise ConfigError(f"cannot read model file {path}: {err.strerror}; check the path.") from None

    def where(node):
        return f"{path}, line {_line(node)}"

    json_data = None
    if path.suffix.lower() == ".json":
        json_data = _read_json(text, path)
        # JSON's tabs lie between tokens only (strings cannot hold them), where PyYAML refuses them;
        # a space in each keeps every line and column, and the YAML reader then finds the lines.
        text = text.replace("\t", " ")
    loader = _Loader(text, path)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(f"{path} is empty; give input_shape and a list of layers (see docs/model-files.md).")
        data = loader.construct_document(root)  # first, so that a repeated key is reported before it is used
        if isinstance(root, yaml.SequenceNode):  # a bare list of layers
            layers_node, config_nodes = root, []
        elif isinstance(root, yaml.MappingNode):
            config_nodes = root.value
            for key, _ in config_nodes:
                if _scalar(key) not in TOP_KEYS:
                    raise ConfigError(f"{where(key)}: unknown key {_scalar(key)!r}{closest(_scalar(key), TOP_KEYS)}; "
                                      f"a model file has {', '.join(TOP_KEYS)}.")
            layers_node = next((v for k, v in config_nodes if _scalar(k) == "layers"), None)
            if layers_node is None:
                raise ConfigError(f"{path} has no 'layers' list; add `layers:` with one `- LayerName: {{...}}` per line.")
        else:
            raise ConfigError(f"{where(root)}: a model file is a mapping with input_shape and layers.")
        _check_layers(layers_node, where)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{line}: not valid YAML/JSON ({problem}); check indentation and brackets.") from None
    finally:
        loader.dispose()
    if json_data is not None:
        data = json_data  # the same structure; the json module's numbers (1e-05) are the JSON ones
    config = {"layers": data} if isinstance(data, list) else data
    lines = {i: _line(node) for i, node in enumerate(layers_node.value)}
    return config, lines


def _read_json(text: str, path: Path):
    """The data of a JSON model file; ConfigError with the line and column of a syntax error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}, line {err.lineno}, column {err.colno}: not valid JSON ({err.msg}); "
                          "check commas, quotes and brackets.") from None


def load_model_file(path, input_shape=None) -> Sequential:
    """Build the Sequential a YAML/JSON model file describes; errors name the file and line.

    Args:
        path: the model file.
        input_shape: (C, H, W) to use instead of (or when the file lacks) its input_shape.
    """
    config, lines = read_model_config(path)
    layers, shift = [], 0
    for index, spec in enumerate(config.get("layers") or []):
        try:
            layer = layer_from_config(spec)
        except ConfigError as err:
            raise ConfigError(f"{path}, line {lines[index]}: {err}") from None
        if type(layer).__name__ == "Input" and index == 0:
            shift = 1  # Input is not kept as a layer, so model layer i is file item i + 1
        layers.append(layer)
    shape = input_shape if input_shape is not None else config.get("input_shape")
    try:
        return Sequential(layers, input_shape=shape, name=config.get("name"))
    except ShapeError as err:
        index = _failed_index(str(err))
        line = f", line {lines[index + shift]}" if index is not None and index + shift in lines else ""
        raise ShapeError(f"{path}{line}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _failed_index(message: str) -> int | None:
    """The top-level layer number in 'layer 9 (MaxPool2D) ...' or 'layer 3.block.0 (...)'."""
    if message.startswith("layer "):
        head = message[6:].split(" ", 1)[0].split(".")[0]
        if head.isdigit():
            return int(head)
    return None


def save_model_file(model: Sequential, path) -> Path:
    """Write `model`'s architecture (not its weights) as YAML, or JSON for a .json path, atomically.

    Args:
        model: a Sequential.
        path: destination; .json writes JSON, anything else YAML.
    """
    path = Path(path)
    config = model.to_config()
    # layers without arguments as bare names: `- Flatten` rather than `- Flatten: {}`
    config["layers"] = [next(iter(spec)) if not next(iter(spec.values())) else spec for spec in config["layers"]]
    if path.suffix.lower() == ".json":
        text = json.dumps(config, indent=2) + "\n"
    else:
        text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    return write_text(path, text)
