"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional neural
networks", NIPS 2012, figure 2, as one tower (the paper split it over two GPUs only for memory).

Native input 3x227x227 (the paper says 224, but 11x11 stride 4 only gives its 55x55 from 227).
LRN (size 5, alpha 1e-4, beta 0.75, k 2: the paper's section 3.3) follows conv1 and conv2, each
before its overlapping 3x3 stride 2 max pool (section 3.4).
"""

from cnnlab.layers import Conv2D, Dense, Dropout, Flatten, LocalResponseNorm, MaxPool2D
from cnnlab.zoo.convnet import convnet
from cnnlab.zoo.registry import register


def _alexnet(widths, conv1, k2, hidden, num_classes, in_channels, input_size, pool_to):
    """widths: conv1-conv5 filters; conv1: (kernel, stride, padding); k2: conv2's kernel."""
    c1, c2, c3, c4, c5 = widths
    k1, s1, p1 = conv1
    features = [
        Conv2D(c1, k1, strides=s1, padding=p1, activation="relu"),
        LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
        MaxPool2D(3, strides=2),  # overlapping: window 3 > stride 2
        Conv2D(c2, k2, padding=k2 // 2, activation="relu"),
        LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
        MaxPool2D(3, strides=2),
        Conv2D(c3, 3, padding=1, activation="relu"),
        Conv2D(c4, 3, padding=1, activation="relu"),
        Conv2D(c5, 3, padding=1, activation="relu"),
        MaxPool2D(3, strides=2),
    ]
    classifier = [
        Flatten(),
        Dropout(0.5),
        Dense(hidden, activation="relu"),
        Dropout(0.5),
        Dense(hidden, activation="relu"),
        Dense(num_classes),
    ]
    return convnet(features, classifier, (in_channels, *input_size), pool_to=pool_to)


@register("alexnet", origin="Krizhevsky et al. 2012, AlexNet: 96-256-384-384-256, LRN, overlapping pooling, FC 4096", input_shape=(3, 227, 227))
def alexnet(num_classes, in_channels, input_size):
    """AlexNet, one tower: 62,378,344 parameters at 1000 classes and 227 px.

    Shapes at 227: conv1 11x11/4 -> 96x55x55, pool -> 27, conv2 5x5 pad 2 -> 256x27x27, pool -> 13,
    conv3-5 3x3 pad 1 -> 384, 384, 256 x13x13, pool -> 256x6x6 = 9,216 -> 4096 -> 4096 -> classes.
    Larger inputs are average-pooled to 6x6 as torchvision does.
    """
    return _alexnet((96, 256, 384, 384, 256), (11, 4, 0), 5, 4096, num_classes, in_channels, input_size, (6, 6))


@register("alexnet-small", origin="AlexNet's plan scaled for 28-32 px images: one GPU tower 48-128-192-192-128", input_shape=(3, 32, 32))
def alexnet_small(num_classes, in_channels, input_size):
    """AlexNet scaled for 28-32 px images (CIFAR-10, Fashion-MNIST), same layer plan.

    The scaling: a 32 px image is 1/7 of 227, so conv1 becomes 5x5 stride 1 'same' (not 11x11/4),
    which leaves the three overlapping 3/2 pools to do the shrinking: 32 -> 15 -> 7 -> 3 (28 -> 13
    -> 6 -> 2). Widths are one of the paper's two GPU towers, 48-128-192-192-128, and the FC layers
    1024 wide instead of 4096, so the classifier no longer dwarfs the features. LRN, ReLU and
    dropout 0.5 are kept.
    """
    return _alexnet((48, 128, 192, 192, 128), (5, 1, "same"), 5, 1024, num_classes, in_channels, input_size, None)
