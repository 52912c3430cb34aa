"""The whitened stem (airbench's init) and the GPU-only switches' errors on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab import zoo
from cnnlab.bench.session import train_in_memory
from cnnlab.data import ImageDataset, TensorBatches, load_dataset
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig
from cnnlab.train.cuda_graph import GraphedModel
from cnnlab.train.whitening import whiten_first_conv


@pytest.fixture(scope="module")
def mini():
    return load_dataset("fashion-mnist-mini")


def _images(data, n=1000):
    return TensorBatches(data.x_train, data.y_train, 64, mean=data.mean, std=data.std).sample_images(n)


def test_sample_images_are_normalised_like_the_batches(mini):
    batches = TensorBatches(mini.x_train, mini.y_train, 64, shuffle=False, mean=mini.mean, std=mini.std,
                            channels_last=True)
    x, _ = next(iter(batches))
    assert batches.sample_images(64).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batches.sample_images(64), x)
    assert len(batches.sample_images(10 ** 9)) == len(mini.x_train)  # no more than there are


def test_whitened_stem_decorrelates_patches_and_is_frozen(mini):
    images = _images(mini)
    model = zoo.create("fastnet-large")
    conv = whiten_first_conv(model, images)
    assert not conv.weight.requires_grad and conv.bias.requires_grad  # only the bias trains
    with torch.no_grad():
        out = nn.functional.conv2d(images, conv.weight)  # (N, 8, 27, 27): 4 patch dims, then their negations
    assert torch.equal(out[:, 4:], -out[:, :4])
    z = out[:, :4].permute(0, 2, 3, 1).reshape(-1, 4).double()
    covariance = z.T @ z / len(z)
    # identity up to eps / (lambda + eps) on the smallest eigenvalue (airbench's eps 5e-4)
    assert torch.allclose(covariance, torch.eye(4, dtype=torch.float64), atol=0.02)


def test_whitening_needs_a_matching_stem(mini):
    with pytest.raises(ConfigError, match=r"2\*C\*k\*k = 18 filters"):
        whiten_first_conv(zoo.create("seed-cnn"), _images(mini))  # 32 filters of 3x3 over 1 channel
    with pytest.raises(ConfigError, match="needs a model with a convolution"):
        whiten_first_conv(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), _images(mini))
    with pytest.raises(ConfigError, match=r"images \(N, 1, H, W\)"):
        whiten_first_conv(zoo.create("fastnet-large"), torch.zeros(4, 3, 28, 28))


def test_training_with_the_whitened_stem_keeps_the_stem_fixed(mini):
    data = ImageDataset(mini.name, mini.classes, mini.x_train[:256], mini.y_train[:256], mini.x_test[:64],
                        mini.y_test[:64])
    cfg = TrainConfig(model="fastnet-large", epochs=1, batch_size=64, optimizer="sgd", lr=0.5, momentum=0.85,
                      nesterov=True, whiten_stem=True, bias_lr_scale=64.0, val_split=0.0)
    session = train_in_memory(cfg, data, "cpu")
    stem = session.model.layers[0].conv
    expected = whiten_first_conv(zoo.create("fastnet-large"), _images(data, 5000)).weight
    assert torch.equal(stem.weight, expected)  # whitened from the training images, then never updated
    assert all(torch.isfinite(p).all() for p in session.model.parameters())


def test_cuda_graph_is_refused_off_cuda_and_with_compile(mini):
    with pytest.raises(ConfigError, match="cuda_graph and compile cannot be combined"):
        TrainConfig(cuda_graph=True, compile=True)
    data = ImageDataset(mini.name, mini.classes, mini.x_train[:128], mini.y_train[:128], mini.x_test[:32],
                        mini.y_test[:32])
    with pytest.raises(ConfigError, match="cuda_graph needs a CUDA device; this run trains on cpu"):
        train_in_memory(TrainConfig(model="seed-cnn", epochs=1, batch_size=64, cuda_graph=True), data, "cpu")
    with pytest.raises(ConfigError, match="needs the model and batches on a CUDA device"):
        GraphedModel(zoo.create("seed-cnn"), torch.zeros(2, 1, 28, 28))


def test_a_dilated_stem_whitens_the_pixels_its_taps_see(mini):
    # a dilation-2 3x3 filter sees pixels 2 apart: the covariance must be of those, not of 3x3 blocks
    from cnnlab.layers import Conv2D, Dense, Flatten
    from cnnlab.model import Sequential

    images = _images(mini)
    model = Sequential([Conv2D(18, 3, dilation_rate=2), Flatten(), Dense(10)], input_shape=(1, 28, 28))
    conv = whiten_first_conv(model, images)
    with torch.no_grad():
        out = nn.functional.conv2d(images, conv.weight, dilation=2)[:, :9]
    z = out.permute(0, 2, 3, 1).reshape(-1, 9).double()
    covariance = z.T @ z / len(z)
    assert torch.allclose(covariance, torch.eye(9, dtype=torch.float64), atol=0.05)
