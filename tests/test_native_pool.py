"""cnnlab's C max-pooling kernel (native/maxpool2x2.c) against torch's: the same bits, values and
gradients; MaxPool2D takes it where it applies; and its build falls back cleanly when it cannot."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from _train_helpers import single_thread, train_seed_cnn_bf16  # noqa: F401 (autouse fixture)
from cnnlab.layers import MaxPool2D, MinPool2D
from cnnlab.native import build as build_module
from cnnlab.native import conv1pool, maxpool2x2
from cnnlab.native.build import HERE, NativeLibrary, build, find_compiler

needs_kernel = pytest.mark.skipif(maxpool2x2.LIBRARY.get() is None,
                                  reason=f"the C kernel is not built here: {maxpool2x2.LIBRARY.reason}")
INT_VIEW = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def _awkward(shape, dtype, seed=0) -> torch.Tensor:
    """Random values with what pooling must get right: ties (a constant band, small integers),
    NaNs (two in one window), -inf, and -0.0 next to +0.0; channels-last."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    n, c, h, w = shape
    x[:, :, : h // 3] = 0.5  # a band of equal values: every window there is a 4-way tie
    x[:, :, h // 3: 2 * h // 3] = torch.randint(-2, 2, (n, c, 2 * h // 3 - h // 3, w), generator=g).float()
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = float("nan")
    x[-1, -1, -2, -2] = float("-inf")
    x[-1, 0, -2:, :2] = torch.tensor([[0.0, -0.0], [-0.0, 0.0]])
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def _pool_and_grad(pool, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_()
    y = pool(x)
    y.backward(grad)
    return y.detach(), x.grad


@needs_kernel
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(4, 16, 28, 28), (3, 32, 7, 7), (2, 24, 6, 9), (2, 17, 3, 2), (1, 48, 2, 3),
                                   (2, 40, 5, 4)])
def test_kernel_matches_torch_bit_for_bit(dtype, shape, relu):
    x = _awkward(shape, dtype)
    assert maxpool2x2.applies(x)
    grad = torch.randn(F.max_pool2d(x, 2).shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    grad = grad.contiguous(memory_format=torch.channels_last)
    grad[:, ::2] = -0.0  # torch's backward adds into zeros: -0.0 comes out +0.0

    def torchs(t: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(t, 2)
        return torch.relu(y) if relu else y

    ours = _pool_and_grad(lambda t: maxpool2x2.max_pool_2x2(t, relu), x, grad)
    theirs = _pool_and_grad(torchs, x, grad)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and _layout(a) == _layout(b) and a.dtype == b.dtype
        _assert_same_bits(a, b)
    with torch.no_grad():  # without autograd no winner positions are stored; the values are the same
        _assert_same_bits(maxpool2x2.max_pool_2x2(x, relu), theirs[0])


def _layout(t: torch.Tensor) -> tuple[int, ...]:
    """The strides that matter: those of dimensions longer than 1 (torch.relu and pooling may
    disagree on the stride of a size-1 dimension, which addresses nothing)."""
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


def _assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit for bit (so -0.0 differs from +0.0), NaN where the other has NaN (whose payload
    torch itself does not keep alike: its scalar bf16 path writes 0x7FC0, its vector path the input's)."""
    nan = a.isnan()
    assert torch.equal(nan, b.isnan())
    assert torch.equal(a.view(INT_VIEW[a.dtype])[~nan], b.view(INT_VIEW[b.dtype])[~nan])


@needs_kernel
def test_grad_that_is_not_channels_last_is_laid_out_first():
    x = _awkward((2, 16, 8, 8), torch.float32)
    grad = torch.randn(2, 16, 4, 4)  # contiguous (NCHW), as a user's own backward might hand it
    ours = _pool_and_grad(maxpool2x2.max_pool_2x2, x, grad)
    theirs = _pool_and_grad(lambda t: F.max_pool2d(t, 2), x, grad)
    assert torch.equal(ours[1], theirs[1])


@needs_kernel
def test_max_and_min_pool_layers_take_the_kernel_only_where_it_applies():
    x = _awkward((2, 16, 8, 8), torch.bfloat16).requires_grad_()
    assert "MaxPool2x2" in type(MaxPool2D(2)(x).grad_fn).__name__
    assert "MaxPool2x2" in type(MinPool2D(2)(x).grad_fn.next_functions[0][0]).__name__  # -maxpool(-x)
    nchw = x.detach().contiguous().requires_grad_()
    assert not maxpool2x2.applies(nchw)
    assert type(MaxPool2D(2)(nchw).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"
    assert type(MaxPool2D(3)(x).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"  # 3x3 windows: torch's
    assert type(MaxPool2D(2, strides=1)(x).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"
    assert not maxpool2x2.applies(x.detach().to(torch.float64))
    assert not maxpool2x2.applies(x.detach()[:, :, :1])  # one row: no 2x2 window
    with pytest.raises(ValueError, match="channels-last CPU bf16/fp32"):  # never handed to the C code
        maxpool2x2.max_pool_2x2(nchw)
    few = _awkward((2, 15, 8, 8), torch.bfloat16)  # under the kernel's 16 lanes: torch's kernel
    assert not maxpool2x2.applies(few) and type(MaxPool2D(2)(few.requires_grad_()).grad_fn).__name__ == (
        "MaxPool2DWithIndicesBackward0")


@needs_kernel
def test_min_pool_through_the_kernel_matches_torch():
    x = _awkward((2, 16, 9, 8), torch.float32, seed=3)
    grad = torch.randn(2, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    ours = _pool_and_grad(MinPool2D(2), x, grad)
    theirs = _pool_and_grad(lambda t: -F.max_pool2d(-t, 2), x, grad)
    assert torch.equal(ours[0].nan_to_num(), theirs[0].nan_to_num()) and torch.equal(ours[1], theirs[1])


@needs_kernel
def test_export_sees_torchs_pooling():
    """torch.export (and torch.compile, which traces the same way) cannot look into a ctypes call:
    under tracing MaxPool2D hands the graph torch's max_pool2d."""
    model = torch.nn.Sequential(MaxPool2D(2))
    x = torch.randn(1, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    exported = torch.export.export(model, (x,))
    assert "max_pool2d" in str(exported.graph) and torch.equal(exported.module()(x), model(x))


@needs_kernel
def test_training_with_the_kernel_is_bitwise_the_training_without(monkeypatch):
    """seed-cnn, bf16 autocast + channels_last (where cnnlab's fast CPU setting uses the kernel, with
    each conv's ReLU fused into it): three Adam steps give the same weights to the bit with the
    kernel and with torch's pooling and ReLU."""
    monkeypatch.setattr(conv1pool, "applies", lambda conv, x: False)  # its own test: test_native_conv_pool.py
    calls = []
    real = maxpool2x2.max_pool_2x2_if_fits

    def counted(x, relu=False):
        y = real(x, relu)
        calls.append(relu if y is not None else None)
        return y

    monkeypatch.setattr(maxpool2x2, "max_pool_2x2_if_fits", counted)
    with_kernel, _ = train_seed_cnn_bf16(steps=3)
    assert calls == [True] * 9  # three poolings per step, each with the conv's ReLU (pool-first)
    monkeypatch.setattr(maxpool2x2, "applies", lambda x: False)
    without, _ = train_seed_cnn_bf16(steps=3)
    assert all(torch.equal(a, b) for a, b in zip(with_kernel, without))


# ---- building: cache, fallbacks and their messages ----

SIGNATURES = maxpool2x2.LIBRARY.signatures


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler here")
def test_build_is_cached_by_content_and_a_damaged_cache_entry_is_rebuilt(tmp_path):
    lib = NativeLibrary("maxpool2x2.c", SIGNATURES, out_dir=tmp_path)
    assert lib.get() is not None and lib.reason is None
    (built,) = tmp_path.glob("maxpool2x2-*.so")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    mtime = built.stat().st_mtime_ns
    assert NativeLibrary("maxpool2x2.c", SIGNATURES, out_dir=tmp_path).get() is not None
    assert built.stat().st_mtime_ns == mtime  # reused, not rebuilt
    built.unlink()  # a new file, not this one overwritten: the process still has the old one mapped
    built.write_bytes(b"not a shared library")  # e.g. a copy cut short by a full disk
    # a new process (this one would get its already-loaded copy back from dlopen) rebuilds it
    code = ("import sys; from pathlib import Path; from cnnlab.native.maxpool2x2 import LIBRARY; "
            "from cnnlab.native.build import NativeLibrary; "
            "lib = NativeLibrary('maxpool2x2.c', LIBRARY.signatures, out_dir=Path(sys.argv[1])); "
            "print(lib.get() is not None, lib.reason)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "None"], done.stderr
    assert built.read_bytes() != b"not a shared library"


def test_a_missing_compiler_falls_back_with_one_sentence(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    lib = NativeLibrary("maxpool2x2.c", SIGNATURES, out_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="cnnlab.native.build"):
        assert lib.get() is None and lib.get() is None
    assert "no-such-cc" in lib.reason and "not on PATH" in lib.reason
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "torch's own kernels run instead" in warnings[0]  # said once, not per call
    other = NativeLibrary("conv1pool.c", {}, out_dir=tmp_path)  # another kernel, the same missing compiler
    with caplog.at_level(logging.WARNING, logger="cnnlab.native.build"):
        assert other.get() is None and other.reason == lib.reason
    assert len(caplog.records) == 1  # not said again
    assert not list(tmp_path.glob("*.so"))


def test_a_failing_compiler_falls_back_naming_its_error(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "fakecc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'maxpool2x2.c:1:1: error: boom' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CC", str(fake))
    lib = NativeLibrary("maxpool2x2.c", SIGNATURES, out_dir=tmp_path / "cache")
    assert lib.get() is None
    assert "could not compile maxpool2x2.c" in lib.reason and "error: boom" in lib.reason
    assert not [p for p in (tmp_path / "cache").iterdir()]  # nothing half-written


def test_cnnlab_native_0_turns_the_kernels_off_quietly(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CNNLAB_NATIVE", "0")
    lib = NativeLibrary("maxpool2x2.c", SIGNATURES, out_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        assert lib.get() is None
    assert "CNNLAB_NATIVE=0" in lib.reason and not caplog.records


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler here")
def test_editing_the_shared_header_makes_a_new_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("maxpool2x2.c", "vec16.h"):
        (src / name).write_bytes((HERE / name).read_bytes())
    first = build(src / "maxpool2x2.c", find_compiler(), tmp_path / "cache")
    (src / "vec16.h").write_text((src / "vec16.h").read_text() + "\n/* edited */\n")
    second = build(src / "maxpool2x2.c", find_compiler(), tmp_path / "cache")
    assert first != second and first.exists() and second.exists()


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler here")
def test_a_new_build_removes_the_kernels_month_old_builds_only(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    month_ago = time.time() - build_module.STALE_SECONDS - 60
    old, recent = cache / "maxpool2x2-0123456789abcdef.so", cache / "maxpool2x2-fedcba9876543210.so"
    killed, other = cache / ".maxpool2x2-tmpk1ll3d.so", cache / "conv1pool-0123456789abcdef.so"
    for path in (old, recent, killed, other):
        path.write_bytes(b"an earlier build")
    for path in (old, killed, other):
        os.utime(path, (month_ago, month_ago))
    built = build(HERE / "maxpool2x2.c", find_compiler(), cache)
    assert built.exists() and recent.exists() and other.exists()  # another kernel's builds are its own
    assert not old.exists() and not killed.exists()
    old.write_bytes(b"an earlier build")
    os.utime(old, (month_ago, month_ago))
    assert build(HERE / "maxpool2x2.c", find_compiler(), cache) == built
    assert old.exists()  # a cache hit only looks up its own file: cleaning waits for the next build
