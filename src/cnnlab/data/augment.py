"""Batch augmentations on the device: one vectorised call per batch, no per-sample Python.

Each takes images (B, C, H, W) of any dtype (TensorBatches passes uint8, before normalising, so
zero padding and cutout paint black, the MNIST family's background) and a torch.Generator on the
images' device, and returns images of the same shape and dtype. Labels are never touched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

# Whether a horizontal flip keeps the label: mirrored clothes and objects are still what they
# were; mirrored digits and kana are not (a flipped 2 is no digit).
FLIP_KEEPS_LABEL = {"fashion-mnist": True, "fashion-mnist-mini": True, "mnist": False,
                    "kmnist": False, "cifar10": True}


def flip_label_warning(dataset: str, augment: dict | None, tta: str | None) -> str | None:
    """One sentence when flips are asked of a dataset whose mirror images are other things (mnist's
    digits, kmnist's kana: FLIP_KEEPS_LABEL), else None."""
    flips = [what for what, on in (("augment flip: true", bool((augment or {}).get("flip"))),
                                   (f"tta {tta!r}", tta in ("flip", "flip-translate"))) if on]
    if not flips or FLIP_KEEPS_LABEL.get(dataset, True):
        return None
    return (f"{' and '.join(flips)} mirror {dataset}'s images, but a mirrored digit or character is "
            f"not the same class (a mirrored 2 is no digit); leave flips out for {dataset}")


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def random_translate(x: torch.Tensor, generator: torch.Generator, pixels: int,
                     padding_mode: str = "zeros") -> torch.Tensor:
    """Shift each image by a random (dy, dx) in [-pixels, pixels]: pad, then crop the original size.

    padding_mode "zeros" fills the uncovered border with 0, "reflect" mirrors the image into it.
    """
    if pixels == 0:
        return x
    b, c, h, w = x.shape
    mode = {"zeros": "constant", "reflect": "reflect"}[padding_mode]
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode=mode)  # (B, C, H+2p, W+2p)
    # top-left corner of each crop in the padded image, uniform in [0, 2p]
    dy = torch.randint(0, 2 * pixels + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pixels + 1, (b,), generator=generator, device=x.device)
    # two gathers, rows then columns (2x faster than one 4-index advanced-indexing gather)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    x = padded.gather(2, rows.expand(b, c, h, w + 2 * pixels))  # (B, C, H, W+2p)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    return x.gather(3, cols.expand(b, c, h, w))  # (B, C, H, W)


def cutout(x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    """Zero one random size x size square per image, all channels (DeVries & Taylor 2017,
    arXiv:1708.04552); the square lies wholly inside the image so its area is always size**2."""
    if size == 0:
        return x
    b, _, h, w = x.shape
    if size > min(h, w):
        raise ConfigError(f"cutout of {size} pixels does not fit {h}x{w} images; use at most "
                          f"{min(h, w)}")
    top = torch.randint(0, h - size + 1, (b, 1, 1), generator=generator, device=x.device)
    left = torch.randint(0, w - size + 1, (b, 1, 1), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside[:, None], 0)  # (B, 1, H, W) broadcasts over channels


class Augment:
    """Flip, translate and cutout applied to a whole batch, in that order.

    Args:
        flip: mirror left-right; only where that keeps the label. True or "random": each image
            with p = 0.5 each time it is drawn. "alternating" (airbench): each image in a fixed
            random orientation in even epochs and the other one in odd epochs, so over two epochs
            every image is seen both ways exactly once, where random flips repeat one side a
            quarter of the time; the batches (TensorBatches) pass that schedule as flip_mask. (K.
            Jordan, arXiv:2404.00498: better than random flips wherever flipping helps at all.)
        translate: largest shift in pixels (pad by it, random crop back); 0 for none.
        cutout: side of the zeroed square in pixels; 0 for none.
        padding: "zeros" or "reflect", how translate fills the border.
    """

    def __init__(self, flip: bool | str = False, translate: int = 0, cutout: int = 0,
                 padding: str = "zeros"):
        if translate < 0 or cutout < 0:
            raise ConfigError(f"augment translate and cutout are pixel counts >= 0, got "
                              f"translate={translate}, cutout={cutout}")
        if padding not in ("zeros", "reflect"):
            raise ConfigError(f"augment padding must be 'zeros' or 'reflect', not {padding!r}")
        modes = {False: None, None: None, True: "random", "random": "random", "alternating": "alternating"}
        if not isinstance(flip, (bool, str, type(None))) or flip not in modes:
            raise ConfigError(f"augment flip must be true, false, 'random' or 'alternating', not {flip!r}")
        self.flip_mode: str | None = modes[flip]
        self.translate, self.cutout = translate, cutout
        self.padding = padding

    def check_fits(self, height: int, width: int) -> None:
        """ConfigError unless the shift and the square fit height x width images: checked before
        training, not at the first batch of it."""
        side = min(height, width)
        if self.translate >= side:
            raise ConfigError(f"augment translate of {self.translate} pixels can shift {height}x{width} "
                              f"images wholly out of view; use at most {side - 1} (2 to 4 is usual)")
        if self.cutout > side:
            raise ConfigError(f"cutout of {self.cutout} pixels does not fit {height}x{width} images; "
                              f"use at most {side}")

    @property
    def flip(self) -> bool:
        """Whether images are mirrored at all (randomly or alternating)."""
        return self.flip_mode is not None

    def __call__(self, x: torch.Tensor, generator: torch.Generator,
                 flip_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: images (B, C, H, W).
            generator: the batch's random draws, on x's device.
            flip_mask: (B,) bool, which images to mirror; required for flip "alternating",
                ignored otherwise.
        """
        if self.flip_mode == "random":
            x = random_flip(x, generator)
        elif self.flip_mode == "alternating":
            if flip_mask is None:
                raise ConfigError("augment flip 'alternating' needs each image's flip schedule, which "
                                  "TensorBatches passes; elsewhere use flip: true")
            x = torch.where(flip_mask.view(-1, 1, 1, 1), x.flip(3), x)
        if self.translate:
            x = random_translate(x, generator, self.translate, self.padding)
        if self.cutout:
            x = cutout(x, generator, self.cutout)
        return x

    def get_config(self) -> dict:
        """JSON-able constructor arguments."""
        flip = self.flip_mode if self.flip_mode == "alternating" else self.flip
        return {"flip": flip, "translate": self.translate, "cutout": self.cutout, "padding": self.padding}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Augment({args})"


def default_augment(dataset: str, translate: int = 2, cutout: int = 0) -> Augment:
    """The augmentation that suits a dataset: flip only where it keeps the label.

    Args:
        dataset: a dataset name; folder datasets and unknown names get no flip.
        translate: largest shift in pixels.
        cutout: side of the zeroed square in pixels.
    """
    padding = "reflect" if dataset == "cifar10" else "zeros"  # natural images vs black ground
    return Augment(flip=FLIP_KEEPS_LABEL.get(dataset, False), translate=translate,
                   cutout=cutout, padding=padding)
