"""Wide ResNet: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146).

WRN-d-k: a 3x3 convolution to 16 channels, then three groups of (d - 4) / 6 pre-activation blocks
at 16k, 32k and 64k channels (strides 1, 2, 2), BN-ReLU, global average pooling and the classifier.
Each block is BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3 plus its input; where a block changes the
width or strides, the shortcut is a 1x1 convolution of the pre-activated input, as in the authors'
code. Counted at 10 classes on RGB input the paper's sizes come out: WRN-16-8 11.0 M parameters,
WRN-28-10 36.5 M (its table 2). Zhong et al.'s random erasing paper (arXiv:1708.04896) trains
WRN-28-10 to 4.01% test error on Fashion-MNIST, 3.65% with random erasing (96.35% accuracy).
"""

from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.facade import KerasFacade
from cnnlab.layers import Activation, BatchNorm, Conv2D, Dense, Dropout, GlobalAvgPool2D, Layer
from cnnlab.model import Sequential
from cnnlab.zoo.registry import register
from cnnlab.zoo.resnet import _build_chain, _conv


def _bn() -> BatchNorm:
    return BatchNorm(momentum=0.9, epsilon=1e-5)  # torch's momentum 0.1 (the authors' code)


class WideBlock(Layer):
    """Pre-activation block: (C, H, W) -> (out_ch, H/s, W/s)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1, self.relu1 = _bn(), Activation("relu")
        self.conv1 = _conv(out_ch, 3, stride)
        self.bn2, self.relu2 = _bn(), Activation("relu")
        self.dropout = Dropout(dropout) if dropout else None
        self.conv2 = _conv(out_ch, 3)
        self.shortcut = _conv(out_ch, 1, stride) if stride != 1 or in_ch != out_ch else None

    def _build(self, input_shape):
        main = [self.bn1, self.conv1, self.bn2, self.conv2]
        out = _build_chain(main, input_shape)
        skip = input_shape if self.shortcut is None else self.shortcut.build(input_shape)
        if skip != out:  # a wrong stride or width in WideResNet, never the user's input
            raise ShapeError(f"{self.label}: main path gives {out} but the shortcut gives {skip}")
        return out

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(KerasFacade, nn.Module):
    """WRN-depth-width; every layer is built at construction from `input_shape`. With Keras' compile /
    fit / evaluate / predict / save (cnnlab.facade)."""

    def __init__(self, depth: int, width: int, num_classes: int, input_shape: tuple, dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"Wide ResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if width < 1 or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"Wide ResNet needs width >= 1 and dropout in [0, 1), got {width} and {dropout}")
        n = (depth - 4) // 6
        self.conv1 = _conv(16, 3)  # 32 -> 32
        channels, groups = 16, []
        for planes, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):  # 32 -> 32 -> 16 -> 8
            blocks = [WideBlock(channels, planes, stride, dropout)]
            blocks += [WideBlock(planes, planes, 1, dropout) for _ in range(n - 1)]
            groups.append(Sequential(blocks))
            channels = planes
        self.block1, self.block2, self.block3 = groups
        self.bn, self.relu = _bn(), Activation("relu")
        self.avgpool = GlobalAvgPool2D()
        self.fc = Dense(num_classes)
        order = [self.conv1, *groups, self.bn, self.avgpool, self.fc]
        self.output_shape = _build_chain(order, tuple(input_shape))
        for m in self.modules():  # the authors' init: He normal (fan_out) for the convolutions
            if isinstance(m, Conv2D):
                nn.init.kaiming_normal_(m.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.avgpool(self.relu(self.bn(x))))


def _wrn(depth, width, num_classes, in_channels, input_size, dropout):
    return WideResNet(depth, width, num_classes, (in_channels, *input_size), dropout)


@register("wrn-16-8", origin="Zagoruyko & Komodakis 2016, Wide ResNet 16-8: 2 pre-activation blocks per group, "
          "widths 128-256-512", input_shape=(3, 32, 32))
def wrn_16_8(num_classes, in_channels, input_size, dropout=0.0):
    """WRN-16-8 (11.0 M parameters). Args: dropout between each block's convolutions."""
    return _wrn(16, 8, num_classes, in_channels, input_size, dropout)


@register("wrn-28-10", origin="Zagoruyko & Komodakis 2016, Wide ResNet 28-10: 4 pre-activation blocks per group, "
          "widths 160-320-640", input_shape=(3, 32, 32))
def wrn_28_10(num_classes, in_channels, input_size, dropout=0.0):
    """WRN-28-10 (36.5 M parameters). Args: dropout between each block's convolutions."""
    return _wrn(28, 10, num_classes, in_channels, input_size, dropout)
