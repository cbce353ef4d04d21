"""course_lib.checks.own_code_uses: a student's helpers are read, not judged by their names."""

from __future__ import annotations

import functools

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
