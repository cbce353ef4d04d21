"""course_lib.checks.own_code_uses: a student's helpers are read, not judged by their names."""

from __future__ import annotations

import functools
import linecache
import textwrap

import torch
import torch.nn.functional as F  # noqa: N812

from course_lib import conv
from course_lib.checks import own_code_uses, uses_any

FORBIDDEN = ["torch.nn.functional.conv2d", "torch.nn.functional.unfold", "course_lib.conv.im2col"]
NAMES = ["conv2d", "unfold", "im2col"]


def unfold(x: torch.Tensor, k: int) -> torch.Tensor:
    """A student's own im2col helper that happens to share a library name."""
    n, c, h, w = x.shape
    rows = [
        x[:, :, i : i + k, j : j + k].reshape(n, -1)
        for i in range(h - k + 1)
        for j in range(w - k + 1)
    ]
    return torch.stack(rows, dim=-1)


def honest_conv(x, w):
    cols = unfold(x, w.shape[-1])
    return w.reshape(w.shape[0], -1) @ cols


def sneaky_helper(x, w):
    return F.conv2d(x, w)


def conv_through_helper(x, w):
    return sneaky_helper(x, w)


fast_conv = functools.partial(F.conv2d, stride=1)


def conv_through_partial(x, w):
    return fast_conv(x, w)


def conv_through_course_lib(x, w):
    return conv.conv2d(x, w)


# Functions written in a notebook cell live in module `__main__`; these stand in for them.
for _notebook_function in (
    unfold,
    honest_conv,
    sneaky_helper,
    conv_through_helper,
    conv_through_partial,
):
    _notebook_function.__module__ = "__main__"


def test_a_helper_named_like_the_library_is_read_not_judged_by_name():
    assert uses_any(honest_conv, NAMES) == ["unfold"]  # the name check alone is a false alarm
    assert own_code_uses(honest_conv, NAMES, FORBIDDEN) == []


def test_the_operator_behind_a_helper_is_found():
    # Reported as written, as the matched name and as the forbidden target it resolves to.
    found = own_code_uses(conv_through_helper, NAMES, FORBIDDEN)
    assert found == ["F.conv2d", "conv2d", "torch.nn.functional.conv2d"]


def test_functools_partial_is_unwrapped():
    assert own_code_uses(conv_through_partial, NAMES, FORBIDDEN) == ["fast_conv"]


def test_library_functions_are_matched_by_name_and_identity():
    found = own_code_uses(conv_through_course_lib, NAMES, ["course_lib.conv.conv2d"])
    assert found == ["conv.conv2d", "conv2d", "course_lib.conv.conv2d"]


def test_honest_code_computes_the_convolution():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    assert torch.allclose(honest_conv(x, w).reshape(1, 3, 3, 3), F.conv2d(x, w), atol=1e-5)


# ---------------------------------------------------------------- issue #9: nested helpers
CONV_NAMES = ["conv2d", "Conv2d", "convolution", "unfold", "Unfold", "conv2d_naive", "corr2d"]
CONV_TARGETS = [
    "torch.nn.functional.conv2d",
    "torch.nn.functional.unfold",
    "course_lib.conv.corr2d",
]
POOL_NAMES = ["max_pool2d", "max_pool2d_backward", "max_unpool2d"]
AUTOGRAD_NAMES = ["backward", "grad", "vjp", "jacobian", "requires_grad_"]
AUTOGRAD_TARGETS = ["torch.Tensor.backward", "torch.autograd.backward", "torch.autograd.grad"]
BN_NAMES = ["batch_norm", "native_batch_norm", "BatchNorm2d", "batch_norm_backward"]


_CELLS = 0


def notebook_cell(source: str) -> dict:
    """Run ``source`` the way IPython runs a cell: module ``__main__``, the code in linecache
    (so inspect.getsource finds it), a fresh namespace with torch and F (no other globals)."""
    global _CELLS
    _CELLS += 1
    filename = f"<notebook-cell-{_CELLS}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__", "torch": torch, "F": F}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 (test fixture)
    return namespace


CELL = notebook_cell(
    textwrap.dedent(
        """
        def conv2d_loops_nested_corr2d(x, w):
            def corr2d(image, kernel):  # multiply and sum only
                kh, kw = kernel.shape[-2:]
                rows, cols = image.shape[-2] - kh + 1, image.shape[-1] - kw + 1
                out = image.new_zeros(image.shape[0], rows, cols)
                for i in range(rows):
                    for j in range(cols):
                        out[:, i, j] = (image[:, :, i : i + kh, j : j + kw] * kernel).sum((1, 2, 3))
                return out

            return torch.stack([corr2d(x, w[f]) for f in range(w.shape[0])], dim=1)


        def im2col_nested_unfold(x, k):
            def unfold(t):  # index arithmetic, not F.unfold
                n, c, h, w = t.shape
                oh, ow = h - k + 1, w - k + 1
                taps = [t[:, :, u : u + oh, v : v + ow] for u in range(k) for v in range(k)]
                return torch.stack(taps, 2).reshape(n, c * k * k, -1)

            return unfold(x)


        def max_pool_backward_nested(grad_out, x, k):
            def backward(g):  # routes g to the arg-max of each window by hand
                n, c, h, w = x.shape
                windows = x.reshape(n, c, h // k, k, w // k, k).permute(0, 1, 2, 4, 3, 5)
                first = windows.reshape(n, c, h // k, w // k, k * k).argmax(-1)
                mask = F.one_hot(first, k * k).to(x.dtype) * g[..., None]
                mask = mask.reshape(n, c, h // k, w // k, k, k).permute(0, 1, 2, 4, 3, 5)
                return mask.reshape(n, c, h, w)

            return backward(grad_out)


        def batchnorm_backward_lambda(grad_out, x, gamma, eps=1e-5):
            std = lambda t: torch.sqrt(t.var(0, unbiased=False) + eps)  # noqa: E731
            batch_norm = lambda t: (t - t.mean(0)) / std(t)  # noqa: E731
            grad = lambda g, xh: gamma * (g - g.mean(0) - xh * (g * xh).mean(0))  # noqa: E731
            x_hat = batch_norm(x)
            return grad(grad_out, x_hat) / std(x)


        def nested_helper_that_cheats(x, w):
            def corr2d(a, b):
                return F.conv2d(a, b)

            return corr2d(x, w)


        def nested_lambda_that_cheats(grad_out, x, k):
            backward = lambda g: torch.autograd.grad(F.max_pool2d(x, k), x, g)  # noqa: E731
            return backward(grad_out)


        def local_import_that_cheats(x, w):
            from course_lib.conv import corr2d as helper

            return helper(x, w)


        correlate = F.conv2d  # a global alias...


        def local_shadows_global_alias(x, w):
            correlate = torch.einsum  # ...shadowed by a local: the function never calls F.conv2d
            return correlate("fcuv,nchw->nfhw", w, x)


        class Windows(torch.nn.Module):
            def unfold(self, x):  # a method named like the library's: judged by its body
                return x[..., :2]

            def forward(self, x):
                return self.unfold(x)
        """
    )
)
conv2d_loops_nested_corr2d = CELL["conv2d_loops_nested_corr2d"]
im2col_nested_unfold = CELL["im2col_nested_unfold"]
max_pool_backward_nested = CELL["max_pool_backward_nested"]
batchnorm_backward_lambda = CELL["batchnorm_backward_lambda"]
nested_helper_that_cheats = CELL["nested_helper_that_cheats"]
nested_lambda_that_cheats = CELL["nested_lambda_that_cheats"]
local_import_that_cheats = CELL["local_import_that_cheats"]
local_shadows_global_alias = CELL["local_shadows_global_alias"]
Windows = CELL["Windows"]


def test_nested_corr2d_is_judged_by_what_it_calls():
    assert own_code_uses(conv2d_loops_nested_corr2d, CONV_NAMES, CONV_TARGETS) == []
    x, w = torch.randn(2, 3, 6, 5), torch.randn(4, 3, 3, 2)
    assert torch.allclose(conv2d_loops_nested_corr2d(x, w), F.conv2d(x, w), atol=1e-5)


def test_nested_unfold_in_im2col():
    assert own_code_uses(im2col_nested_unfold, CONV_NAMES, CONV_TARGETS) == []
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(im2col_nested_unfold(x, 3), F.unfold(x, 3))


def test_nested_backward_in_max_pool_backward():
    assert (
        own_code_uses(max_pool_backward_nested, POOL_NAMES + AUTOGRAD_NAMES, AUTOGRAD_TARGETS) == []
    )
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    F.max_pool2d(x, 2).backward(g)
    assert torch.allclose(max_pool_backward_nested(g, x.detach(), 2), x.grad)


def test_local_lambdas_in_batchnorm_backward():
    assert (
        own_code_uses(batchnorm_backward_lambda, BN_NAMES + AUTOGRAD_NAMES, AUTOGRAD_TARGETS) == []
    )
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    gamma, g = torch.randn(3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    F.batch_norm(x, None, None, gamma, None, training=True).backward(g)
    assert torch.allclose(batchnorm_backward_lambda(g, x.detach(), gamma), x.grad)


def test_nested_helpers_that_call_the_library_are_caught():
    assert own_code_uses(nested_helper_that_cheats, CONV_NAMES, CONV_TARGETS) == [
        "F.conv2d",
        "conv2d",
        "torch.nn.functional.conv2d",
    ]
    found = own_code_uses(nested_lambda_that_cheats, POOL_NAMES + AUTOGRAD_NAMES, AUTOGRAD_TARGETS)
    assert {"torch.autograd.grad", "grad", "max_pool2d"} <= set(found)
    found = own_code_uses(local_import_that_cheats, CONV_NAMES, CONV_TARGETS)
    assert {"course_lib.conv.corr2d", "corr2d"} <= set(found)


def test_a_local_shadows_a_global_alias_and_methods_are_read():
    assert own_code_uses(local_shadows_global_alias, CONV_NAMES, CONV_TARGETS) == []
    assert own_code_uses(Windows, CONV_NAMES, CONV_TARGETS) == []
    # A method call on a tensor is still matched by its name.
    assert own_code_uses(lambda x: x.unfold(2, 3, 1), CONV_NAMES, CONV_TARGETS) == ["unfold"]
