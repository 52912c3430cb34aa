"""The lectures' own Keras models, written in cnnlab as the slides write them.

Both are plain cnnlab `Sequential`s (children "0", "1", ...), so `to_config()` turns them into the
same YAML a user would write by hand. The output is logits: softmax lives in the loss.
"""

from cnnlab.layers import Conv2D, Dense, Flatten, MaxPool2D
from cnnlab.model import Sequential
from cnnlab.zoo.registry import register


@register("seed-cnn", origin="the lecture's TensorFlow CNN as the speed benchmarks run it: conv 16-32-64 each with 2x2 'valid' pooling, Dense 256", input_shape=(1, 28, 28))
def seed_cnn(num_classes, in_channels, input_size):
    """Three 3x3 same convolutions 16-32-64, each with 2x2 max pooling, then Dense 256 and the output.

    The pooling is Keras' default, 'valid', as the peers' benchmark of this model (Keras, a plain
    PyTorch loop) runs it, so `cnnlab bench` compares like with like: 7 -> 3 at the third pooling,
    Flatten 576, 173,578 parameters. Lecture 004's slide pools with padding="same" (7 -> 4,
    Flatten 1024, 288,266 parameters): a model file with `MaxPool2D: {padding: same}` builds it
    (docs/model-files.md; tests/test_model.py checks it against Keras' shapes and counts).
    """
    return Sequential(
        [
            Conv2D(16, 3, padding="same", activation="relu"),  # (16, 28, 28)
            MaxPool2D(2),  # (16, 14, 14)
            Conv2D(32, 3, padding="same", activation="relu"),  # (32, 14, 14)
            MaxPool2D(2),  # (32, 7, 7)
            Conv2D(64, 3, padding="same", activation="relu"),  # (64, 7, 7)
            MaxPool2D(2),  # (64, 3, 3): 7/2 floors, one row and column dropped
            Flatten(),  # 576
            Dense(256, activation="relu"),
            Dense(num_classes),
        ],
        input_shape=(in_channels, *input_size),
    )


@register("keras-cnn", origin="the other lecture's Keras model: conv 32-32-64-64 each with 2x2 pooling, Dense 64", input_shape=(1, 28, 28))
def keras_cnn(num_classes, in_channels, input_size):
    """Four 3x3 same convolutions 32-32-64-64, each followed by 2x2 max pooling, then Dense 64 and the output."""
    return Sequential(
        [
            Conv2D(32, 3, padding="same", activation="relu"),  # (32, 28, 28)
            MaxPool2D(2),  # (32, 14, 14)
            Conv2D(32, 3, padding="same", activation="relu"),
            MaxPool2D(2),  # (32, 7, 7)
            Conv2D(64, 3, padding="same", activation="relu"),
            MaxPool2D(2),  # (64, 3, 3)
            Conv2D(64, 3, padding="same", activation="relu"),
            MaxPool2D(2),  # (64, 1, 1): the fourth pooling leaves one pixel at 28x28
            Flatten(),  # 64
            Dense(64, activation="relu"),
            Dense(num_classes),
        ],
        input_shape=(in_channels, *input_size),
    )
