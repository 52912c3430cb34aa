"""The C kernels under autograd's other uses: a double backward (a gradient penalty), torch.func's
transforms and forward-mode AD. Their Functions have first-order rules only, so a second order
runs torch's operators and the transforms make the kernels step aside; each result must equal
torch's own pooling and convolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from _train_helpers import single_thread  # noqa: F401 (autouse fixture)
from cnnlab import zoo
from cnnlab.data import sources
from cnnlab.errors import ConfigError
from cnnlab.native import build, conv1pool, maxpool2x2

pytestmark = pytest.mark.skipif(maxpool2x2.LIBRARY.get() is None or conv1pool.LIBRARY.get() is None,
                                reason=f"the C kernels are not built here: {maxpool2x2.LIBRARY.reason}")


def _channels_last(shape, seed=0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()


@pytest.mark.parametrize("relu", [False, True])
def test_gradient_penalty_through_the_pooling_kernel_equals_torchs(relu):
    # odd sizes: the last row and column belong to no window and get zero gradient
    x = _channels_last((2, 16, 7, 9))
    w = torch.randn(2, 16, 3, 4, requires_grad=True)  # a weight on the output, to differentiate twice

    def penalty(pool):
        y = pool(x)
        (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        (gx ** 2).sum().backward()
        return y, gx.detach(), w.grad.clone()

    y, gx, gw = penalty(lambda t: maxpool2x2.max_pool_2x2_if_fits(t, relu=relu))
    assert type(y.grad_fn).__name__ == "MaxPool2x2Backward"  # the C kernel ran
    w.grad = None
    ref = penalty(lambda t: torch.relu(F.max_pool2d(t, 2)) if relu else F.max_pool2d(t, 2))
    assert torch.equal(y, ref[0]) and torch.equal(gx, ref[1]) and torch.equal(gw, ref[2])


def test_an_inf_gradient_reaches_only_the_winners_in_a_double_backward():
    x = _channels_last((1, 16, 2, 2))
    y = maxpool2x2.max_pool_2x2_if_fits(x)
    (gx,) = torch.autograd.grad(y, x, torch.full_like(y, float("inf")), create_graph=True)
    assert torch.equal(gx.isinf(), x == F.max_pool2d(x, 2).repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert not gx.isnan().any()


def _seed_cnn_penalty(monkeypatch, native: bool):
    if not native:
        monkeypatch.setattr(conv1pool, "applies", lambda conv, x: False)
    torch.manual_seed(0)
    model = zoo.create("seed-cnn")
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    params = [p for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    sum((g ** 2).sum() for g in grads).backward()  # the gradient-norm penalty's own gradient
    return [g.detach() for g in grads], [p.grad.clone() for p in params]


def test_gradient_penalty_through_the_first_block_kernel_equals_torchs(monkeypatch):
    calls = []
    real = conv1pool.conv_relu_pool_if_fits
    monkeypatch.setattr(conv1pool, "conv_relu_pool_if_fits",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    grads, second = _seed_cnn_penalty(monkeypatch, native=True)
    assert calls  # the one-pass first block ran
    ref_grads, ref_second = _seed_cnn_penalty(monkeypatch, native=False)
    for a, b in zip(grads + second, ref_grads + ref_second):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_torch_func_grad_and_vmap_run_torchs_operators(monkeypatch):
    torch.manual_seed(0)
    model = zoo.create("seed-cnn").eval()
    params = dict(model.named_parameters())
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    whole = grad(loss)(params, x, y)
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x[:, None], y[:, None])
    reference = torch.autograd.grad(loss(params, x, y), list(params.values()))
    for name, ref in zip(params, reference):
        torch.testing.assert_close(whole[name], ref, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(per_sample[name].mean(0), ref, rtol=1e-4, atol=1e-6)


def test_forward_mode_ad_through_the_pooling_layer():
    from cnnlab.layers import MaxPool2D

    pool = MaxPool2D(2)
    x = _channels_last((2, 16, 6, 6)).detach()
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(pool(fwAD.make_dual(x, tangent))).tangent
    _, expected = torch.func.jvp(lambda t: F.max_pool2d(t, 2), (x,), (tangent,))
    assert torch.equal(out, expected)
    assert not build.tracing()  # outside the dual level the kernels are back


def test_no_home_folder_gives_up_the_build_with_one_sentence(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(ConfigError, match="set XDG_CACHE_HOME"):
        sources.cache_dir()
    assert sources.candidate_dirs("mnist", tmp_path)[-1] == sources.SYSTEM_DIR / "mnist"
    library = build.NativeLibrary("maxpool2x2.c", maxpool2x2.LIBRARY.signatures)
    assert library.get() is None and "HOME is not set" in library.reason


def test_backward_hooks_on_fused_layers_fire():
    # the fused paths (conv1pool's first block, pool-first ReLU) skip the layers' __call__, so a
    # layer with a backward hook, its own or a global one, must run as written
    from cnnlab.layers import Conv2D, Dense, Flatten, MaxPool2D
    from cnnlab.model import Sequential

    model = Sequential([Conv2D(16, 3, padding="same", activation="relu"), MaxPool2D(2),
                        Conv2D(16, 3, padding="same", activation="relu"), MaxPool2D(2), Flatten(), Dense(10)],
                       input_shape=(1, 8, 8))
    fired = []
    handles = [model[i].register_full_backward_hook(lambda m, gi, go, i=i: fired.append(i)) for i in (0, 3)]
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    assert sorted(fired) == [0, 3]
    for h in handles:
        h.remove()
    fired.clear()
    handle = torch.nn.modules.module.register_module_full_backward_hook(
        lambda m, gi, go: fired.append(type(m).__name__))
    try:
        model(torch.rand(2, 1, 8, 8)).sum().backward()
    finally:
        handle.remove()
    assert fired.count("Conv2D") == 2 and fired.count("MaxPool2D") == 2


ARM_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd aes pmull crc32 atomics asimddp ssbs\n"
               "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\n")


def test_the_build_key_tells_arm_cpus_apart_and_ignores_clock_readings(monkeypatch):
    # -march=native builds for the CPU it runs on: a Neoverse-V1 build (sve, bf16) must not load on
    # a Neoverse-N1 sharing the home folder; ARM's cpuinfo has no 'model name' or 'flags' line
    def key(text):
        monkeypatch.setattr(build, "open", lambda path, *a, **k: __import__("io").StringIO(text), raising=False)
        return build._cpu_id()

    n1 = key(ARM_CPUINFO)
    assert n1 != key(ARM_CPUINFO.replace("0xd0c", "0xd40").replace("ssbs", "ssbs sve bf16"))
    assert n1 == key(ARM_CPUINFO.replace("243.75", "250.00") + "cpu MHz\t: 2999.1\n")
