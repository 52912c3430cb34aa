"""cnnlab's C kernels on torch's OpenMP threads: built with -fopenmp only where that shares torch's
runtime, the same bits whatever the thread count, and a clean fallback when -fopenmp fails."""

from __future__ import annotations

import stat

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _train_helpers import grayscale_images
from cnnlab.native import conv1pool, maxpool2x2
from cnnlab.native.build import NativeLibrary, find_compiler, openmp_libraries, shares_torchs_openmp
from test_native_conv_pool import _run, _torch_block
from test_native_pool import _pool_and_grad

needs_kernels = pytest.mark.skipif(maxpool2x2.LIBRARY.get() is None or conv1pool.LIBRARY.get() is None,
                                   reason=f"the C kernels are not built here: {maxpool2x2.LIBRARY.reason}")


@pytest.fixture
def threads():
    """Run the test body under a given intra-op thread count, restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@needs_kernels
def test_kernels_share_torchs_openmp_runtime_where_they_can():
    for lib in (maxpool2x2.LIBRARY, conv1pool.LIBRARY):
        assert lib.threaded == shares_torchs_openmp()
    if shares_torchs_openmp():  # e.g. torch's Linux wheels: the kernels added no second runtime
        assert len(openmp_libraries()) == 1


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_pooling_on_several_threads_is_torchs_bit_for_bit(threads, dtype):
    # 37 images: the threads get unequal shares; 7x9 pixels: odd edges that no window covers
    x = torch.randn(37, 24, 7, 9, generator=torch.Generator().manual_seed(0)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(37, 24, 3, 4, generator=torch.Generator().manual_seed(1)).to(dtype)
    grad = grad.contiguous(memory_format=torch.channels_last)
    threads(3)
    for relu in (False, True):
        ours = _pool_and_grad(lambda t: maxpool2x2.max_pool_2x2(t, relu), x, grad)
        theirs = _pool_and_grad(lambda t: torch.relu(F.max_pool2d(t, 2)) if relu else F.max_pool2d(t, 2), x, grad)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@needs_kernels
@pytest.mark.parametrize("bf16", [True, False])
def test_first_block_gives_the_same_bits_on_one_thread_and_on_three(threads, bf16):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 16, 3, padding=1)
    x = grayscale_images(37, 28, 28)  # 37 images: three chunks of 16 and a short one

    def ours():
        return conv1pool.conv_relu_pool(conv, x)

    y, _ = _run(ours, conv, x, None, bf16)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    threads(1)
    one = _run(ours, conv, x, grad, bf16)
    threads(3)
    three = _run(ours, conv, x, grad, bf16)
    assert torch.equal(one[0], three[0])
    for a, b in zip(one[1], three[1]):  # weight and bias gradients
        assert torch.equal(a, b)
    # and the chunked sums are still the gradient torch's layers give, to float rounding
    _, theirs = _run(lambda: _torch_block(conv, x), conv, x, grad, bf16)
    torch.testing.assert_close(three[1][0], theirs[0], rtol=2e-2 if bf16 else 1e-4, atol=1e-4)


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler here")
def test_a_compiler_that_refuses_openmp_gives_a_single_threaded_build(tmp_path, monkeypatch):
    real = " ".join(find_compiler())
    fake = tmp_path / "bin" / "cc-without-openmp"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && { echo "error: unsupported option '
                    f"'-fopenmp'\" >&2; exit 1; }}; done\nexec {real} \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CC", str(fake))
    lib = NativeLibrary("maxpool2x2.c", maxpool2x2.LIBRARY.signatures, out_dir=tmp_path / "cache")
    assert lib.get() is not None and lib.reason is None
    assert not lib.threaded and lib.threads() == 1
    assert len(list((tmp_path / "cache").glob("maxpool2x2-*.so"))) == 1
