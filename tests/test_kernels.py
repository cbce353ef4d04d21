"""course_lib.kernels: the Triton kernels against PyTorch, on small shapes.

With a CUDA GPU the kernels are compiled and run on it. Without one they run in Triton's
interpreter: ``TRITON_INTERPRET=1`` is set here, before the kernel modules are imported (Triton
decides at ``@triton.jit`` time), and the same kernel code executes on CPU tensors.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys

import pytest
import torch
import torch.nn.functional as F

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ["TRITON_INTERPRET"] = "1"
try:
    import triton  # noqa: F401
except ImportError:  # PyTorch's wheels depend on Triton on Linux x86-64: CI must have it
    if sys.platform == "linux" and platform.machine() == "x86_64":
        raise
    pytest.skip("Triton is not installed on this platform", allow_module_level=True)

import course_lib.kernels  # noqa: E402
from course_lib import conv, norm, optim  # noqa: E402

if not ON_GPU:  # a kernel module imported earlier without the interpreter: import it again
    for _name in ("conv", "batch_norm", "adam"):
        if f"course_lib.kernels.{_name}" in sys.modules:
            importlib.reload(sys.modules[f"course_lib.kernels.{_name}"])

from course_lib.kernels import (  # noqa: E402
    batch_norm_eval,
    batch_norm_forward,
    conv2d_forward,
    fused_adam_step,
)

DEVICE = torch.device("cuda" if ON_GPU else "cpu")
TOL = {"rtol": 1e-4, "atol": 1e-4}  # float32, accumulated in another order than PyTorch's


pytestmark = pytest.mark.usefixtures("full_float32")  # references without TF32 on a GPU


def randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device=DEVICE)


@pytest.fixture
def kernels_everywhere(monkeypatch):
    """Make course_lib pick the Triton kernels for these (CPU or GPU) tensors too."""
    monkeypatch.setattr(course_lib.kernels, "use_triton", lambda tensor: True)
    monkeypatch.setattr(conv, "use_triton", lambda tensor: True)
    monkeypatch.setattr(norm, "use_triton", lambda tensor: True)


# --------------------------------------------------------------------------------------
# Convolution: implicit GEMM
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, dilation, with_bias",
    [
        ((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), True),
        ((2, 5, 9, 7), (6, 5, 3, 2), (2, 1), (1, 0), (1, 2), False),
        ((1, 40, 6, 5), (33, 40, 3, 3), (1, 2), (2, 1), (2, 1), True),  # several K and N tiles
        ((3, 1, 12, 12), (2, 1, 5, 5), (3, 3), (2, 2), (1, 1), True),
    ],
)
def test_conv2d_kernel_matches_pytorch(x_shape, w_shape, stride, padding, dilation, with_bias):
    x, w = randn(*x_shape), randn(*w_shape)
    b = randn(w_shape[0]) if with_bias else None
    out = conv2d_forward(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(out, F.conv2d(x, w, b, stride, padding, dilation), **TOL)


def test_conv2d_uses_the_kernel_and_keeps_its_backward(kernels_everywhere, monkeypatch):
    calls = []
    original = course_lib.kernels.conv.conv2d_forward

    def recording(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(course_lib.kernels.conv, "conv2d_forward", recording)
    x = randn(2, 3, 7, 6).requires_grad_()
    w = randn(4, 3, 3, 3).requires_grad_()
    b = randn(4).requires_grad_()
    y = conv.conv2d(x, w, b, 2, 1)
    assert calls == [x.shape]
    expected = F.conv2d(x, w, b, 2, 1)
    torch.testing.assert_close(y, expected, **TOL)
    upstream = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), upstream)
    for got, want in zip(grads, torch.autograd.grad(expected, (x, w, b), upstream), strict=True):
        torch.testing.assert_close(got, want, **TOL)


# --------------------------------------------------------------------------------------
# Batch norm
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (6, 5), (3, 2, 33, 40)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_kernel_matches_pytorch(shape, affine):
    x = randn(*shape) * 2.5 + 1.5
    gamma = torch.rand(shape[1], device=DEVICE) + 0.5 if affine else None
    beta = randn(shape[1]) if affine else None
    out, mean, var = batch_norm_forward(x, gamma, beta, 1e-5)
    expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    dims = (0,) + tuple(range(2, x.dim()))
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(mean, x.mean(dims), **TOL)
    torch.testing.assert_close(var, x.var(dims, unbiased=False), **TOL)


def test_batch_norm_kernels_read_strided_gamma_and_beta():
    """The kernels read gamma[c] at gamma_ptr + c: a strided view such as w[::2] must reach
    them as a contiguous copy, or they read the wrong numbers."""
    x = randn(4, 3, 5, 6) * 2 + 1
    weights, biases = torch.rand(6, device=DEVICE) + 0.5, randn(6)
    gamma, beta = weights[::2], biases[1::2]
    out, _, _ = batch_norm_forward(x, gamma, beta, 1e-5)
    expected = F.batch_norm(x, None, None, gamma.contiguous(), beta.contiguous(), training=True)
    torch.testing.assert_close(out, expected, **TOL)
    expected = x * gamma.view(1, 3, 1, 1) + beta.view(1, 3, 1, 1)
    torch.testing.assert_close(batch_norm_eval(x, gamma, beta), expected, **TOL)


def test_batch_norm_eval_kernel():
    x = randn(3, 4, 5, 2)
    scale, shift = randn(4), randn(4)
    expected = x * scale.view(1, 4, 1, 1) + shift.view(1, 4, 1, 1)
    torch.testing.assert_close(batch_norm_eval(x, scale, shift), expected, **TOL)


def test_batch_norm_module_uses_the_kernels(kernels_everywhere):
    ours, reference = norm.BatchNorm2d(3).to(DEVICE), torch.nn.BatchNorm2d(3).to(DEVICE)
    x = (randn(4, 3, 5, 5) * 2 + 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = ours(x), reference(x_ref)
    torch.testing.assert_close(y, y_ref, **TOL)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    y_ref.backward(upstream)
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    torch.testing.assert_close(ours.running_var, reference.running_var, **TOL)
    ours.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)


# --------------------------------------------------------------------------------------
# Adam / AdamW in one kernel
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "torch_cls, decoupled, kwargs",
    [
        (torch.optim.Adam, False, dict(lr=1e-2)),
        (torch.optim.Adam, False, dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99))),
        (torch.optim.AdamW, True, dict(lr=1e-2, weight_decay=0.1)),
    ],
)
def test_fused_adam_step_matches_torch(torch_cls, decoupled, kwargs):
    params = [randn(37), randn(3, 1100)]  # the second spans two blocks
    reference = [p.clone().requires_grad_() for p in params]
    optimizer = torch_cls(reference, **kwargs)
    group = {**optimizer.defaults, "bias_correction": True}
    states = [
        {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        for p in params
    ]
    generator = torch.Generator(device=DEVICE).manual_seed(0)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=generator, device=DEVICE) for p in params]
        for ref, grad in zip(reference, grads, strict=True):
            ref.grad = grad.clone()
        optimizer.step()
        for state in states:
            state["step"] += 1
        fused_adam_step(params, grads, states, group, decoupled)
    for ours, ref in zip(params, reference, strict=True):
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-6)


def test_adam_fused_option_runs_the_kernel(kernels_everywhere):
    def run(fused: bool) -> torch.Tensor:
        torch.manual_seed(0)
        param = torch.nn.Parameter(randn(50))
        optimizer = optim.AdamW([param], lr=0.05, fused=fused)
        for step in range(5):
            param.grad = torch.full_like(param, 0.1 * (step + 1)) * param.detach().sign()
            optimizer.step()
        assert optimizer.state[param]["step"] == 5
        return param.detach()

    torch.testing.assert_close(run(True), run(False), rtol=1e-5, atol=1e-6)
