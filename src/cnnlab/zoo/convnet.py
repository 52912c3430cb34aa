"""features -> avgpool -> classifier: the layout torchvision draws LeNet-like, AlexNet and VGG in.

Shared by lenet.py, alexnet.py and vgg.py so each of those reads as its paper's layer list.
Weights start as every cnnlab layer's do (Keras' glorot_uniform, zero biases), not as the papers'
(AlexNet's N(0, 0.01) with some biases at 1); `cnnlab train --init he_normal` re-initialises.
"""

from torch import nn

from cnnlab.facade import KerasFacade
from cnnlab.model import Sequential


class ConvNet(KerasFacade, nn.Module):
    """A plain convolutional classifier with torchvision's child names: features, avgpool, classifier;
    with Keras' compile / fit / evaluate / predict / save (cnnlab.facade)."""

    def __init__(self, features: Sequential, avgpool: nn.Module, classifier: Sequential):
        super().__init__()
        self.features = features
        self.avgpool = avgpool
        self.classifier = classifier  # starts with Flatten: (N, C, H, W) -> (N, C*H*W)
        self.output_shape = classifier.output_shape  # (num_classes,)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def convnet(features: list, classifier: list, input_shape: tuple, pool_to: tuple | None = None) -> ConvNet:
    """Build features on `input_shape`, then the classifier on whatever shape the features leave.

    pool_to=(h, w) adds torchvision's adaptive average pool to h x w, so inputs larger than the
    paper's still meet a classifier of the paper's size. When the feature map is already h x w
    (the paper's input) the pool changes nothing; when it is smaller (28-32 px images) there is
    nothing to pool, so avgpool is the identity and the first Dense is sized from the real map
    instead of upsampling one pixel to h x w as torchvision would.
    """
    features = Sequential(features, input_shape=input_shape)
    c, h, w = features.output_shape
    if pool_to is not None and (h, w) != tuple(pool_to) and h >= pool_to[0] and w >= pool_to[1]:
        avgpool, (h, w) = nn.AdaptiveAvgPool2d(pool_to), pool_to
    else:
        avgpool = nn.Identity()
    return ConvNet(features, avgpool, Sequential(classifier, input_shape=(c, h, w)))
