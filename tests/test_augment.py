"""Batch augmentations: shapes, determinism, and that each one does what it says."""

import pytest
import torch

from cnnlab.data import FLIP_KEEPS_LABEL, Augment, default_augment
from cnnlab.data.augment import cutout, random_flip, random_translate
from cnnlab.errors import ConfigError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=64, channels=3, side=12, low=1):
    return torch.randint(low, 256, (n, channels, side, side), generator=_gen(9), dtype=torch.uint8)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shape_and_dtype_kept(dtype):
    x = _images().to(dtype)
    out = Augment(flip=True, translate=2, cutout=4)(x, _gen())
    assert out.shape == x.shape and out.dtype == dtype


def test_same_seed_same_output_other_seed_other_output():
    aug = Augment(flip=True, translate=3, cutout=4, padding="reflect")
    x = _images()
    assert torch.equal(aug(x, _gen(1)), aug(x, _gen(1)))
    assert not torch.equal(aug(x, _gen(1)), aug(x, _gen(2)))


def test_flip_really_flips_about_half():
    x = _images(n=400)
    out = random_flip(x, _gen())
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all()  # each image is either itself or its mirror image
    assert 140 < int(flipped.sum()) < 260
    assert torch.equal(random_flip(x, _gen(), p=1.0), x.flip(3))


def test_translate_shifts_content_and_pads_with_zeros():
    x = _images(n=32, channels=2, side=9)
    p = 2
    out = random_translate(x, _gen(4), p)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    shifts = []
    for i in range(len(x)):  # the test may loop; the code under test may not
        match = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.equal(out[i], padded[i, :, dy:dy + 9, dx:dx + 9])]
        assert match, f"image {i} is not a shifted copy"
        shifts.append(match[0])
    assert len(set(shifts)) > 5  # shifts vary from image to image


def test_translate_reflect_never_pads_with_zeros():
    x = _images(n=16, side=8, low=1)  # no zero pixels in the input
    assert (random_translate(x, _gen(), 3, "reflect") > 0).all()
    assert (random_translate(x, _gen(), 3, "zeros") == 0).any()


@pytest.mark.parametrize("size", [1, 4, 12])
def test_cutout_zeroes_one_square_of_the_right_size(size):
    x = _images(n=40, side=12, low=1)
    out = cutout(x, _gen(5), size)
    zero = out == 0  # (B, C, H, W)
    assert (zero.sum(dim=(2, 3)) == size * size).all()  # every channel, exactly size^2 pixels
    assert torch.equal(zero[:, 0], zero[:, 2])  # the same square on every channel
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)  # (B, H), (B, W)
    assert (rows.sum(1) == size).all() and (cols.sum(1) == size).all()  # a square, not scattered
    assert torch.equal(out[~zero], x[~zero])


def test_cutout_too_big():
    with pytest.raises(ConfigError, match="does not fit"):
        cutout(_images(side=6), _gen(), 7)


def test_defaults_flip_only_where_the_label_survives():
    assert default_augment("fashion-mnist").flip and default_augment("cifar10").flip
    assert not default_augment("mnist").flip and not default_augment("kmnist").flip
    assert not default_augment("my-folder").flip
    assert default_augment("cifar10", translate=4).get_config() == \
        {"flip": True, "translate": 4, "cutout": 0, "padding": "reflect"}
    assert set(FLIP_KEEPS_LABEL) >= {"fashion-mnist", "mnist", "kmnist", "cifar10"}


def test_config_round_trip_and_validation():
    aug = Augment(flip=True, translate=2, cutout=3)
    assert Augment(**aug.get_config()).get_config() == aug.get_config()
    with pytest.raises(ConfigError):
        Augment(translate=-1)
    with pytest.raises(ConfigError):
        Augment(padding="wrap")


def test_alternating_flip_shows_each_image_both_ways_over_two_epochs():
    from cnnlab.data import TensorBatches

    x = _images(n=200, channels=1)
    y = torch.arange(200)  # the label is the image's index, to find each image in a batch
    seen = {}
    for seed in (0, 1):
        batches = TensorBatches(x, y, 32, seed=seed, augment=Augment(flip="alternating"))
        per_epoch = []
        for epoch in range(3):
            batches.set_epoch(epoch)
            flipped = torch.zeros(200, dtype=torch.bool)
            for xb, yb in batches:
                raw = x[yb].float()  # normalised with mean 0, std 1: x / 255
                is_flip = torch.isclose(xb * 255, raw.flip(3)).flatten(1).all(1)
                is_same = torch.isclose(xb * 255, raw).flatten(1).all(1)
                assert (is_flip | is_same).all()
                flipped[yb] = is_flip
            per_epoch.append(flipped)
        assert torch.equal(per_epoch[0], ~per_epoch[1])  # the other side in the next epoch
        assert torch.equal(per_epoch[0], per_epoch[2])  # and back
        assert 60 < int(per_epoch[0].sum()) < 140  # which side comes first is random per image
        seen[seed] = per_epoch[0]
    assert not torch.equal(seen[0], seen[1])  # and drawn from the seed
    again = TensorBatches(x, y, 32, seed=0, augment=Augment(flip="alternating"))
    again.start_at(3)  # a resumed pass flips batch 3 as the uninterrupted one did
    xb, yb = next(iter(again))
    assert torch.equal(torch.isclose(xb * 255, x[yb].float().flip(3)).flatten(1).all(1), seen[0][yb])


def test_alternating_flip_needs_the_batches_schedule():
    aug = Augment(flip="alternating", translate=1)
    assert aug.flip and aug.get_config()["flip"] == "alternating"
    assert Augment(**aug.get_config()).get_config() == aug.get_config()
    with pytest.raises(ConfigError, match="TensorBatches passes"):
        aug(_images(), _gen())
    mask = torch.arange(64) % 2 == 0
    out = Augment(flip="alternating")(_images(), _gen(), flip_mask=mask)
    assert torch.equal(out[mask], _images()[mask].flip(3)) and torch.equal(out[~mask], _images()[~mask])
    assert Augment(flip="random").get_config()["flip"] is True
    with pytest.raises(ConfigError, match="'random' or 'alternating'"):
        Augment(flip="sometimes")


def test_shifts_and_squares_too_big_for_the_images_are_refused_before_training(tmp_path, capsys):
    from cnnlab.cli import main

    Augment(translate=27, cutout=28).check_fits(28, 28)  # the largest that fit
    with pytest.raises(ConfigError, match=r"translate of 28 pixels can shift 28x28 images wholly out of view"):
        Augment(translate=28).check_fits(28, 28)
    with pytest.raises(ConfigError, match=r"cutout of 29 pixels does not fit 28x32 images; use at most 28"):
        Augment(cutout=29).check_fits(28, 32)
    for bad in ("{cutout: 100}", "{translate: 100}"):
        assert main(["--quiet", "train", "--augment", bad, "--out", str(tmp_path)]) == 2
        assert "error: " in capsys.readouterr().err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []  # refused before a run began
