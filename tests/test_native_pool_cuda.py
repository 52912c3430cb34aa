"""cnnlab's Triton max-pooling kernels (native/maxpool2x2_cuda.py) against torch's CUDA pooling: the
same bits, values and gradients, ties, NaNs and signed zeros included, and inside a CUDA graph. They
need a GPU, which CI lacks: there they are skipped (all but the first test), and they ran on the
device tool's H100 (38 passed, 2026-11-23). test_native_pool_triton.py checks the kernels on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.layers import MaxPool2D
from cnnlab.native import maxpool2x2_cuda
from cnnlab.train import cuda_graph
from test_native_pool import _assert_same_bits, _awkward, _layout, _pool_and_grad

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or maxpool2x2_cuda.triton is None,
                               reason="needs a CUDA GPU and Triton")


def test_kernels_are_used_only_while_recording_graphs(monkeypatch):
    """Eager code keeps torch's pooling; cuda_graph.GraphedModel records with the kernels."""
    assert maxpool2x2_cuda._recording == 0
    with pytest.raises(RuntimeError, match="inside"):
        with maxpool2x2_cuda.recording_graphs():
            with maxpool2x2_cuda.recording_graphs():
                assert maxpool2x2_cuda._recording == 2
            assert maxpool2x2_cuda._recording == 1
            raise RuntimeError("inside")
    assert maxpool2x2_cuda._recording == 0  # restored on the way out, exceptions included
    cpu = torch.zeros(2, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    with maxpool2x2_cuda.recording_graphs():
        assert not maxpool2x2_cuda.applies(cpu)  # a CPU tensor is the C kernel's business
    # GraphedModel records inside the context (checked on the CPU: the capture itself is faked)
    seen = []

    def fake_capture(model, samples, num_warmup_iters):
        seen.append(maxpool2x2_cuda._recording)
        raise RuntimeError("captured")

    class CudaSample:  # what GraphedModel reads of its sample
        device, shape = torch.device("cuda"), (2, 16, 4, 4)

        def stride(self):
            return (256, 1, 64, 16)

        def detach(self):
            return self

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_capture)
    with pytest.raises(RuntimeError, match="captured"):
        cuda_graph.GraphedModel(torch.nn.Sequential(MaxPool2D(2)), CudaSample())
    assert seen == [1] and maxpool2x2_cuda._recording == 0


def _on_gpu(shape, dtype, seed=0) -> torch.Tensor:
    # _awkward makes the values on the CPU in fp32 (ties, NaNs, -inf, signed zeros), then they move
    return _awkward(shape, torch.float32, seed).to(dtype).cuda().contiguous(memory_format=torch.channels_last)


@needs_gpu
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(4, 16, 28, 28), (3, 64, 27, 27), (2, 24, 6, 9), (2, 3, 3, 2), (1, 2, 2, 3),
                                   (2, 256, 13, 13)])
def test_kernel_matches_torch_bit_for_bit(dtype, shape, relu):
    x = _on_gpu(shape, dtype)
    with maxpool2x2_cuda.recording_graphs():
        assert maxpool2x2_cuda.applies(x)
    grad = torch.randn(F.max_pool2d(x, 2).shape, generator=torch.Generator().manual_seed(1)).to(dtype).cuda()
    grad = grad.contiguous(memory_format=torch.channels_last)
    grad[:, ::2] = -0.0  # torch's CUDA backward keeps -0.0 (its CPU backward makes it +0.0)

    def torchs(t: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(t, 2)
        return torch.relu(y) if relu else y

    with maxpool2x2_cuda.recording_graphs():
        ours = _pool_and_grad(lambda t: maxpool2x2_cuda.max_pool_2x2_if_fits(t, relu), x, grad)
    theirs = _pool_and_grad(torchs, x, grad)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and _layout(a) == _layout(b) and a.dtype == b.dtype
        _same_bits(a, b)
    with torch.no_grad(), maxpool2x2_cuda.recording_graphs():  # no winner positions kept; same values
        _same_bits(maxpool2x2_cuda.max_pool_2x2_if_fits(x, relu), theirs[0])


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    _assert_same_bits(a.cpu(), b.cpu())


@needs_gpu
def test_max_pool_layer_takes_the_kernel_only_where_it_applies():
    x = _on_gpu((2, 16, 8, 8), torch.bfloat16).requires_grad_()
    assert type(MaxPool2D(2)(x).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"  # eager: torch's
    with maxpool2x2_cuda.recording_graphs():
        _pooling_choices(x)


def _pooling_choices(x: torch.Tensor) -> None:
    assert "MaxPool2x2" in type(MaxPool2D(2)(x).grad_fn).__name__
    nchw = x.detach().contiguous().requires_grad_()
    assert not maxpool2x2_cuda.applies(nchw)
    assert type(MaxPool2D(2)(nchw).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"
    assert type(MaxPool2D(3)(x).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"
    assert not maxpool2x2_cuda.applies(x.detach().to(torch.float64))
    assert not maxpool2x2_cuda.applies(x.detach()[:, :, :1])  # one row: no 2x2 window
    one_channel = _on_gpu((2, 1, 8, 8), torch.bfloat16)  # channels-last and contiguous at once
    assert not maxpool2x2_cuda.applies(one_channel)  # torch's NCHW kernel is the reference there


@needs_gpu
def test_kernel_runs_inside_a_cuda_graph():
    """The GPU recipes capture the training step in a CUDA graph: replaying it must give what eager gives."""
    x = _on_gpu((8, 64, 27, 27), torch.bfloat16)
    static = x.clone().requires_grad_()
    with maxpool2x2_cuda.recording_graphs():
        for _ in range(2):  # warm-up before the capture compiles the kernels
            maxpool2x2_cuda.max_pool_2x2_if_fits(static).float().square().sum().backward()
        graph = torch.cuda.CUDAGraph()
        static.grad = None
        with torch.cuda.graph(graph):
            out = maxpool2x2_cuda.max_pool_2x2_if_fits(static)
            out.float().square().sum().backward()
    fresh = _on_gpu((8, 64, 27, 27), torch.bfloat16, seed=5)
    with torch.no_grad():
        static.copy_(fresh)
    graph.replay()
    expected = _pool_and_grad(lambda t: F.max_pool2d(t, 2), fresh,
                              2 * F.max_pool2d(fresh, 2).float().to(torch.bfloat16))
    _same_bits(out.detach(), expected[0])
    assert torch.allclose(static.grad.float(), expected[1].float(), equal_nan=True)  # _awkward has NaNs
