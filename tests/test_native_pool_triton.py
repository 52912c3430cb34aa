"""cnnlab's Triton max-pooling kernels (native/maxpool2x2_cuda.py) checked where CI runs, on a CPU.

Two checks that need Triton but no GPU (`make test` installs Triton for them):
- Triton's interpreter (TRITON_INTERPRET=1) runs the kernels on CPU tensors, and values, winners
  and gradients must equal a reference built from torch's pooling bit for bit: ties, NaNs, -inf,
  signed zeros, odd sizes, bf16/fp16/fp32, with and without the fused ReLU.
- Triton's compiler turns every variant into H100 (sm_90) machine code, and the bf16 kernels into
  that of older and newer GPUs, which the interpreter does not: it catches what only the compiler
  rejects (types it cannot lower on an architecture, a helper it cannot inline).
On the GPU itself, test_native_pool_cuda.py compares them with torch's CUDA kernels.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from cnnlab.native import maxpool2x2_cuda
from cnnlab.native.pool2x2_function import MaxPool2x2
from test_native_pool import _assert_same_bits, _awkward, _layout

triton = pytest.importorskip("triton", reason="Triton is not installed (make test installs it)")


@pytest.fixture(scope="module")
def _interpreted_module():
    """A second copy of maxpool2x2_cuda whose kernels Triton's interpreter runs on CPU tensors.
    (@triton.jit reads TRITON_INTERPRET when it decorates, so the copy is made with it set; the
    package's own copy, which the rest of the suite imports, keeps compiled kernels.)"""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        spec = importlib.util.spec_from_file_location("cnnlab_maxpool2x2_interpreted", maxpool2x2_cuda.__file__)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    assert type(module._forward_kernel).__name__ == "InterpretedFunction"
    return module


@pytest.fixture
def interpreted(_interpreted_module):
    """The interpreted kernels, for one test. Each interpreted launch rebinds triton.language's
    functions to interpreter versions, for the whole process, and leaves them so: afterwards the
    compiler fails ('block_argument' object has no attribute 'dtype'). So what it rebinds is put
    back after the test (test_kernels_compile_to_h100_machine_code, which runs later in this
    process, shows that it was)."""
    import triton.language as tl

    touched = (tl, tl.core, tl.math, tl.core.tensor, tl.core.dtype, tl.core.tensor_descriptor_base)
    saved = [(owner, dict(vars(owner))) for owner in touched]
    yield _interpreted_module
    for owner, before in saved:
        for name in set(vars(owner)) - set(before):
            delattr(owner, name)
        for name, value in before.items():
            if vars(owner).get(name) is not value:
                setattr(owner, name, value)


def _reference(x: torch.Tensor, grad: torch.Tensor, relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """What the kernels must give, from torch's CPU pooling: its values (then torch.relu), and as
    the input gradient each window's upstream gradient copied, not added, onto its winner (so a
    -0.0 stays -0.0, as torch's CUDA backward has it; torch's CPU backward adds into zeros), zero
    elsewhere, and zero for a whole window the ReLU closed (output <= 0; NaN passes)."""
    y, winners = F.max_pool2d(x.float(), 2, return_indices=True)  # winners: flat h * W + w per window
    y = y.to(x.dtype)
    if relu:
        y = torch.relu(y)
        grad = torch.where((y > 0) | y.isnan(), grad, torch.zeros_like(grad))
    n, c, h, w = x.shape
    grad_in = torch.zeros(n, c, h * w, dtype=grad.dtype)
    grad_in.scatter_(2, winners.flatten(2), grad.contiguous().flatten(2))
    return y.contiguous(memory_format=torch.channels_last), grad_in.view(n, c, h, w)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(2, 16, 12, 12), (3, 8, 7, 9), (2, 3, 3, 2), (1, 2, 2, 3), (2, 5, 5, 4)])
def test_interpreted_kernels_match_the_reference_bit_for_bit(interpreted, dtype, shape, relu):
    x = _awkward(shape, dtype)
    out_shape = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    grad = torch.randn(out_shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    grad[:, ::2] = -0.0  # must come back -0.0 on the winners
    expected_y, expected_grad = _reference(x, grad, relu)

    leaf = x.clone().requires_grad_()
    y = MaxPool2x2.apply(leaf, relu, interpreted._TritonKernels)
    y.backward(grad.contiguous(memory_format=torch.channels_last))
    for ours, theirs in ((y.detach(), expected_y), (leaf.grad, expected_grad)):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert ours.is_contiguous(memory_format=torch.channels_last)
        _assert_same_bits(ours, theirs)
    with torch.no_grad():  # no winner positions kept (SAVE_POS=False); the same values
        _assert_same_bits(MaxPool2x2.apply(x, relu, interpreted._TritonKernels), expected_y)
    if not relu and dtype != torch.float16:  # torch's CPU pooling itself, where it has the kernel
        assert _layout(y) == _layout(F.max_pool2d(x, 2))
        _assert_same_bits(y.detach(), F.max_pool2d(x, 2))


def test_interpreted_backward_takes_a_gradient_in_any_layout(interpreted):
    x = _awkward((2, 16, 8, 8), torch.float32)
    leaf = x.clone().requires_grad_()
    grad = torch.randn(2, 16, 4, 4)  # contiguous (NCHW), as a user's own backward might hand it
    MaxPool2x2.apply(leaf, False, interpreted._TritonKernels).backward(grad)
    _assert_same_bits(leaf.grad, _reference(x, grad, relu=False)[1])


def _compile(kernel, signature: dict[str, str], constexprs: dict[str, object], capability: int = 90):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(kernel, {**signature, **{name: "constexpr" for name in constexprs}}, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32))
    assert compiled.asm["cubin"] and f".target sm_{capability}" in compiled.asm["ptx"]


_SIZES = {name: "i32" for name in ("total", "C", "H", "W", "OH", "OW")}
_TRITON_TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}


@pytest.fixture
def compiler(tmp_path, monkeypatch):
    if tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 3):
        pytest.skip(f"Triton {triton.__version__}: compile() takes a different signature before 3.3")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))


def _compile_both(dtype: torch.dtype, capability: int, variants=((False, False), (False, True), (True, False),
                                                                  (True, True))) -> None:
    data = _TRITON_TYPES[dtype]
    for relu, save in variants:
        _compile(maxpool2x2_cuda._forward_kernel,
                 {"x_ptr": data, "y_ptr": data, "pos_ptr": "*u8" if save else data, **_SIZES},
                 {"RELU": relu, "SAVE_POS": save, "BLOCK": maxpool2x2_cuda._BLOCK}, capability)
    _compile(maxpool2x2_cuda._backward_kernel, {"g_ptr": data, "pos_ptr": "*u8", "gx_ptr": data, **_SIZES},
             {"BLOCK": maxpool2x2_cuda._BLOCK}, capability)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_kernels_compile_to_h100_machine_code(compiler, dtype):
    """Every variant the training path can launch (with and without the ReLU, with and without
    winner positions, and the backward), compiled for sm_90 without a GPU (the compiler and ptxas
    come with Triton's wheel)."""
    _compile_both(dtype, 90)


@pytest.mark.parametrize("capability", [70, 75, 80, 86, 89, 100, 120])
def test_kernels_compile_for_the_gpus_users_have(compiler, capability):
    """bf16, what the recipes train in, for V100 (7.0) and T4 (7.5), which have no bf16 conversion
    instructions (Triton emulates them), A100 (8.0), RTX 30 / 40 (8.6 / 8.9), B200 (10.0) and RTX 50 (12.0)."""
    _compile_both(torch.bfloat16, capability, variants=((True, True),))
