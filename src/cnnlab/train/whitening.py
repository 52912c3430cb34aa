"""Patch-whitening initialisation of a network's first convolution (airbench's stem).

For a k x k convolution over C channels, the C*k*k-dimensional patches of the (normalised) training
images have a covariance matrix Sigma = V diag(lambda) V^T. Filters v_i / sqrt(lambda_i + eps) map
each patch to decorrelated unit-variance coordinates (PCA whitening); airbench uses each filter and
its negation (2*C*k*k filters), so that the GELU after the stem keeps both signs of every
coordinate. The weights are then frozen: the stem stays a fixed, data-derived change of basis and
only its bias trains. Source: K. Jordan, cifar10-airbench (airbench94.py, init_whitening_conv), after
the whitening of Coates & Ng, "Learning feature representations with k-means" (2012).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError

WHITENING_IMAGES = 5000  # airbench estimates the patch covariance from 5,000 training images


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first nn.Conv2d in the model's module order."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ConfigError("whiten_stem needs a model with a convolution; this one has none")


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5e-4) -> nn.Conv2d:
    """Set the first convolution's filters to +/- the whitening basis of images' patches, and freeze them.

    Args:
        model: its first Conv2d must have 2*C*k*k output channels and no groups.
        images: (N, C, H, W) float, normalised as the training batches are (a few thousand suffice).
        eps: added to each eigenvalue before the square root (airbench: 5e-4), so near-constant
            directions are not blown up.

    Returns:
        The convolution, whose weight now has requires_grad False.
    """
    conv = first_conv(model)
    c, (kh, kw) = conv.in_channels, conv.kernel_size
    dims = c * kh * kw
    if conv.out_channels != 2 * dims or conv.groups != 1:
        raise ConfigError(f"whiten_stem needs a first convolution with 2*C*k*k = {2 * dims} filters "
                          f"(C={c}, k={kh}x{kw}) and no groups; this one has {conv.out_channels}")
    if images.ndim != 4 or images.shape[1] != c:
        raise ConfigError(f"whiten_stem needs images (N, {c}, H, W), got {tuple(images.shape)}")
    x = images.float()
    # every k x k patch the filter sees as a row, a dilated filter's taps d pixels apart:
    # (N, C, H', W', kh, kw) -> (N*H'*W', C*kh*kw) in the weight's order
    dh, dw = conv.dilation
    patches = x.unfold(2, (kh - 1) * dh + 1, 1)[..., ::dh].unfold(3, (kw - 1) * dw + 1, 1)[..., ::dw]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dims).double()
    covariance = patches.T @ patches / len(patches)  # (dims, dims); airbench: uncentred, as here
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    basis = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0)  # rows: largest first
    filters = basis.reshape(dims, c, kh, kw)
    conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))
    conv.weight.requires_grad_(False)
    return conv
