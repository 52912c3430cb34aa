"""ResNet: He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016
(arXiv:1512.03385), table 1, as torchvision builds it (v1.5: a Bottleneck strides on its 3x3).

Names follow torchvision: conv1, bn1, relu, maxpool, layer1..layer4 (each a run of blocks with
conv1/bn1/conv2/bn2[/conv3/bn3] and a `downsample` projection), avgpool, fc; so published counts
match: resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032, resnet101 44,549,160,
resnet152 60,192,808 parameters at 1000 classes.

Two stems, picked from the input size unless `stem=` says otherwise:
- "imagenet" (inputs >= 64 px): 7x7/2 convolution + 3x3/2 max pool, 224 -> 112 -> 56;
- "small" (CIFAR-style, < 64 px): one 3x3/1 convolution, no max pool, 32 stays 32, so layer4
  still sees 4x4 instead of a 1x1 remnant.
BatchNorm uses torch's defaults, momentum 0.1 in torch's convention (= 0.9 in Keras', which is
what cnnlab's BatchNorm takes) and epsilon 1e-5.
"""

from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.facade import KerasFacade
from cnnlab.layers import Activation, BatchNorm, Conv2D, Dense, GlobalAvgPool2D, Layer, MaxPool2D, ZeroPadding2D
from cnnlab.model import Sequential
from cnnlab.zoo.registry import register


def _bn() -> BatchNorm:
    return BatchNorm(momentum=0.9, epsilon=1e-5)  # torch's momentum 0.1 and epsilon 1e-5


def _conv(out_ch: int, kernel: int, stride: int = 1) -> Conv2D:
    """A bias-free convolution with torchvision's padding (kernel // 2): BN's beta is the bias."""
    return Conv2D(out_ch, kernel, strides=stride, padding=kernel // 2, use_bias=False)


def _build_chain(layers, shape: tuple) -> tuple:
    """Build cnnlab layers one after another from `shape` (no batch); return the last output shape."""
    for layer in layers:
        if isinstance(layer, Layer):
            shape = layer.build(shape)
    return shape


class _Block(Layer):
    """What both blocks share: relu(main(x) + shortcut(x)), and building both paths to the same shape."""

    def _main(self) -> list:
        raise NotImplementedError

    def _build(self, input_shape):
        out = _build_chain(self._main(), input_shape)
        skip = input_shape if self.downsample is None else self.downsample.build(input_shape)
        if skip != out:  # a wrong stride or width in _make_layer, never the user's input
            raise ShapeError(f"{self.label}: main path gives {out} but the shortcut gives {skip}")
        return out


class BasicBlock(_Block):
    """Two 3x3 convolutions plus the shortcut (resnet18/34): (C, H, W) -> (planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(planes, 3, stride)
        self.bn1 = _bn()
        self.relu = Activation("relu")
        self.conv2 = _conv(planes, 3)
        self.bn2 = _bn()
        # the paper's option B: a 1x1 projection + BN only where the shape changes, else identity
        change = stride != 1 or in_ch != planes
        self.downsample = Sequential([_conv(planes, 1, stride), _bn()]) if change else None

    def _main(self):
        return [self.conv1, self.bn1, self.conv2, self.bn2]

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (strided, as v1.5), 1x1 expand by 4, plus the shortcut (resnet50/101/152)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = _conv(planes, 1)
        self.bn1 = _bn()
        self.conv2 = _conv(planes, 3, stride)
        self.bn2 = _bn()
        self.conv3 = _conv(out_ch, 1)
        self.bn3 = _bn()
        self.relu = Activation("relu")
        change = stride != 1 or in_ch != out_ch
        self.downsample = Sequential([_conv(out_ch, 1, stride), _bn()]) if change else None

    def _main(self):
        return [self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3]

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(KerasFacade, nn.Module):
    """The stem, four stages of blocks at 64-128-256-512 planes (strides 1, 2, 2, 2), pool, fc.

    Every layer is built at construction from `input_shape`, so shapes are known before data flows.
    With Keras' compile / fit / evaluate / predict / save (cnnlab.facade).
    """

    def __init__(self, block, layers, num_classes, input_shape, stem, zero_init_residual):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = _conv(64, 7, stride=2)  # 224 -> 112
            # 112 -> 56 with torchvision's padding of 1 on every side (Keras' ResNet50 does the same):
            # the input is post-ReLU, >= 0, so zero padding never wins a max, exactly like -inf
            self.maxpool = Sequential([ZeroPadding2D(1), MaxPool2D(3, strides=2)])
        else:
            self.conv1 = _conv(64, 3)  # 32 -> 32
            self.maxpool = nn.Identity()
        self.bn1 = _bn()
        self.relu = Activation("relu")
        self.in_ch = 64
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)  # 56 at 224 px
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)  # 28
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)  # 14
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)  # 7
        self.avgpool = GlobalAvgPool2D()  # (N, 512*expansion, 7, 7) -> (N, 512*expansion)
        self.fc = Dense(num_classes)
        order = [self.conv1, self.bn1, self.maxpool, self.layer1, self.layer2, self.layer3, self.layer4,
                 self.avgpool, self.fc]
        self.output_shape = _build_chain(order, tuple(input_shape))
        self._init_weights(zero_init_residual)

    def _make_layer(self, block, planes, blocks, stride):
        layers = [block(self.in_ch, planes, stride)]  # the first block of a stage changes the shape
        self.in_ch = planes * block.expansion
        layers += [block(self.in_ch, planes) for _ in range(1, blocks)]
        return Sequential(layers)

    def _init_weights(self, zero_init_residual):
        # torchvision's: He normal (fan_out) for convolutions, BN gamma 1 and beta 0; fc keeps
        # cnnlab's glorot_uniform.
        for m in self.modules():
            if isinstance(m, Conv2D):
                nn.init.kaiming_normal_(m.conv.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            # Goyal et al. 2017: each block starts as the identity, which helps large-batch training.
            for m in self.modules():
                if isinstance(m, _Block):
                    nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).bn.weight)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x))


def _resnet(block, layers, num_classes, in_channels, input_size, stem=None, zero_init_residual=False):
    stem = stem or ("imagenet" if min(input_size) >= 64 else "small")
    if stem not in ("imagenet", "small"):
        raise ConfigError(f"ResNet stem {stem!r} is unknown; use stem='imagenet' (7x7/2 + max pool) or 'small' (3x3/1)")
    return ResNet(block, layers, num_classes, (in_channels, *input_size), stem, zero_init_residual)


_ORIGIN = "He et al. 2015, ResNet"


@register("resnet18", origin=f"{_ORIGIN}-18: BasicBlock x [2, 2, 2, 2]", input_shape=(3, 224, 224))
def resnet18(num_classes, in_channels, input_size, stem=None, zero_init_residual=False):
    """ResNet-18. Args: stem 'imagenet' | 'small' (None: by input size); zero_init_residual."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, input_size, stem, zero_init_residual)


@register("resnet34", origin=f"{_ORIGIN}-34: BasicBlock x [3, 4, 6, 3]", input_shape=(3, 224, 224))
def resnet34(num_classes, in_channels, input_size, stem=None, zero_init_residual=False):
    """ResNet-34. Args: stem 'imagenet' | 'small' (None: by input size); zero_init_residual."""
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, input_size, stem, zero_init_residual)


@register("resnet50", origin=f"{_ORIGIN}-50: Bottleneck x [3, 4, 6, 3]", input_shape=(3, 224, 224))
def resnet50(num_classes, in_channels, input_size, stem=None, zero_init_residual=False):
    """ResNet-50. Args: stem 'imagenet' | 'small' (None: by input size); zero_init_residual."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, input_size, stem, zero_init_residual)


@register("resnet101", origin=f"{_ORIGIN}-101: Bottleneck x [3, 4, 23, 3]", input_shape=(3, 224, 224))
def resnet101(num_classes, in_channels, input_size, stem=None, zero_init_residual=False):
    """ResNet-101. Args: stem 'imagenet' | 'small' (None: by input size); zero_init_residual."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, input_size, stem, zero_init_residual)


@register("resnet152", origin=f"{_ORIGIN}-152: Bottleneck x [3, 8, 36, 3]", input_shape=(3, 224, 224))
def resnet152(num_classes, in_channels, input_size, stem=None, zero_init_residual=False):
    """ResNet-152. Args: stem 'imagenet' | 'small' (None: by input size); zero_init_residual."""
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, input_size, stem, zero_init_residual)
