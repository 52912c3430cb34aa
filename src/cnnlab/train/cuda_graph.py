"""Replay a model's forward and backward pass as CUDA graphs: one launch instead of one per kernel.

A small net at a large batch (fastnet-large, batch 1024, 28x28) spends more time in Python queueing
its ~200 kernels per step than the GPU spends running them: on one H100, 5.7 ms per step of wall
time against 3.4 ms of GPU time (torch.profiler, docs/speed.md). torch.cuda.make_graphed_callables
records the forward and the backward pass once and replays them; the loss, the optimizer step and
the data augmentation stay eager. Source: PyTorch, "CUDA Graphs" (torch.cuda.make_graphed_callables,
https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).

A graph replays fixed shapes and addresses, so the wrapper uses it only for training batches of the
captured shape and stride; other shapes (a last partial batch) and evaluation run the model eagerly.
Loading weights in place (EMA, checkpoints) keeps the addresses, so replays see the new values.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.native.maxpool2x2_cuda import recording_graphs


class GraphedModel(nn.Module):
    """model with its training forward+backward captured for inputs shaped like `sample`.

    The model is held as `_orig_mod` (the attribute torch.compile's wrapper uses), so code that
    saves or loads weights through `getattr(model, "_orig_mod", model)` sees the plain model.

    Args:
        model: on a CUDA device, in training mode; not modified except that the warm-up passes
            needed before capture are undone (BatchNorm statistics restored, gradients cleared).
        sample: a training batch (B, C, H, W) with the real batches' dtype, device and memory format.
        precision: "bf16" captures under bf16 autocast (as the Trainer trains), "fp32" without.
    """

    def __init__(self, model: nn.Module, sample: torch.Tensor, precision: str = "fp32") -> None:
        super().__init__()
        if sample.device.type != "cuda":
            raise ConfigError(f"cuda_graph needs the model and batches on a CUDA device, not {sample.device}; "
                              "leave cuda_graph off elsewhere")
        self._orig_mod = model
        self.shape, self.stride = tuple(sample.shape), sample.stride()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.train()
        # autocast's weight cache must be off while capturing (torch's CUDA graph notes)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if precision == "bf16"
                    else contextlib.nullcontext())
        with autocast, recording_graphs():  # 2x2 max pooling records cnnlab's Triton kernels
            torch.cuda.make_graphed_callables(model, (sample.detach(),), num_warmup_iters=3)
        self._graphed = model.__dict__.pop("forward")  # the graphed forward it installed; the class's comes back
        with torch.no_grad():  # the warm-up passes moved BatchNorm's running statistics
            for k, v in model.state_dict().items():
                v.copy_(state[k])
        for p in model.parameters():
            p.grad = None
        # the capture's warm-up ran on a side stream, so torch warns at each later backward pass that
        # the parameters' gradient accumulators were made there; harmless here (measured: 2.7 s per
        # fast-recipe run with it), and one line per step would bury the progress output
        set_warn = getattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch", None)
        if set_warn is not None:
            set_warn(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and torch.is_grad_enabled() and tuple(x.shape) == self.shape
                and x.stride() == self.stride):
            return self._graphed(x)
        return self._orig_mod(x)
