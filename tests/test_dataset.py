"""ImageDataset: statistics, stratified validation split, conversion to a model's input."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import ImageDataset, convert_images, stratified_split
from cnnlab.errors import ConfigError


def _dataset(n=200, channels=1, side=8, num_classes=4, seed=0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, side, side), generator=g, dtype=torch.uint8)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return ImageDataset("toy", [f"c{i}" for i in range(num_classes)], x, y, x[:10], y[:10])


def test_shape_properties():
    ds = _dataset(channels=3, side=5)
    assert ds.input_shape == (3, 5, 5) and ds.num_classes == 4


def test_mean_std_per_channel_match_float64():
    ds = _dataset(channels=3, n=50)
    x = ds.x_train.double() / 255
    expected_mean = x.mean(dim=(0, 2, 3))
    expected_std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    np.testing.assert_allclose(ds.mean, expected_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ds.std, expected_std.numpy(), rtol=1e-10)


def test_split_validation_is_stratified_disjoint_and_seeded():
    ds = _dataset(n=400)
    train, x_val, y_val = ds.split_validation(0.25, seed=3)
    counts = torch.bincount(ds.y_train, minlength=4)
    assert torch.bincount(y_val, minlength=4).tolist() == \
        torch.round(counts.double() * 0.25).long().tolist()
    assert len(train.x_train) + len(x_val) == 400
    # the held-out images and the rest together are exactly the original set
    rows = {bytes(r) for r in ds.x_train.reshape(400, -1).numpy()}
    rest = {bytes(r) for r in train.x_train.reshape(len(train.x_train), -1).numpy()}
    held = {bytes(r) for r in x_val.reshape(len(x_val), -1).numpy()}
    assert rest | held == rows and not rest & held
    again = ds.split_validation(0.25, seed=3)
    assert torch.equal(again[1], x_val) and torch.equal(again[2], y_val)
    other = ds.split_validation(0.25, seed=4)
    assert not torch.equal(other[1], x_val)
    assert train.x_test is ds.x_test and train.mean != ds.mean  # statistics of the new x_train


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ConfigError, match="between 0 and 1"):
        stratified_split(torch.zeros(5, dtype=torch.long), 1.0, 0)


def test_pad_to_larger_even_size_centres_the_image():
    ds = _dataset(side=28)
    out = ds.with_shape(1, 32)
    assert out.input_shape == (1, 32, 32) and out.x_test.shape == (10, 1, 32, 32)
    assert torch.equal(out.x_train[:, :, 2:30, 2:30], ds.x_train)
    border = out.x_train.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0


def test_grey_to_rgb_repeats_and_rgb_to_grey_is_pils_luma():
    ds = _dataset(side=6, n=20)
    rgb = ds.with_shape(3, 6).x_train
    assert torch.equal(rgb[:, 0], rgb[:, 2]) and torch.equal(rgb[:, 1], ds.x_train[:, 0])
    colour = _dataset(channels=3, side=6, n=5).x_train
    grey = convert_images(colour, 1, 6)
    for image, ours in zip(colour, grey):
        pil = Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").convert("L")
        diff = np.abs(np.asarray(pil, dtype=int) - ours[0].numpy().astype(int))
        assert diff.max() <= 1  # PIL rounds in fixed point


def test_resize_when_padding_cannot_do_it():
    ds = _dataset(side=28, n=6)
    ds.x_train[:] = 200
    small = ds.with_shape(1, 14)
    assert small.input_shape == (1, 14, 14) and small.x_train.dtype == torch.uint8
    assert (small.x_train == 200).all()  # a flat image stays flat under antialiased resizing
    odd = ds.with_shape(1, (31, 29))  # larger by odd amounts: resized, not padded
    assert odd.input_shape == (1, 31, 29) and (odd.x_train == 200).all()


def test_same_shape_is_the_same_dataset():
    ds = _dataset()
    assert ds.with_shape(1, 8) is ds
    with pytest.raises(ConfigError, match="1 \\(grey\\) or 3"):
        ds.with_shape(2, 8)
