"""fastnet: small, wide, early-pooling networks that the speed recipes (train/recipes.py) train.

`fastnet` is the CPU recipe's net: three blocks conv-pool-BN-ReLU (the first convolution at full
resolution, the wider ones on 14x14 and 7x7 maps; BN and ReLU after the pooling, on a quarter of
the pixels), a flatten head. At 28x28 and widths 24-48-96 it costs 4.2 M multiply-adds per image,
twice seed-cnn's 2.1 M, yet an epoch takes ~5 s on the 2-core CPU in bf16 (seed-cnn's lecture
loop: 7.7 s), and with `--recipe fast` (Muon for its filters) it passes 91% Fashion-MNIST test
accuracy after 2 epochs where the lecture's CNN in Keras needs 11 (docs/speed.md).

`fastnet-large` is airbench94's network (Keller Jordan, github.com/KellerJordan/cifar10-airbench,
airbench94.py) adapted to any input: a 2x2 "whitening" stem convolution, three blocks
conv-pool-BN-GELU-conv-BN-GELU of widths 64-256-256, global max pool and a bias-free linear head
scaled by 1/9. As there: BatchNorm learns only its bias (scale fixed at 1), moving statistics with
torch momentum 0.4, and each block's convolutions start as identity maps (dirac) in their first
channels. The stem's data-dependent patch-whitening init and the BN-bias learning-rate multiplier
are training settings, not part of the net: TrainConfig's whiten_stem and bias_lr_scale (the GPU
recipes turn both on; train/whitening.py).

`fastnet-xl` is fastnet-large at airbench96's widths 128-384-512 (without airbench96's residual
third convolution per block), for the `best` recipe.

All are cnnlab Sequentials of Conv2D/BatchNorm/Activation layers, so summary, feature maps and
Grad-CAM find every Conv2D (its `.conv`) as in the other zoo models.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import Activation, BatchNorm, Conv2D, Dense, Flatten, GlobalMaxPool2D, Layer, MaxPool2D
from cnnlab.model import Sequential
from cnnlab.zoo.registry import register


def _check_widths(widths, name: str) -> tuple[int, ...]:
    widths = tuple(widths)
    if not widths or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ConfigError(f"{name} widths {widths!r} must be positive ints, e.g. (24, 48, 96)")
    return widths


@register("fastnet", origin="cnnlab's CPU speed net: conv-pool-BN-ReLU blocks 24-48-96, flatten head",
          input_shape=(1, 28, 28))
def fastnet(num_classes=10, in_channels=1, input_size=(28, 28), widths=(24, 48, 96)):
    """Per width a block Conv-MaxPool-BN-ReLU (airbench's order), then Flatten and Dense.

    Pooling right after each convolution halves the map before BatchNorm and ReLU, so they work on
    a quarter of the pixels: on the CPU, BN's backward pass at full size was a third of the step.

    Args:
        widths: filters of each convolution; the i-th runs at input_size / 2**i.
    """
    widths = _check_widths(widths, "fastnet")
    layers: list[Layer] = []
    for width in widths:  # 28x28: conv at 28, 14, 7; maps after each block 14, 7, 3
        layers += [
            Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="he_normal"),  # BN's beta is the bias
            MaxPool2D(2),
            BatchNorm(momentum=0.9, epsilon=1e-5),  # torch's own BN defaults (momentum 0.1 in torch's convention)
            Activation("relu"),
        ]
    layers += [Flatten(), Dense(num_classes)]  # 28x28, widths 24-48-96: (96, 3, 3) -> 864 -> 10
    return Sequential(layers, input_shape=(in_channels, *input_size))


class _Scale(Layer):
    """Multiply by a constant: airbench's head divides logits by 9 (its `scaling_factor=1/9`)."""

    def __init__(self, factor: float = 1.0):
        super().__init__()
        self.factor = float(factor)

    def _build(self, input_shape):
        return input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def get_config(self) -> dict:
        return {"factor": self.factor}


def _airbench_bn() -> BatchNorm:
    return BatchNorm(momentum=0.6, epsilon=1e-12)  # airbench94: torch momentum 0.4, eps 1e-12


def _block(width: int) -> list[Layer]:
    """airbench94's ConvGroup: conv, pool, BN, GELU, conv, BN, GELU; (C, H, W) -> (width, H/2, W/2)."""
    return [Conv2D(width, 3, padding="same", use_bias=False), MaxPool2D(2), _airbench_bn(), Activation("gelu"),
            Conv2D(width, 3, padding="same", use_bias=False), _airbench_bn(), Activation("gelu")]


@register("fastnet-large", origin="airbench94's CIFAR-10 speed-record net (K. Jordan, 2024), widths 64-256-256",
          input_shape=(1, 28, 28))
def fastnet_large(num_classes=10, in_channels=1, input_size=(28, 28), widths=(64, 256, 256)):
    """2x2 stem + GELU, three conv-pool-BN-GELU-conv-BN-GELU blocks, global max pool, linear / 9.

    Args:
        widths: filters of the three blocks (airbench94: 64, 256, 256; airbench96 widens them).
    """
    widths = _check_widths(widths, "fastnet-large")
    stem = 2 * in_channels * 2 * 2  # airbench: twice the number of 2x2 patch dimensions (24 for RGB)
    layers: list[Layer] = [Conv2D(stem, 2, padding="valid"), Activation("gelu")]  # 28 -> 27
    for width in widths:
        layers += _block(width)  # 27 -> 13 -> 6 -> 3
    layers += [GlobalMaxPool2D(), Dense(num_classes, use_bias=False), _Scale(1 / 9)]
    model = Sequential(layers, input_shape=(in_channels, *input_size))
    _airbench_init(model)
    return model


def _airbench_init(model: nn.Module) -> None:
    """BN scale frozen at 1 (bias-only BN) and dirac-initialised block convolutions, as airbench94 does."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(False)
        elif isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            with torch.no_grad():
                w = m.weight  # (out, in, 3, 3): the first `in` filters pass their input channel through
                nn.init.dirac_(w[: min(w.shape[0], w.shape[1])])


@register("fastnet-xl", origin="fastnet-large widened to 128-384-512 for the best recipe (airbench96's widths)",
          input_shape=(1, 28, 28))
def fastnet_xl(num_classes=10, in_channels=1, input_size=(28, 28), widths=(128, 384, 512)):
    """fastnet-large with airbench96's block widths, for long GPU runs.

    Args:
        widths: filters of the three blocks.
    """
    return fastnet_large(num_classes=num_classes, in_channels=in_channels, input_size=input_size, widths=widths)
