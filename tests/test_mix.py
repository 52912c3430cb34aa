"""Mixup and CutMix (data/mix.py): what each does to images and labels, the loss they give,
determinism under a seed and across a resume, the settings' errors, and training with them."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli import main
from cnnlab.data import BatchMix, TensorBatches
from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig


def _batch(n=8, channels=2, side=10, classes=4):
    """Images whose every pixel differs from the same pixel of any other image (image i holds
    values in [i, i + 0.5)), so a mixed pixel tells where it came from; channels-last."""
    g = torch.Generator().manual_seed(3)
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) + 0.5 * torch.rand(n, channels, side, side, generator=g)
    y = torch.arange(n) % classes
    return x.contiguous(memory_format=torch.channels_last), y


def _lam(seed: int) -> float:
    """The ratio BatchMix draws from random.Random(seed) with prob 1 and alpha 1 (after its coin)."""
    rng = random.Random(seed)
    rng.random()
    return rng.betavariate(1.0, 1.0)


def test_mixup_blends_each_image_with_its_partner_at_one_ratio():
    x, y = _batch()
    before = x.clone()
    mixed, target = BatchMix("mixup", 4)(x, y, random.Random(5))
    lam = _lam(5)
    assert torch.equal(x, before)  # the caller's batch is left alone
    assert mixed.shape == x.shape and mixed.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))  # image i with image B-1-i
    expected = lam * F.one_hot(y, 4).float() + (1 - lam) * F.one_hot(y.flip(0), 4).float()
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(target.sum(1), torch.ones(len(y)))


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_one_box_and_labels_by_the_pixels_kept(seed):
    x, y = _batch()
    mixed, target = BatchMix("cutmix", 4)(x, y, random.Random(seed))
    own = (mixed == x).all(1)  # (B, H, W): pixels still image i's
    pasted = (mixed == x.flip(0)).all(1)
    assert bool((own ^ pasted).all())  # every pixel is one or the other
    assert torch.equal(pasted, pasted[:1].expand_as(pasted))  # the same box in every image
    rows, cols = pasted[0].any(1).nonzero().flatten(), pasted[0].any(0).nonzero().flatten()
    if len(rows):  # a box: one rectangle, all of it pasted
        assert bool(pasted[0, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all())
        assert int(pasted[0].sum()) == len(rows) * len(cols)
    kept = own[0].float().mean().item()  # share of each image's own pixels
    y_i, y_j = F.one_hot(y, 4).float(), F.one_hot(y.flip(0), 4).float()
    torch.testing.assert_close(target, kept * y_i + (1 - kept) * y_j)
    # the box is at most (1 - lam) of the image (its sides round down, the border clips it)
    assert kept >= _lam(seed) - 1e-6


def test_soft_target_loss_is_the_weighted_loss_of_both_labels_with_smoothing():
    x, y = _batch()
    mixed, target = BatchMix("mixup", 4)(x, y, random.Random(1))
    lam = _lam(1)
    logits = torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0))
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, target), lam * loss(logits, y) + (1 - lam) * loss(logits, y.flip(0)))


def test_prob_mixes_that_share_of_batches_and_leaves_the_rest_as_one_hot():
    x, y = _batch()
    mix = BatchMix("cutmix", 4, prob=0.5)
    mixed_count = 0
    for seed in range(400):
        out, target = mix(x, y, random.Random(seed))
        if out is x:  # not mixed: the labels as one-hot targets
            assert torch.equal(target, F.one_hot(y, 4).float())
        else:
            mixed_count += 1
    assert 160 < mixed_count < 240


def test_batches_mix_the_same_way_for_a_seed_and_after_a_resume():
    x8 = torch.randint(0, 256, (40, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    y = torch.arange(40) % 5

    def batches(seed):
        return TensorBatches(x8, y, 8, seed=seed, mix=BatchMix("cutmix", 5, alpha=0.7))

    full = list(batches(0))
    again = list(batches(0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full, again))
    assert full[0][1].shape == (8, 5) and full[0][1].dtype == torch.float32
    other = list(batches(1))
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(full, other))
    resumed = batches(0)
    resumed.start_at(3)  # what a resume mid-epoch does
    for (xa, ta), (xb, tb) in zip(full[3:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixed_batches_keep_the_layout_a_cuda_graph_was_captured_for(mode):
    """cuda_graph.GraphedModel replays only batches with the captured shape and strides (others run
    eagerly): a mixed channels-last batch must keep the strides of an unmixed one."""
    x8 = torch.randint(0, 256, (32, 3, 8, 8), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    y = torch.arange(32) % 10
    plain = next(iter(TensorBatches(x8, y, 16, channels_last=True)))[0]
    mixed = next(iter(TensorBatches(x8, y, 16, channels_last=True, mix=BatchMix(mode, 10))))[0]
    assert mixed.shape == plain.shape and mixed.stride() == plain.stride() and mixed.dtype == plain.dtype


def test_mix_settings_are_checked_when_the_config_is_made():
    assert TrainConfig(mix="cutmix", mix_alpha=0.4, mix_prob=0.5).mix == "cutmix"
    with pytest.raises(ConfigError, match="mix must be one of mixup, cutmix, not 'cutmx'"):
        TrainConfig(mix="cutmx")
    with pytest.raises(ConfigError, match="mix_alpha must be > 0 and mix_prob in"):
        TrainConfig(mix="mixup", mix_alpha=0.0)
    with pytest.raises(ConfigError, match="mix_prob in \\(0, 1\\], got 1.0 and 1.5"):
        TrainConfig(mix="mixup", mix_prob=1.5)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        BatchMix("mixup", 1)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_cnnlab_train_with_mix_learns(tmp_path, mode):
    code = main(["--quiet", "train", "--epochs", "3", "--mix", mode, "--out", str(tmp_path)])
    assert code == 0
    run = next(tmp_path.iterdir())
    assert json.loads((run / "config.json").read_text())["mix"] == mode
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6  # the embedded mini set: well above the 10% of chance
