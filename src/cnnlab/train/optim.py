"""Optimizers by name (torch's own, configured the lecture's way, and Muon), with weight decay kept
off BatchNorm and biases."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.train.config import OPTIMIZERS, check_choice
from cnnlab.train.muon import Muon

# Which torch optimizers accept fused=True (one kernel for all parameters). RMSprop has none.
_FUSED = {"sgd", "adam", "adamw", "adagrad"}


def decay_groups(model: nn.Module | Iterable[torch.Tensor], weight_decay: float, bias_lr: float | None = None, *,
                 decay_biases: bool = False) -> list[dict]:
    """Two parameter groups: weights of Conv/Dense with decay, and 1-D tensors (BN scale/shift, biases) without.

    Decaying BN's gamma/beta or a bias only shrinks them towards 0 without any regularising effect
    (see "Bag of Tricks for Image Classification", He et al. 2019, section 3.1, "no bias decay").

    Args:
        model: its trainable parameters (or these parameters) are split by ndim.
        weight_decay: the first group's decay.
        bias_lr: the second group's own learning rate (None: the optimizer's).
        decay_biases: give the second group weight_decay too (only its lr differs then).
    """
    decay, no_decay = [], []
    for p in (model.parameters() if isinstance(model, nn.Module) else model):
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    biases = {"params": no_decay, "weight_decay": weight_decay if decay_biases else 0.0}
    if bias_lr is not None:
        biases["lr"] = bias_lr
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, biases) if g["params"]]


def make_optimizer(name: str, params: Iterable | nn.Module, lr: float, momentum: float = 0.9,
                   nesterov: bool = False, weight_decay: float = 0.0, *, decay_filter: bool = True,
                   bias_lr_scale: float = 1.0, fused: bool | None = None, muon_lr: float = 0.24,
                   muon_momentum: float = 0.6) -> torch.optim.Optimizer:
    """Build torch's optimizer for a lecture name, or Muon.

    Args:
        name: sgd | adam | adamw | rmsprop | adagrad | muon (ConfigError names the closest otherwise).
            muon: convolution filters (trainable parameters of 3+ dimensions) by Muon at muon_lr and
            muon_momentum, their norm fixed when the model has BatchNorm (always for a parameter
            list); everything else by SGD as `sgd` would train it (train/muon.py). The SGD groups
            come first and the Muon group last.
        params: the model (nn.Module) or an iterable of parameters / parameter groups.
        lr: learning rate.
        momentum: for sgd, and for muon's non-filter parameters; the others keep torch's defaults
            (adam betas (0.9, 0.999), rmsprop alpha 0.99 and no momentum).
        nesterov: Nesterov momentum, sgd and muon (both kinds of group; needs momentum > 0).
        weight_decay: L2 penalty (sgd, adam, rmsprop, adagrad) or decoupled decay (adamw).
        decay_filter: when params is a model, keep weight decay off 1-D tensors (BN, biases).
        bias_lr_scale: when params is a model, those 1-D tensors learn at lr * bias_lr_scale
            (airbench trains BatchNorm biases 64x faster than the weights).
        fused: True for the single-kernel implementation, False for foreach, None: fused where
            torch has one for the parameters' device (CUDA and CPU: one kernel instead of ~10 small
            ops per tensor; measured 2-10% off a seed-cnn CPU step, docs/speed.md), else torch's default.
        muon_lr, muon_momentum: the filters' learning rate and momentum under muon
            (airbench94_muon: 0.24 and 0.6).
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if bias_lr_scale <= 0:
        raise ConfigError(f"bias_lr_scale must be > 0, got {bias_lr_scale}")
    if name == "muon":
        return _muon(params, lr, momentum, nesterov, weight_decay, decay_filter, bias_lr_scale,
                     muon_lr, muon_momentum)
    if isinstance(params, nn.Module):
        bias_lr = lr * bias_lr_scale if bias_lr_scale != 1 else None
        params = (decay_groups(params, weight_decay, bias_lr, decay_biases=not decay_filter)
                  if (decay_filter and weight_decay) or bias_lr is not None
                  else [p for p in params.parameters() if p.requires_grad])
    params = list(params)
    kw: dict = {"lr": lr, "weight_decay": weight_decay}
    if fused is None:
        fused = True if name in _FUSED and _on_one_fusable_device(params) else None
    if fused and name in _FUSED:
        kw["fused"] = True
    elif fused is False:
        kw["foreach"] = True
    if name == "sgd":
        return torch.optim.SGD(params, momentum=momentum, nesterov=nesterov and momentum > 0, **kw)
    if name == "adam":
        return torch.optim.Adam(params, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, **kw)
    if name == "rmsprop":
        kw.pop("fused", None)
        return torch.optim.RMSprop(params, **kw)
    return torch.optim.Adagrad(params, **kw)


def _muon(params: Iterable | nn.Module, lr: float, momentum: float, nesterov: bool, weight_decay: float,
          decay_filter: bool, bias_lr_scale: float, muon_lr: float, muon_momentum: float) -> Muon:
    """Muon for the filters, and the rest grouped as make_optimizer groups them for sgd."""
    if muon_lr <= 0 or not 0 <= muon_momentum < 1:
        raise ConfigError(f"muon needs muon_lr > 0 and muon_momentum in [0, 1), got {muon_lr} and "
                          f"{muon_momentum}: airbench94_muon uses 0.24 and 0.6")
    given = list(params.parameters() if isinstance(params, nn.Module) else params)
    if any(isinstance(p, dict) for p in given):
        raise ConfigError("muon builds its own parameter groups: pass the model or a plain list of parameters")
    trainable = [p for p in given if p.requires_grad]
    filters = [p for p in trainable if p.ndim >= 3]
    if not filters:
        raise ConfigError("optimizer muon trains convolution filters, and this model has none that train: "
                          "use sgd or adam")
    rest = [p for p in trainable if p.ndim < 3]
    bias_lr = lr * bias_lr_scale if bias_lr_scale != 1 else None
    # the rest first, so param_groups[0]["lr"] (the progress line, history.csv) is the lr the user set
    groups = [{**g, "muon": False, "momentum": momentum}
              for g in decay_groups(rest, weight_decay, bias_lr, decay_biases=not decay_filter)] if rest else []
    # filters feeding BatchNorm have a scale that does not matter: Muon fixes it (airbench's form)
    with_bn = (any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in params.modules())
               if isinstance(params, nn.Module) else True)
    groups.append({"params": filters, "muon": True, "lr": muon_lr, "momentum": muon_momentum,
                   "weight_decay": 0.0, "normalize": with_bn})
    return Muon(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def _on_one_fusable_device(params: list) -> bool:
    """True when every tensor (in plain lists or parameter groups) is a float on CUDA, or all on the CPU."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    if not tensors or not all(t.is_floating_point() for t in tensors):
        return False
    return all(t.is_cuda for t in tensors) or all(t.device.type == "cpu" for t in tensors)
