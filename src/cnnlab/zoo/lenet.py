"""LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998, figure 2.

Native input 1x32x32: the paper pads 28x28 MNIST digits into a 32x32 field, so for 28x28 data
the data layer pads by 2 (at input_size=28, S4 leaves 4x4 maps and C5's 5x5 kernel does not
fit: a ShapeError at build time).
"""

from cnnlab.layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D
from cnnlab.zoo.convnet import convnet
from cnnlab.zoo.registry import register


def _lenet(activation, pool, num_classes, in_channels, input_size):
    features = [
        Conv2D(6, 5, activation=activation),  # C1: (6, 28, 28), 6*(1*25+1) = 156 params
        pool(2),  # S2: (6, 14, 14)
        Conv2D(16, 5, activation=activation),  # C3: (16, 10, 10), full connections: 16*(6*25+1) = 2,416
        pool(2),  # S4: (16, 5, 5)
        Conv2D(120, 5, activation=activation),  # C5: (120, 1, 1), a convolution: 120*(16*25+1) = 48,120
    ]
    classifier = [
        Flatten(),  # 120
        Dense(84, activation=activation),  # F6: 84*(120+1) = 10,164
        Dense(num_classes),  # output: 10*(84+1) = 850 at 10 classes
    ]
    return convnet(features, classifier, (in_channels, *input_size))


@register("lenet5", origin="LeCun et al. 1998, LeNet-5: tanh, 2x2 average subsampling, C5 120, F6 84", input_shape=(1, 32, 32))
def lenet5(num_classes, in_channels, input_size):
    """LeNet-5 as usually counted: 61,706 parameters at 10 classes.

    The usual count: C3 connects to all six S2 maps (the paper's table I connects each C3 map to
    3-6 of them), S2/S4 are parameter-free 2x2 average pooling (the paper's have a trainable
    coefficient and bias per map), tanh instead of the paper's scaled 1.7159*tanh(2a/3), and a
    Dense output giving logits instead of the paper's Euclidean RBF units.
    """
    return _lenet("tanh", AvgPool2D, num_classes, in_channels, input_size)


@register("lenet5-relu", origin="LeNet-5 the modern way: ReLU and 2x2 max pooling", input_shape=(1, 32, 32))
def lenet5_relu(num_classes, in_channels, input_size):
    """LeNet-5 with ReLU and max pooling, the variant the lectures train today; same 61,706 parameters."""
    return _lenet("relu", MaxPool2D, num_classes, in_channels, input_size)
