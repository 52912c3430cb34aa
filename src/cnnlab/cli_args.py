"""The `cnnlab` command's argparse pieces: value types, the train flags derived from TrainConfig,
and the fix-ups of argv that argparse cannot do itself."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def shape_type(text: str) -> tuple[int, ...]:
    """'1x28x28' -> (1, 28, 28)."""
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 1x28x28 (channels x height x width)")
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"'{text}' must be positive sizes like 1x28x28")
    return dims


def at_least(low: int):
    """An argparse type: a whole number >= low, else argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}: give {low} or more")
        return value

    return parse


def yaml_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a YAML value, e.g. '{{flip: true, translate: 2}}'")


def choices(*allowed: str):
    """An argparse type for a repeatable flag that also takes a comma-separated list:
    'cpu-epoch,gpu-recipe' -> ['cpu-epoch', 'gpu-recipe'] (use with action='extend')."""

    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in names if t not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"'{bad[0] if bad else text}' is not one of {', '.join(allowed)}")
        return names

    return parse


def add_train_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """One flag per TrainConfig field, or per field in `only` (defaults None, so only flags given
    override a --config file)."""
    from cnnlab.train.config import TrainConfig

    types = {"int": int, "float": float, "str": str, "dict": yaml_value}
    for name, type_name, default, help_text in TrainConfig.fields_for_cli():
        if only is not None and name not in only:
            continue
        flag = "--" + name.replace("_", "-")
        shown = f"{help_text} (default: {default})"
        if type_name == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=shown)
        else:
            parser.add_argument(flag, dest=name, type=types[type_name], default=None, help=shown,
                                metavar=type_name.upper())


def unrecognized(parser: argparse.ArgumentParser, command: str | None, extra: list[str]) -> None:
    """Exit 2 naming the arguments no option took, in the subcommand's usage, with the closest option."""
    import difflib

    sub = parser
    if command:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub = subparsers.choices[command]
    options = [o for a in sub._actions for o in a.option_strings]
    flag = next((e.split("=", 1)[0] for e in extra if e.startswith("-")), None)
    close = difflib.get_close_matches(flag, options, n=1) if flag else []
    hint = f" (did you mean {close[0]}?)" if close else ""
    sub.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def attach_matrix_values(argv: list[str]) -> list[str]:
    """`--input -1,2;3,4` -> `--input=-1,2;3,4`: argparse takes a value starting with '-' for an
    option unless it is a lone negative number, and a filter's first weight is often negative."""
    out = []
    for token in argv:
        if out and out[-1] in ("--input", "--kernel") and token[:1] == "-" and token[1:2] in set("0123456789."):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out
