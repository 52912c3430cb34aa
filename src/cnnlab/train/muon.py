"""Muon for convolution filters, SGD-Nesterov for everything else, in one torch optimizer.

Muon (Keller Jordan, 2024; kellerjordan.github.io/posts/muon) replaces each filter bank's momentum
update by the nearest semi-orthogonal matrix: the update G (out, in*kh*kw) becomes roughly U V^T
of its SVD U S V^T, computed by a few Newton-Schulz iterations in bf16. Every direction of the
update then moves the weights alike, instead of the few large singular directions that dominate
a raw gradient. airbench94_muon.py (github.com/KellerJordan/cifar10-airbench) trains its CIFAR-10
net this way to airbench94's accuracy in 32% less time; this follows it:

- filters (parameters of 3 or more dimensions that train): momentum then Nesterov, then
  w -= lr * NS(update). In a network with BatchNorm (`normalize`, airbench's form) each filter bank
  is first rescaled to norm sqrt(out): BatchNorm undoes the filters' scale, so the norm only sets
  the effective step size, and fixing it keeps that steady. Without BatchNorm the scale is part of
  the function and stays free; the step is then multiplied by sqrt(max(1, out / fan_in)), as in
  Keller's general Muon, so tall matrices get steps of the same RMS as wide ones;
- the rest (Dense weights, biases, BatchNorm): torch's SGD with Nesterov momentum and coupled
  weight decay, bit for bit (tests/test_muon.py compares them).

One optimizer (not two) so that the schedulers, checkpoints and the Trainer see one object: each
parameter group carries `muon: True|False`. A learning-rate schedule scales every group alike.
torch.optim.Muon (torch >= 2.9) takes 2-D parameters only and normalises no weights, hence this one.
"""

from __future__ import annotations

import torch

# the quintic Newton-Schulz coefficients of Muon: chosen for the steepest slope at 0, so 3 to 5
# iterations push singular values from 1/10 of the largest upwards into roughly [0.7, 1.2]
# (measured in tests/test_muon.py; far smaller ones stay small; airbench94_muon uses 3 steps)
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(update: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """Newton-Schulz approximation of U V^T for a 2-D update U S V^T, computed in bf16.

    Args:
        update: (rows, cols) matrix; a filter bank's update reshaped to (out, in * kh * kw).
        steps: Newton-Schulz iterations.
        eps: keeps the first division finite for an all-zero update.

    Returns:
        bf16 (rows, cols): singular vectors of `update`, singular values pushed towards 1.
    """
    a, b, c = _NS_COEFFICIENTS
    x = update.bfloat16()
    x = x / (x.norm() + eps)  # spectral norm <= Frobenius norm = 1: inside the iteration's basin
    wide = x.size(0) <= x.size(1)
    if not wide:
        x = x.T  # iterate on the smaller Gram matrix (rows x rows)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """Muon steps for groups with muon=True (filters), SGD with Nesterov momentum for the others.

    Args:
        params: parameter groups; each needs "params" and "muon" (bool) and may set "lr",
            "momentum", "normalize" (Muon groups) or "weight_decay" (SGD groups only).
        lr: default learning rate.
        momentum: default momentum (airbench94_muon: 0.6 for filters, 0.85 for the rest).
        nesterov: Nesterov momentum in both kinds of group.
        ns_steps: Newton-Schulz iterations per filter update.
        normalize: default for Muon groups: fix each filter bank's norm (for nets with BatchNorm).
    """

    def __init__(self, params, lr: float = 0.24, momentum: float = 0.6, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 3, normalize: bool = True) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be at least 1, got {ns_steps}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        ns_steps=ns_steps, normalize=normalize, muon=False)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"]:
                flat = [tuple(p.shape) for p in group["params"] if p.ndim < 2]
                if flat:
                    raise ValueError(f"Muon groups take matrices or filter banks; got shapes {flat}: "
                                     "put biases and BatchNorm parameters in a group with muon=False")
                if group["weight_decay"]:
                    raise ValueError("Muon groups take no weight decay (with normalize their norm is fixed "
                                     "anyway): set weight_decay=0 for the muon=True group")

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["muon"]:
                self._muon_step(group, params)
            else:
                self._sgd_step(group, params)
        return loss

    def _momentum(self, params: list[torch.Tensor], grads: list[torch.Tensor], group: dict) -> list[torch.Tensor]:
        """Update each momentum buffer (it starts as the gradient, as torch's SGD's does); returns the
        step direction: g + momentum * buffer with Nesterov, else the buffer."""
        momentum, old_bufs, old_grads = group["momentum"], [], []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.clone()
            else:
                old_bufs.append(state["momentum_buffer"])
                old_grads.append(g)
        if old_bufs:
            torch._foreach_mul_(old_bufs, momentum)
            torch._foreach_add_(old_bufs, old_grads)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        return torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs

    def _sgd_step(self, group: dict, params: list[torch.Tensor]) -> None:
        """torch's SGD (multi-tensor form): coupled weight decay, momentum, Nesterov."""
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        torch._foreach_add_(params, self._momentum(params, grads, group), alpha=-group["lr"])

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        """Each filter bank minus lr times its orthogonalised update (see the module docstring)."""
        updates = self._momentum(params, [p.grad for p in params], group)
        for p, update in zip(params, updates):
            rows = p.size(0)
            matrix = update.reshape(rows, -1)  # (out, in * kh * kw)
            if group["normalize"]:
                p.mul_(rows ** 0.5 / p.norm().clamp_min(1e-12))  # sqrt(out): ~1 per filter
                step = group["lr"]
            else:
                step = group["lr"] * max(1.0, rows / matrix.size(1)) ** 0.5
            direction = orthogonalize(matrix, group["ns_steps"])
            p.add_(direction.view(p.shape).to(p.dtype), alpha=-step)
