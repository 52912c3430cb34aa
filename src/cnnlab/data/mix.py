"""Mixup and CutMix: a whole batch's images and labels mixed in pairs, on the batch's device.

Image i of a batch is mixed with image B-1-i, the batch reversed (timm pairs them so: the batch is
already shuffled, so the pairs are random, and reversing needs no gather), at one ratio lam per
batch drawn from Beta(alpha, alpha):
- mixup (Zhang et al. 2018, arXiv:1710.09412): x = lam * x_i + (1 - lam) * x_j.
- cutmix (Yun et al. 2019, arXiv:1905.04899): a box of about (1 - lam) * H * W pixels, centred on a
  uniformly drawn pixel and clipped at the border, is pasted from x_j; lam then becomes the share
  of x_i's pixels that is left.
The labels become soft targets lam * onehot(y_i) + (1 - lam) * onehot(y_j). Cross-entropy is linear
in its target, so the loss on them equals lam * CE(y_i) + (1 - lam) * CE(y_j), label smoothing
included, and the Trainer needs nothing else (its training accuracy counts the larger share).
The draws (whether to mix, lam, the box) come from a host-side random.Random that TensorBatches
seeds per batch, so mixing never waits on the GPU and a resumed run mixes batch k as the first did.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

MIX_MODES = ("mixup", "cutmix")


class BatchMix:
    """Mix a batch's images and labels (see the module doc).

    Args:
        mode: "mixup" or "cutmix".
        num_classes: K, the length of the soft targets.
        alpha: lam ~ Beta(alpha, alpha); 1.0 (uniform) in the CutMix paper, 0.2-1.0 for mixup.
        prob: share of batches mixed; the rest pass unchanged (as one-hot targets). CutMix trained
            CIFAR with 0.5.
    """

    def __init__(self, mode: str, num_classes: int, alpha: float = 1.0, prob: float = 1.0):
        if mode not in MIX_MODES:
            raise ConfigError(f"mix must be one of {', '.join(MIX_MODES)}, not {mode!r}")
        if not alpha > 0 or not 0 < prob <= 1:
            raise ConfigError(f"mix_alpha must be > 0 and mix_prob in (0, 1], got {alpha} and {prob}: "
                              "CutMix uses alpha 1.0")
        if num_classes < 2:
            raise ConfigError(f"mixing labels needs at least 2 classes, got {num_classes}")
        self.mode, self.num_classes, self.alpha, self.prob = mode, num_classes, alpha, prob

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (B, C, H, W) float, y (B,) class indices) -> (mixed x, same shape and memory format,
        soft targets (B, K) float32). x itself is left as it was."""
        target = F.one_hot(y, self.num_classes).float()
        if rng.random() >= self.prob:
            return x, target
        lam = rng.betavariate(self.alpha, self.alpha)
        if self.mode == "mixup":
            x = torch.lerp(x.flip(0), x, lam)  # x_j + lam * (x_i - x_j)
        else:
            x, lam = self._cutmix(x, lam, rng)
        return x, torch.lerp(target.flip(0), target, lam)

    @staticmethod
    def _cutmix(x: torch.Tensor, lam: float, rng: random.Random) -> tuple[torch.Tensor, float]:
        """x with a box pasted from its partner; the share of pixels kept, from the clipped box."""
        h, w = x.shape[2], x.shape[3]
        side = math.sqrt(1.0 - lam)  # the box's sides are this share of the image's (CutMix, Algorithm A1)
        cut_h, cut_w = int(h * side), int(w * side)
        cy, cx = rng.randrange(h), rng.randrange(w)
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        x = x.clone()
        x[:, :, top:bottom, left:right] = x[:, :, top:bottom, left:right].flip(0)  # the right side copies first
        return x, 1.0 - (bottom - top) * (right - left) / (h * w)
