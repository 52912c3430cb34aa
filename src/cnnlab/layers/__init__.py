"""Keras-named layers as PyTorch modules (NCHW), each knowing its output shape before data flows."""

from cnnlab.layers.activations import ACTIVATIONS, make_activation
from cnnlab.layers.base import LAYERS, Layer, layer_class, layer_from_config, layer_to_config, register
from cnnlab.layers.conv import Conv2D, ZeroPadding2D
from cnnlab.layers.core import Activation, Dense, Dropout, Flatten, Input
from cnnlab.layers.norm import BatchNorm, LocalResponseNorm
from cnnlab.layers.pool import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D, MinPool2D
from cnnlab.layers.residual import Residual
from cnnlab.layers.shapes import ShapeWarning, same_pads

# Keras' names for the same classes, so lecture code (`from keras.layers import MaxPooling2D, ...`)
# reads the same here; model files accept them too (base.ALIASES)
Convolution2D = Conv2D
InputLayer = Input
BatchNormalization = BatchNorm
LRN = LocalResponseNorm
MaxPooling2D = MaxPool2D
MinPooling2D = MinPool2D
AveragePooling2D = AvgPooling2D = AvgPool2D
GlobalMaxPooling2D = GlobalMaxPool2D
GlobalAveragePooling2D = GlobalAvgPooling2D = GlobalAvgPool2D

__all__ = [
    "ACTIVATIONS", "LAYERS", "Activation", "AvgPool2D", "BatchNorm", "Conv2D", "Dense", "Dropout",
    "Flatten", "GlobalAvgPool2D", "GlobalMaxPool2D", "Input", "Layer", "LocalResponseNorm",
    "MaxPool2D", "MinPool2D", "Residual", "ShapeWarning", "ZeroPadding2D", "layer_class",
    "layer_from_config", "layer_to_config", "make_activation", "register", "same_pads",
    "AveragePooling2D", "AvgPooling2D", "BatchNormalization", "Convolution2D", "GlobalAveragePooling2D",
    "GlobalAvgPooling2D", "GlobalMaxPooling2D", "InputLayer", "LRN", "MaxPooling2D", "MinPooling2D",
]
