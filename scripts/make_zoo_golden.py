"""Regenerate tests/golden/<model>.json: each zoo model's parameter count and first logits at a fixed seed.

Run after an intended change to a zoo model or to a layer's initialisation, then review the diff:
    .venv/bin/python scripts/make_zoo_golden.py [NAME ...]

The recipe (tests/test_zoo.py replays it): torch.manual_seed(0), build with 10 classes and the
arguments below, cast to float64 (so the numbers hold across CPUs), eval mode (no dropout, BN on its
running statistics), feed a batch of 2 drawn from torch.Generator().manual_seed(1), keep the
first sample's logits. The biggest models run at a reduced size to keep the tests fast.
"""

import json
import sys
from pathlib import Path

import torch

from cnnlab import zoo

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"

# Models too slow for a 2-core test at their native size: the create() arguments their golden runs
# with (tests/test_zoo.py checks the native-size parameter counts separately, on the meta device).
REDUCED = {
    "vgg11": {"input_size": 32}, "vgg11_bn": {"input_size": 32},  # 7.6 GFLOPs at 224
    "vgg16": {"input_size": 32}, "vgg16_bn": {"input_size": 32},  # 15.5 GFLOPs
    # 7.8-11.5 GFLOPs at 224; the ImageNet stem forced at 32 px leaves layer4 at 1x1
    "resnet101": {"input_size": 32, "stem": "imagenet"}, "resnet152": {"input_size": 32, "stem": "imagenet"},
}


def golden_args(name: str) -> dict:
    """The create() arguments (besides num_classes=10) a model's golden output is computed with."""
    info = next(i for i in zoo.list_models() if i.name == name)
    args = dict(REDUCED.get(name, {"input_size": info.input_shape[1]}))
    size = args["input_size"]
    args["input_size"] = [size, size] if isinstance(size, int) else list(size)
    return args


def golden_logits(name: str, args: dict) -> tuple[torch.nn.Module, torch.Tensor]:
    """The recipe above: (the float64 model in eval mode, the logits of the first sample)."""
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10, **args).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *model.input_shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return model, model(x)[0]


def main(names: list[str]) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names or [i.name for i in zoo.list_models()]:
        args = golden_args(name)
        model, logits = golden_logits(name, args)
        record = {
            "model": name,
            "args": args,
            "num_classes": 10,
            "parameters": sum(p.numel() for p in model.parameters()),
            "logits": [round(v, 10) for v in logits.tolist()],
        }
        (GOLDEN / f"{name}.json").write_text(json.dumps(record) + "\n")
        print(f"{name}: {record['parameters']:,} parameters with {args}")  # a script: print is fine


if __name__ == "__main__":
    main(sys.argv[1:])
