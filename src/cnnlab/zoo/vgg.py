"""VGG: Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015 (arXiv:1409.1556), table 1 configurations A (vgg11) and D (vgg16).

Written from a cfg list as torchvision does: a number is a 3x3 'same' convolution with that many
filters, "M" a 2x2 stride 2 max pool. The `_bn` variants put BatchNorm between each convolution and
its ReLU (not in the paper; Ioffe and Szegedy 2015), with torch's defaults (momentum 0.1 in torch's
convention = 0.9 in Keras', epsilon 1e-5) as torchvision has them.
"""

from cnnlab.layers import Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from cnnlab.zoo.convnet import convnet
from cnnlab.zoo.registry import register

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # 8 conv + 3 FC = 11
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # 13 + 3
}


def _features(cfg: list, batch_norm: bool) -> list:
    layers = []
    for v in cfg:
        if v == "M":
            # 'same' is the paper's pooling at every even size (224 -> 112 -> ... -> 7, 32 -> ... -> 1)
            # and lets odd sizes through: 28 -> 14 -> 7 -> 4 -> 2 -> 1 instead of dying at 0.
            layers.append(MaxPool2D(2, strides=2, padding="same"))
        elif batch_norm:
            layers += [Conv2D(v, 3, padding="same"), BatchNorm(momentum=0.9, epsilon=1e-5), Activation("relu")]
        else:
            layers.append(Conv2D(v, 3, padding="same", activation="relu"))
    return layers


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int, input_size: tuple):
    classifier = [
        Flatten(),  # 512*7*7 = 25,088 at 224 px
        Dense(4096, activation="relu"),
        Dropout(0.5),
        Dense(4096, activation="relu"),
        Dropout(0.5),
        Dense(num_classes),
    ]
    # pool_to=(7, 7): torchvision's adaptive average pool; at 224 px the map is already 7x7 (the
    # paper's count), larger inputs are pooled down to it, and a 32 px input's 1x1 map is left as
    # it is with the first Dense sized 512 -> 4096 (see convnet()).
    return convnet(_features(CFGS[cfg], batch_norm), classifier, (in_channels, *input_size), pool_to=(7, 7))


_ORIGIN = "Simonyan & Zisserman 2014, VGG"


@register("vgg11", origin=f"{_ORIGIN} configuration A: 8 conv 3x3 + 3 FC", input_shape=(3, 224, 224))
def vgg11(num_classes, in_channels, input_size):
    """VGG-11 (configuration A): 132,863,336 parameters at 1000 classes and 224 px."""
    return _vgg("A", False, num_classes, in_channels, input_size)


@register("vgg11_bn", origin=f"{_ORIGIN}-11 with BatchNorm after each convolution", input_shape=(3, 224, 224))
def vgg11_bn(num_classes, in_channels, input_size):
    """VGG-11 with BatchNorm: 132,868,840 parameters at 1000 classes and 224 px."""
    return _vgg("A", True, num_classes, in_channels, input_size)


@register("vgg16", origin=f"{_ORIGIN} configuration D: 13 conv 3x3 + 3 FC", input_shape=(3, 224, 224))
def vgg16(num_classes, in_channels, input_size):
    """VGG-16 (configuration D): 138,357,544 parameters at 1000 classes and 224 px."""
    return _vgg("D", False, num_classes, in_channels, input_size)


@register("vgg16_bn", origin=f"{_ORIGIN}-16 with BatchNorm after each convolution", input_shape=(3, 224, 224))
def vgg16_bn(num_classes, in_channels, input_size):
    """VGG-16 with BatchNorm: 138,365,992 parameters at 1000 classes and 224 px."""
    return _vgg("D", True, num_classes, in_channels, input_size)
