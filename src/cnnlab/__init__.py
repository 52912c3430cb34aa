"""cnnlab: convolutional neural networks for image classification, the way the lectures teach them."""

__version__ = "0.1.0"
