"""Regenerate tests/golden/<model>.json: each zoo model's parameter count and first logits at a fixed seed.

Run after an intended change to a zoo model or to a layer's initialisation, then review the diff:
    .venv/bin/python scripts/make_zoo_golden.py [NAME ...]

The recipe (tests/test_zoo.py replays it): torch.manual_seed(0), build with 10 classes at the
input below, cast to float64 (so the numbers hold across CPUs), eval mode (no dropout, BN on its
running statistics), feed a batch of 2 drawn from torch.Generator().manual_seed(1), keep the
first sample's logits. The biggest models run at a reduced size to keep the tests fast.
"""

import json
import sys
from pathlib import Path

import torch

from cnnlab import zoo

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"

# Models too slow for a 2-core test at their native size: the (H, W) their golden runs at.
# (tests/test_zoo.py checks the native-size parameter counts separately, on the meta device.)
REDUCED = {
    "vgg11": 32, "vgg11_bn": 32, "vgg16": 32, "vgg16_bn": 32,  # 7.6-15.5 GFLOPs at 224
    # 3.6-11.5 GFLOPs at 224; at 64 px they still take the ImageNet stem, so every layer is exercised
    "resnet34": 64, "resnet50": 64, "resnet101": 64, "resnet152": 64,
}


def golden_input_size(name: str) -> tuple[int, int]:
    """The (H, W) a model's golden output is computed at."""
    info = next(i for i in zoo.list_models() if i.name == name)
    size = REDUCED.get(name)
    return (size, size) if size else tuple(info.input_shape[1:])


def golden_logits(name: str, input_size: tuple[int, int]) -> tuple[torch.nn.Module, torch.Tensor]:
    """The recipe above: (the float64 model in eval mode, the logits of the first sample)."""
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10, input_size=input_size).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *model.input_shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return model, model(x)[0]


def main(names: list[str]) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names or [i.name for i in zoo.list_models()]:
        size = golden_input_size(name)
        model, logits = golden_logits(name, size)
        record = {
            "model": name,
            "input_size": list(size),
            "num_classes": 10,
            "parameters": sum(p.numel() for p in model.parameters()),
            "logits": [round(v, 10) for v in logits.tolist()],
        }
        (GOLDEN / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {record['parameters']:,} parameters at {size[0]}x{size[1]}")  # a script: print is fine


if __name__ == "__main__":
    main(sys.argv[1:])
