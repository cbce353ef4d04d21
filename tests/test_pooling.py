"""course_lib.pooling against PyTorch (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DTYPES, PROPERTY_SETTINGS, TOLERANCE

from course_lib import conv, pooling


def distinct(*shape: int, device, dtype=torch.float64, requires_grad: bool = False):
    """Values in [-1, 1) that are all different (no ties), spaced at least 2/numel apart."""
    count = torch.Size(shape).numel()
    values = torch.randperm(count).to(torch.float64) * (2.0 / count) - 1.0
    return values.view(shape).to(device=device, dtype=dtype).requires_grad_(requires_grad)


def randn(*shape: int, device, dtype=torch.float64, requires_grad: bool = False):
    return torch.randn(*shape, dtype=dtype).to(device).requires_grad_(requires_grad)


@st.composite
def pool_geometry(draw):
    """A valid (x shape, kernel, stride or None, padding) with padding <= kernel // 2."""
    kernel, stride, padding, size = [], [], [], []
    for _ in range(2):
        k = draw(st.integers(1, 4))
        p = draw(st.integers(0, k // 2))
        smallest = max(1, k - 2 * p)
        kernel.append(k)
        padding.append(p)
        stride.append(draw(st.integers(1, 3)))
        size.append(draw(st.integers(smallest, smallest + 6)))
    default_stride = draw(st.booleans())
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (n, c, *size), tuple(kernel), None if default_stride else tuple(stride), tuple(padding)


# --------------------------------------------------------------------------------------
# Output size
# --------------------------------------------------------------------------------------
@PROPERTY_SETTINGS
@given(
    size=st.integers(1, 30),
    kernel=st.integers(1, 6),
    stride=st.one_of(st.none(), st.integers(1, 4)),
    padding=st.integers(0, 3),
)
def test_pool_output_size_matches_pytorch(size, kernel, stride, padding):
    x = torch.zeros(1, 1, size, 1)
    try:
        expected = F.max_pool2d(x, (kernel, 1), (stride or kernel, 1), (padding, 0)).shape[2]
    except RuntimeError:  # PyTorch refuses: padding > kernel/2 or an empty output
        with pytest.raises(ValueError, match="padding must be at most half|kernel is larger"):
            pooling.pool_output_size(size, kernel, stride, padding)
        return
    assert pooling.pool_output_size(size, kernel, stride, padding) == expected


def test_slide_pooling_formula_is_wrong():
    """Deck: pooled size = (H - K) / (s + 1). The course (and PyTorch): floor((H-K)/S) + 1."""

    def slide_rule(h, k, s):
        return (h - k) / (s + 1)

    x = torch.zeros(1, 1, 4, 4)
    assert slide_rule(4, 2, 2) == pytest.approx(2 / 3)
    assert F.max_pool2d(x, 2, 2).shape[-1] == 2
    assert pooling.pool_output_size(4, 2, 2) == 2
    # The deck's own 3x3 example with a 2x2 window, stride 1: slide 0.5, real output 2x2.
    assert slide_rule(3, 2, 1) == 0.5
    assert (
        pooling.pool_output_size(3, 2, 1) == F.max_pool2d(torch.zeros(1, 1, 3, 3), 2, 1).shape[-1]
    )


def test_deck_architecture_sizes_use_floor():
    # AlexNet on 224x224 (deck): conv 11/4 -> 54, pool 3/2 -> 26, ... pool 3/2 -> 12, -> 5.
    assert conv.conv_output_size(224, 11, stride=4) == 54
    assert pooling.pool_output_size(54, 3, 2) == 26
    assert pooling.pool_output_size(26, 3, 2) == 12
    assert pooling.pool_output_size(12, 3, 2) == 5
    # ResNet stem: 7x7/2 conv with padding 3, then 3x3/2 max pool with padding 1: 224 -> 112 -> 56.
    assert conv.conv_output_size(224, 7, stride=2, padding=3) == 112
    assert pooling.pool_output_size(112, 3, 2, 1) == 56
    # CIFAR table: 2x2 max pools with stride 2 halve 32 -> 16 -> 8 -> 4.
    assert [pooling.pool_output_size(s, 2) for s in (32, 16, 8)] == [16, 8, 4]


# --------------------------------------------------------------------------------------
# Max pooling
# --------------------------------------------------------------------------------------
def test_max_pool_deck_example(device):
    x = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]], device=device).view(1, 1, 3, 3)
    expected = [[5.0, 6.0], [8.0, 9.0]]
    assert pooling.max_pool2d_naive(x, 2, stride=1).view(2, 2).tolist() == expected
    assert pooling.max_pool2d(x, 2, stride=1).view(2, 2).tolist() == expected
    assert F.max_pool2d(x, 2, stride=1).view(2, 2).tolist() == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kernel, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 0))]
)
def test_max_pool2d_matches_pytorch(device, dtype, kernel, stride, padding):
    x = randn(2, 3, 7, 8, device=device, dtype=dtype)
    out, indices = pooling.max_pool2d_with_indices(x, kernel, stride, padding)
    expected, expected_indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    torch.testing.assert_close(pooling.max_pool2d(x, kernel, stride, padding), expected)
    assert indices.dtype == torch.int64 and torch.equal(indices, expected_indices)
    assert out.dtype == dtype and out.device == x.device


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_naive_matches_pytorch(device, dtype):
    x = randn(2, 2, 7, 6, device=device, dtype=dtype)
    for kernel, stride in [(2, None), (3, 1), ((3, 2), (2, 1))]:
        torch.testing.assert_close(
            pooling.max_pool2d_naive(x, kernel, stride),
            F.max_pool2d(x, kernel, stride),
            **TOLERANCE[dtype],
        )


@PROPERTY_SETTINGS
@given(geometry=pool_geometry())
def test_max_pool2d_with_indices_property(device, geometry):
    shape, kernel, stride, padding = geometry
    x = distinct(*shape, device=device)
    out, indices = pooling.max_pool2d_with_indices(x, kernel, stride, padding)
    expected, expected_indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    torch.testing.assert_close(out, expected, **TOLERANCE[torch.float64])
    assert torch.equal(indices, expected_indices)
    if padding == (0, 0):
        torch.testing.assert_close(pooling.max_pool2d_naive(x, kernel, stride), expected)


def test_max_pool2d_ties_pick_first_index_like_pytorch(device):
    # A constant plane: every window is one big tie; overlapping windows and padding too.
    x = torch.ones(1, 1, 4, 5, device=device)
    for kernel, stride, padding in [(2, 2, 0), (3, 1, 1), (2, 1, 1)]:
        _, indices = pooling.max_pool2d_with_indices(x, kernel, stride, padding)
        _, expected = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
        assert torch.equal(indices, expected)
    # 2x2 windows of [[7, 7], [7, 7]]: the winner is the top-left pixel of each window.
    _, indices = pooling.max_pool2d_with_indices(torch.full((1, 1, 4, 4), 7.0), 2)
    assert indices.view(2, 2).tolist() == [[0, 2], [8, 10]]


def test_max_pool2d_minus_inf_input_next_to_padding():
    """Padding is -inf too; PyTorch then points at the window's first real pixel."""
    x = torch.full((1, 1, 4, 5), float("-inf"))
    x[0, 0, 2, 3] = 1.0
    out, indices = pooling.max_pool2d_with_indices(x, 3, 2, 1)
    expected, expected_indices = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert torch.equal(out, expected) and torch.equal(indices, expected_indices)


# --------------------------------------------------------------------------------------
# Max-pool backward
# --------------------------------------------------------------------------------------
def autograd_max_pool_grad(x, grad_out, kernel, stride, padding):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.max_pool2d(x, kernel, stride, padding), x, grad_out)
    return grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kernel, stride, padding", [(2, None, 0), (3, 1, 1), (3, 2, 1), ((3, 2), (1, 2), (1, 1))]
)
def test_max_pool2d_backward_matches_autograd(device, dtype, kernel, stride, padding):
    x = distinct(2, 3, 7, 6, device=device, dtype=dtype)
    out_shape = F.max_pool2d(x, kernel, stride, padding).shape
    grad_out = randn(*out_shape, device=device, dtype=dtype)
    grad_x = pooling.max_pool2d_backward(grad_out, x, kernel, stride, padding)
    expected = autograd_max_pool_grad(x, grad_out, kernel, stride, padding)
    torch.testing.assert_close(grad_x, expected, **TOLERANCE[dtype])
    # Our own vectorized max_pool2d also gets the same gradient from autograd.
    x_ours = x.clone().requires_grad_(True)
    pooling.max_pool2d(x_ours, kernel, stride, padding).backward(grad_out)
    torch.testing.assert_close(x_ours.grad, expected, **TOLERANCE[dtype])


@PROPERTY_SETTINGS
@given(geometry=pool_geometry())
def test_max_pool2d_backward_property(device, geometry):
    shape, kernel, stride, padding = geometry
    x = distinct(*shape, device=device)
    grad_out = randn(*F.max_pool2d(x, kernel, stride, padding).shape, device=device)
    torch.testing.assert_close(
        pooling.max_pool2d_backward(grad_out, x, kernel, stride, padding),
        autograd_max_pool_grad(x, grad_out, kernel, stride, padding),
        **TOLERANCE[torch.float64],
    )


def test_max_pool2d_backward_ties_match_pytorch(device):
    """With ties PyTorch sends the gradient to the first maximal pixel; so do we."""
    x = torch.tensor(
        [[3.0, 3.0, 1.0, 2.0], [3.0, 0.0, 2.0, 2.0], [5.0, 4.0, 4.0, 0.0], [5.0, 5.0, 4.0, 1.0]],
        device=device,
    ).view(1, 1, 4, 4)
    grad_out = torch.tensor([[1.0, 10.0], [100.0, 1000.0]], device=device).view(1, 1, 2, 2)
    grad_x = pooling.max_pool2d_backward(grad_out, x, 2)
    assert torch.equal(grad_x, autograd_max_pool_grad(x, grad_out, 2, None, 0))
    expected = [[1.0, 0, 0, 10.0], [0, 0, 0, 0], [100.0, 0, 1000.0, 0], [0, 0, 0, 0]]
    assert grad_x.view(4, 4).tolist() == expected
    # Overlapping 2x2 windows, stride 1, on a constant plane: shared winners add up.
    ones = torch.ones(1, 1, 3, 3, device=device)
    grad_ones = pooling.max_pool2d_backward(torch.ones(1, 1, 2, 2, device=device), ones, 2, 1)
    torch.testing.assert_close(
        grad_ones, autograd_max_pool_grad(ones, torch.ones(1, 1, 2, 2, device=device), 2, 1, 0)
    )
    assert grad_ones.sum().item() == 4.0


# --------------------------------------------------------------------------------------
# Average pooling
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), ((3, 2), 1, (1, 1))])
def test_avg_pool2d_matches_pytorch(device, dtype, count_include_pad, kernel, stride, padding):
    x = randn(2, 3, 7, 8, device=device, dtype=dtype)
    out = pooling.avg_pool2d(x, kernel, stride, padding, count_include_pad)
    expected = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    assert out.dtype == dtype and out.device == x.device


@PROPERTY_SETTINGS
@given(geometry=pool_geometry(), count_include_pad=st.booleans())
def test_avg_pool2d_property(device, geometry, count_include_pad):
    shape, kernel, stride, padding = geometry
    x = randn(*shape, device=device)
    torch.testing.assert_close(
        pooling.avg_pool2d(x, kernel, stride, padding, count_include_pad),
        F.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad),
        **TOLERANCE[torch.float64],
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool2d_matches_pytorch(device, dtype):
    x = randn(3, 5, 6, 7, device=device, dtype=dtype)
    out = pooling.global_avg_pool2d(x)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, F.adaptive_avg_pool2d(x, 1).flatten(1), **TOLERANCE[dtype])


# --------------------------------------------------------------------------------------
# gradcheck (float64)
# --------------------------------------------------------------------------------------
def test_pooling_gradcheck(device):
    x = distinct(2, 2, 6, 5, device=device, requires_grad=True)
    gradcheck = torch.autograd.gradcheck
    assert gradcheck(lambda t: pooling.max_pool2d(t, 3, 2, 1), (x,))
    assert gradcheck(lambda t: pooling.max_pool2d(t, (2, 3), 1), (x,))
    assert gradcheck(lambda t: pooling.avg_pool2d(t, 3, 2, 1), (x,))
    assert gradcheck(lambda t: pooling.avg_pool2d(t, 3, 1, 1, count_include_pad=False), (x,))
    assert gradcheck(pooling.global_avg_pool2d, (x,))
    # max_pool2d_backward is linear in grad_out; its own gradient is the forward routing.
    grad_out = randn(2, 2, 3, 3, device=device, requires_grad=True)
    assert gradcheck(lambda g: pooling.max_pool2d_backward(g, x.detach(), 3, 2, 1), (grad_out,))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
X = torch.randn(1, 2, 5, 5)


@pytest.mark.parametrize(
    "pool",
    [pooling.max_pool2d, pooling.avg_pool2d, pooling.max_pool2d_with_indices],
    ids=["max", "avg", "max_with_indices"],
)
@pytest.mark.parametrize(
    "args, error, message",
    [
        ((X[0], 2), ValueError, r"x must be a 4-D tensor \(N, C, H, W\); got 3-D"),
        ((X.long(), 2), TypeError, "x must have a floating dtype"),
        ((X.tolist(), 2), TypeError, "x must be a torch.Tensor"),
        ((X, 6), ValueError, "kernel is larger than the padded input"),
        ((X, 2, 0), ValueError, "stride must be >= 1; got 0"),
        ((X, 2, -1), ValueError, "stride must be >= 1; got -1"),
        ((X, 3, 1, -1), ValueError, "padding must be >= 0; got -1"),
        ((X, 3, 1, 2), ValueError, r"padding must be at most half the kernel size.*padding=2"),
        ((X, 0), ValueError, "kernel_size must be >= 1"),
        ((X, 2.0), TypeError, "kernel_size must be an int"),
    ],
)
def test_pool_bad_input(pool, args, error, message):
    with pytest.raises(error, match=message):
        pool(*args)


@pytest.mark.parametrize(
    "func, args, error, message",
    [
        (pooling.pool_output_size, (5, 6), ValueError, "kernel is larger than the padded input"),
        (pooling.pool_output_size, (5, 2, 1, 2), ValueError, "padding must be at most half"),
        (pooling.pool_output_size, (5, 2, 0), ValueError, "stride must be >= 1"),
        (pooling.pool_output_size, (5, 3, 1, -1), ValueError, "padding must be >= 0"),
        (pooling.max_pool2d_naive, (X[0, 0], 2), ValueError, r"x must be a 4-D tensor"),
        (pooling.max_pool2d_naive, (X.int(), 2), TypeError, "x must have a floating dtype"),
        (pooling.max_pool2d_naive, (X, 6), ValueError, "kernel is larger than the padded"),
        (pooling.max_pool2d_naive, (X, 2, 0), ValueError, "stride must be >= 1"),
        (pooling.global_avg_pool2d, (X[0],), ValueError, r"x must be a 4-D tensor"),
        (pooling.global_avg_pool2d, (X.long(),), TypeError, "x must have a floating dtype"),
        (pooling.global_avg_pool2d, (X.numpy(),), TypeError, "x must be a torch.Tensor"),
        (pooling.max_pool2d_backward, (X, X, 2), ValueError, r"grad_out has shape \(1, 2, 5, 5\)"),
        (pooling.max_pool2d_backward, (X[0], X, 2), ValueError, r"grad_out must be a 4-D"),
        (pooling.max_pool2d_backward, (X.double(), X, 5), TypeError, "grad_out has dtype"),
        (pooling.max_pool2d_backward, (X, X.long(), 2), TypeError, "x must have a floating"),
        (pooling.max_pool2d_backward, (X, X, 3, 1, 2), ValueError, "padding must be at most"),
    ],
)
def test_bad_input_messages(func, args, error, message):
    with pytest.raises(error, match=message):
        func(*args)
