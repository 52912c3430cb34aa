"""A classifier's output as logits, whichever way the model ends.

cnnlab's zoo models end in logits (softmax lives in the loss, as PyTorch code writes it), but the
lectures' Keras models end in `Dense(10, activation="softmax")`, and Keras' cross-entropy then
takes probabilities (`from_logits=False`). A cross-entropy that applies softmax once more to those
probabilities squashes them towards uniform: on the shipped mini Fashion-MNIST a lecture CNN
trained that way reached 78.3% instead of 83.7% in 5 epochs, its loss stuck near 1.7, and
predict() could never give a class more than e / (e + 9) = 0.23 of 10.

log(p) is a valid set of logits for the probabilities p: log_softmax(log p) = log p - log(sum p) =
log p. So one conversion makes every consumer (the loss, evaluation, TTA averaging, predict,
Grad-CAM's probabilities) right for both kinds of model. Probabilities are clamped at 1e-7 before
the log, as Keras clips them (keras.backend.epsilon()), so a probability of 0 gives a finite loss.
"""

from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-7  # Keras' epsilon: the smallest probability whose log is taken


def final_softmax(model: nn.Module) -> nn.Softmax | None:
    """The softmax that ends a (cnnlab or torch) Sequential, on its own (`Activation("softmax")`,
    `nn.Softmax`) or as a layer's activation (`Dense(10, activation="softmax")`), else None: its
    input is the model's logits. Wrappers (torch.compile, CUDA graphs) are looked through."""
    from cnnlab.model import Sequential  # here: cnnlab.model imports the facade, which imports this

    model = getattr(model, "_orig_mod", model)
    while isinstance(model, (nn.Sequential, Sequential)) and len(model) > 0:
        model = model[-1]
    for candidate in (model, getattr(model, "activation", None)):
        if isinstance(candidate, nn.Softmax):
            return candidate
    return None


def ends_in_softmax(model: nn.Module) -> bool:
    """True when model's output is already class probabilities (final_softmax finds one); any
    other model is taken to output logits."""
    return final_softmax(model) is not None


def as_logits(output: torch.Tensor, softmax: bool) -> torch.Tensor:
    """output (N, K) as logits: log(max(p, 1e-7)) in fp32 for probabilities (softmax True), else unchanged."""
    return torch.log(output.float().clamp_min(EPSILON)) if softmax else output
