"""course_lib.conv against PyTorch (F.conv2d, F.unfold, nn.Conv2d) and the decks' numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DTYPES, PROPERTY_SETTINGS, TOLERANCE
from torch import nn

from course_lib import conv

# cuDNN may use TF32 (10-bit mantissa) for float32 convolutions; compare in full float32.
pytestmark = pytest.mark.usefixtures("full_float32")


def randn(*shape: int, device, dtype=torch.float64, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype).to(device).requires_grad_(requires_grad)


@st.composite
def conv_geometry(draw, max_dilation: int = 3):
    """A valid (x shape, weight shape, stride, padding, dilation) with per-axis values."""
    kernel, stride, padding, dilation, size = [], [], [], [], []
    for _ in range(2):
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, max_dilation))
        p = draw(st.integers(0, 2))
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the padded input must hold the kernel
        kernel.append(k)
        dilation.append(d)
        padding.append(p)
        stride.append(draw(st.integers(1, 3)))
        size.append(draw(st.integers(smallest, smallest + 6)))
    n, c, f = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, *size), (f, c, *kernel), tuple(stride), tuple(padding), tuple(dilation)


# --------------------------------------------------------------------------------------
# Output-size arithmetic
# --------------------------------------------------------------------------------------
@PROPERTY_SETTINGS
@given(
    size=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 5),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)
def test_conv_output_size_matches_pytorch(size, kernel, stride, padding, dilation):
    x, w = torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel, 1)
    try:
        expected = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[2]
    except RuntimeError:
        with pytest.raises(ValueError, match="kernel is larger than the padded input"):
            conv.conv_output_size(size, kernel, stride, padding, dilation)
        return
    assert conv.conv_output_size(size, kernel, stride, padding, dilation) == expected


def test_slide_stride_formula_only_agrees_when_stride_divides():
    """Deck: strided size = (n + 2p - f + s) / s. Right only when s divides n + 2p - f."""

    def slide_rule(n, f, p, s):
        return (n + 2 * p - f + s) / s

    def pytorch_size(n, f, p, s):
        return F.conv2d(
            torch.zeros(1, 1, n, n), torch.zeros(1, 1, f, f), stride=s, padding=p
        ).shape[2]

    # n=6, f=3, p=0, s=2: the slide gives 2.5 (not an integer); PyTorch and the floor rule: 2.
    assert slide_rule(6, 3, 0, 2) == 2.5
    assert pytorch_size(6, 3, 0, 2) == 2
    assert conv.conv_output_size(6, 3, stride=2, padding=0) == 2
    # n=7, f=3, p=0, s=2: s divides 4, and all three agree on 3.
    assert slide_rule(7, 3, 0, 2) == pytorch_size(7, 3, 0, 2) == conv.conv_output_size(7, 3, 2) == 3


def test_deck_output_size_examples():
    # W=32, F=5: P=0 gives 28, P=2 gives 32; AlexNet conv1 227 -> 55 with 11x11 stride 4.
    assert conv.conv_output_size(32, 5) == 28
    assert conv.conv_output_size(32, 5, padding=2) == 32
    assert conv.conv_output_size(227, 11, stride=4) == 55
    # the dilated kernel 3 with D=2 spans 5 pixels
    assert conv.conv_output_size(7, 3, dilation=2) == 3


@pytest.mark.parametrize("kernel, dilation", [(1, 1), (3, 1), (5, 1), (7, 1), (3, 2), (5, 3)])
def test_same_padding_keeps_size(kernel, dilation):
    padding = conv.same_padding(kernel, dilation)
    assert padding == dilation * (kernel - 1) // 2
    assert conv.conv_output_size(13, kernel, 1, padding, dilation) == 13


# --------------------------------------------------------------------------------------
# Worked examples
# --------------------------------------------------------------------------------------
def test_corr1d_deck_example():
    out = conv.corr1d(torch.tensor([1.0, 2, 3, 4, 5, 6]), torch.tensor([1.0, 2]))
    assert out.tolist() == [5.0, 8.0, 11.0, 14.0, 17.0]


def test_corr1d_matches_conv1d(device):
    x, w = randn(11, device=device), randn(4, device=device)
    expected = F.conv1d(x.view(1, 1, -1), w.view(1, 1, -1)).view(-1)
    torch.testing.assert_close(conv.corr1d(x, w), expected, **TOLERANCE[torch.float64])


def test_corr2d_by_hand_3x3_with_2x2():
    """The deck's 3x3 A and 2x2 W, each output element written out as on the slides."""
    a = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
    w = torch.tensor([[1.0, -1], [2, 0.5]])
    (a11, a12, a13), (a21, a22, a23), (a31, a32, a33) = a.tolist()
    (w11, w12), (w21, w22) = w.tolist()
    c11 = a11 * w11 + a12 * w12 + a21 * w21 + a22 * w22
    c12 = a12 * w11 + a13 * w12 + a22 * w21 + a23 * w22
    c21 = a21 * w11 + a22 * w12 + a31 * w21 + a32 * w22
    c22 = a22 * w11 + a23 * w12 + a32 * w21 + a33 * w22
    expected = [[c11, c12], [c21, c22]]
    assert conv.corr2d(a, w).tolist() == expected
    assert conv.conv2d(a.view(1, 1, 3, 3), w.view(1, 1, 2, 2)).view(2, 2).tolist() == expected


def test_corr2d_matches_pytorch(device):
    x, k = randn(6, 5, device=device), randn(3, 2, device=device)
    expected = F.conv2d(x.view(1, 1, 6, 5), k.view(1, 1, 3, 2)).view(4, 4)
    torch.testing.assert_close(conv.corr2d(x, k), expected, **TOLERANCE[torch.float64])


# --------------------------------------------------------------------------------------
# conv2d_naive, im2col, conv2d against PyTorch
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), ((1, 2), (2, 0))])
def test_conv2d_naive_matches_pytorch(device, dtype, stride, padding):
    x = randn(2, 3, 7, 6, device=device, dtype=dtype)
    w, b = randn(4, 3, 3, 2, device=device, dtype=dtype), randn(4, device=device, dtype=dtype)
    out = conv.conv2d_naive(x, w, b, stride, padding)
    torch.testing.assert_close(out, F.conv2d(x, w, b, stride, padding), **TOLERANCE[dtype])
    no_bias = conv.conv2d_naive(x, w, None, stride, padding)
    torch.testing.assert_close(no_bias, F.conv2d(x, w, None, stride, padding), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_matches_unfold(device, dtype):
    x = randn(2, 3, 9, 8, device=device, dtype=dtype)
    cols = conv.im2col(x, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1))
    expected = F.unfold(x, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1))
    assert cols.shape == expected.shape
    torch.testing.assert_close(cols, expected, rtol=0, atol=0)  # a pure copy: exact


def test_im2col_does_not_call_f_unfold(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("im2col must not call F.unfold")

    monkeypatch.setattr(F, "unfold", forbidden)
    monkeypatch.setattr(torch.nn.functional, "unfold", forbidden)
    assert conv.im2col(torch.randn(1, 2, 5, 5), 3).shape == (1, 18, 9)


@PROPERTY_SETTINGS
@given(geometry=conv_geometry())
def test_im2col_matches_unfold_property(device, geometry):
    x_shape, w_shape, stride, padding, dilation = geometry
    x = randn(*x_shape, device=device)
    cols = conv.im2col(x, w_shape[2:], stride, padding, dilation)
    torch.testing.assert_close(cols, F.unfold(x, w_shape[2:], dilation, padding, stride))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_matches_pytorch(device, dtype):
    x = randn(2, 3, 10, 9, device=device, dtype=dtype)
    w, b = randn(5, 3, 3, 3, device=device, dtype=dtype), randn(5, device=device, dtype=dtype)
    for stride, padding, dilation in [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (0, 1), (1, 2))]:
        out = conv.conv2d(x, w, b, stride, padding, dilation)
        expected = F.conv2d(x, w, b, stride, padding, dilation)
        torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
        assert out.dtype == dtype and out.device == x.device


@PROPERTY_SETTINGS
@given(geometry=conv_geometry(), with_bias=st.booleans())
def test_conv2d_matches_pytorch_property(device, geometry, with_bias):
    x_shape, w_shape, stride, padding, dilation = geometry
    x, w = randn(*x_shape, device=device), randn(*w_shape, device=device)
    b = randn(w_shape[0], device=device) if with_bias else None
    out = conv.conv2d(x, w, b, stride, padding, dilation)
    expected = F.conv2d(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(out, expected, **TOLERANCE[torch.float64])
    assert out.shape[2:] == tuple(
        conv.conv_output_size(x_shape[2 + a], w_shape[2 + a], stride[a], padding[a], dilation[a])
        for a in range(2)
    )


@PROPERTY_SETTINGS
@given(geometry=conv_geometry(max_dilation=1))
def test_conv2d_naive_matches_conv2d_property(device, geometry):
    x_shape, w_shape, stride, padding, _ = geometry
    x, w = randn(*x_shape, device=device), randn(*w_shape, device=device)
    b = randn(w_shape[0], device=device)
    torch.testing.assert_close(
        conv.conv2d_naive(x, w, b, stride, padding),
        conv.conv2d(x, w, b, stride, padding),
        **TOLERANCE[torch.float64],
    )


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 1), 2)])
def test_conv2d_gradcheck(device, stride, padding, dilation):
    x = randn(2, 2, 6, 5, device=device, requires_grad=True)
    w = randn(3, 2, 2, 3, device=device, requires_grad=True)
    b = randn(3, device=device, requires_grad=True)

    def f(x, w, b):
        return conv.conv2d(x, w, b, stride, padding, dilation)

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_gradients_match_pytorch(device, dtype):
    x = randn(2, 3, 8, 7, device=device, dtype=dtype, requires_grad=True)
    w = randn(4, 3, 3, 3, device=device, dtype=dtype, requires_grad=True)
    b = randn(4, device=device, dtype=dtype, requires_grad=True)
    upstream = randn(2, 4, 4, 4, device=device, dtype=dtype)
    ours = torch.autograd.grad(conv.conv2d(x, w, b, 2, 1), (x, w, b), upstream)
    theirs = torch.autograd.grad(F.conv2d(x, w, b, 2, 1), (x, w, b), upstream)
    for got, expected in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, expected, **TOLERANCE[dtype])


# --------------------------------------------------------------------------------------
# The backward pass by hand: conv2d_backward_input, conv2d_backward_weight, col2im
# --------------------------------------------------------------------------------------
GEOMETRIES = [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 1), 2), ((2, 3), (0, 1), (1, 2))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_backward_functions_match_pytorch_gradients(device, dtype, stride, padding, dilation):
    x = randn(3, 2, 9, 8, device=device, dtype=dtype, requires_grad=True)
    w = randn(4, 2, 3, 2, device=device, dtype=dtype, requires_grad=True)
    out = F.conv2d(x, w, None, stride, padding, dilation)
    upstream = randn(*out.shape, device=device, dtype=dtype)
    expected_x, expected_w = torch.autograd.grad(out, (x, w), upstream)
    geometry = (stride, padding, dilation)
    grad_x = conv.conv2d_backward_input(upstream, w.detach(), x.shape, *geometry)
    grad_w = conv.conv2d_backward_weight(upstream, x.detach(), w.shape, *geometry)
    torch.testing.assert_close(grad_x, expected_x, **TOLERANCE[dtype])
    torch.testing.assert_close(grad_w, expected_w, **TOLERANCE[dtype])


@PROPERTY_SETTINGS
@given(geometry=conv_geometry())
def test_backward_functions_match_autograd_of_im2col_property(device, geometry):
    """The hand-written gradients equal autograd through the plain im2col + matmul."""
    x_shape, w_shape, stride, padding, dilation = geometry
    x = randn(*x_shape, device=device, requires_grad=True)
    w = randn(*w_shape, device=device, requires_grad=True)
    cols = conv.im2col(x, w_shape[2:], stride, padding, dilation)
    out = w.reshape(w_shape[0], -1) @ cols
    upstream = randn(*out.shape, device=device)
    expected_x, expected_w = torch.autograd.grad(out, (x, w), upstream)
    out_size = tuple(
        conv.conv_output_size(x_shape[2 + a], w_shape[2 + a], stride[a], padding[a], dilation[a])
        for a in range(2)
    )
    grad_out = upstream.view(x_shape[0], w_shape[0], *out_size)
    geometry = (stride, padding, dilation)
    grad_x = conv.conv2d_backward_input(grad_out, w.detach(), x_shape, *geometry)
    grad_w = conv.conv2d_backward_weight(grad_out, x.detach(), w_shape, *geometry)
    torch.testing.assert_close(grad_x, expected_x, **TOLERANCE[torch.float64])
    torch.testing.assert_close(grad_w, expected_w, **TOLERANCE[torch.float64])


@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES[:3])
def test_backward_functions_gradcheck(device, stride, padding, dilation):
    """Each backward function is linear in grad_out; gradcheck its own derivatives too."""
    x = randn(2, 2, 6, 5, device=device, requires_grad=True)
    w = randn(3, 2, 2, 3, device=device, requires_grad=True)
    g = torch.randn_like(F.conv2d(x, w, None, stride, padding, dilation)).requires_grad_()
    geometry = (stride, padding, dilation)
    assert torch.autograd.gradcheck(
        lambda g, w: conv.conv2d_backward_input(g, w, x.shape, *geometry), (g, w)
    )
    assert torch.autograd.gradcheck(
        lambda g, x: conv.conv2d_backward_weight(g, x, w.shape, *geometry), (g, x)
    )


def test_conv2d_gradgradcheck(device):
    x = randn(2, 2, 5, 5, device=device, requires_grad=True)
    w = randn(3, 2, 3, 2, device=device, requires_grad=True)
    b = randn(3, device=device, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w, b: conv.conv2d(x, w, b, 2, 1), (x, w, b))


def test_stride_1_input_gradient_is_a_transposed_convolution(device):
    """dL/dx = conv2d(g, flipped weights with C_in and C_out swapped, padding D(K-1)-P)."""
    x = randn(2, 3, 8, 7, device=device)
    w = randn(4, 3, 3, 3, device=device)
    g = randn(2, 4, 8, 7, device=device)
    grad_x = conv.conv2d_backward_input(g, w, x.shape, 1, 1, 1)
    flipped = w.flip(2, 3).transpose(0, 1)  # (C_in, C_out, KH, KW)
    torch.testing.assert_close(grad_x, conv.conv2d(g, flipped, padding=1), **TOLERANCE[x.dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im_matches_fold_and_is_the_adjoint_of_im2col(device, dtype):
    x = randn(2, 3, 9, 8, device=device, dtype=dtype)
    geometry = ((3, 2), (2, 1), (1, 2), (2, 1))  # kernel, stride, padding, dilation
    cols = conv.im2col(x, *geometry)
    other = torch.randn_like(cols)
    back = conv.col2im(other, x.shape, *geometry)
    kernel, stride, padding, dilation = geometry
    expected = F.fold(other, x.shape[2:], kernel, dilation, padding, stride)
    torch.testing.assert_close(back, expected, **TOLERANCE[dtype])
    # <im2col(x), cols'> = <x, col2im(cols')>: col2im is the transpose of the copy
    torch.testing.assert_close((cols * other).sum(), (x * back).sum(), **TOLERANCE[dtype])


def record_column_sizes(monkeypatch, budget: int) -> list[int]:
    """Set COLUMN_BUFFER_BYTES; the returned list fills with the bytes of every chunk's columns."""
    monkeypatch.setattr(conv, "COLUMN_BUFFER_BYTES", budget)
    sizes = []
    original = conv._chunk_columns

    def recording(*args):
        columns = original(*args)
        sizes.append(columns.numel() * columns.element_size())
        return columns

    monkeypatch.setattr(conv, "_chunk_columns", recording)
    return sizes


def test_conv2d_builds_its_columns_a_few_images_at_a_time(monkeypatch):
    """No column matrix larger than COLUMN_BUFFER_BYTES (or one image); same result."""
    x = torch.randn(10, 3, 12, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(10, 5, 6, 6, dtype=torch.float64)
    expected = F.conv2d(x, w, b, 2, 1)
    expected_grads = torch.autograd.grad(expected, (x, w, b), upstream)

    one_image = 3 * 9 * 6 * 6 * 8  # bytes of one image's columns
    sizes = record_column_sizes(monkeypatch, budget=3 * one_image)  # 3 images a chunk
    out = conv.conv2d(x, w, b, 2, 1)
    grads = torch.autograd.grad(out, (x, w, b), upstream)
    torch.testing.assert_close(out, expected, **TOLERANCE[torch.float64])
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE[torch.float64])
    # forward: chunks of 3, 3, 3, 1 images; the weight gradient rebuilds the same chunks
    assert sizes == [3 * one_image] * 3 + [one_image] + [3 * one_image] * 3 + [one_image]


def test_large_images_are_cut_into_bands_of_rows(monkeypatch):
    """One image's columns exceed the buffer: bands of output rows, each within budget."""
    x = torch.randn(2, 3, 20, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    expected = F.conv2d(x, w, None, 1, 1)
    upstream = torch.randn_like(expected)
    row_bytes = 27 * 9 * 8  # one output row's columns
    sizes = record_column_sizes(monkeypatch, budget=6 * row_bytes)
    out = conv.conv2d(x, w, None, 1, 1)
    torch.testing.assert_close(out, expected, **TOLERANCE[torch.float64])
    assert sizes == [6 * row_bytes] * 3 + [2 * row_bytes] + [6 * row_bytes] * 3 + [2 * row_bytes]
    grads = torch.autograd.grad(out, (x, w), upstream)
    for got, want in zip(grads, torch.autograd.grad(expected, (x, w), upstream), strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE[torch.float64])


@pytest.mark.parametrize("height, padding", [(1, 2), (7, 3), (2, 4)])
def test_bands_that_lie_wholly_in_the_padding(monkeypatch, height, padding):
    """With one output row per band, the first and last bands read only padding rows."""
    monkeypatch.setattr(conv, "COLUMN_BUFFER_BYTES", 1)
    x = torch.randn(2, 1, height, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 1, 2, dtype=torch.float64, requires_grad=True)
    out = conv.conv2d(x, w, None, 1, (padding, 0))
    expected = F.conv2d(x, w, None, 1, (padding, 0))
    torch.testing.assert_close(out, expected, **TOLERANCE[torch.float64])
    grads = torch.autograd.grad(out.sum(), (x, w))
    for got, want in zip(grads, torch.autograd.grad(expected.sum(), (x, w)), strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE[torch.float64])


@PROPERTY_SETTINGS
@given(geometry=conv_geometry(), with_bias=st.booleans())
def test_conv2d_one_output_row_at_a_time_property(monkeypatch, geometry, with_bias):
    """The smallest buffer: every output row is its own chunk (padding at band edges)."""
    monkeypatch.setattr(conv, "COLUMN_BUFFER_BYTES", 1)
    x_shape, w_shape, stride, padding, dilation = geometry
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*w_shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True) if with_bias else None
    out = conv.conv2d(x, w, b, stride, padding, dilation)
    expected = F.conv2d(x, w, b, stride, padding, dilation)
    torch.testing.assert_close(out, expected, **TOLERANCE[torch.float64])
    upstream = torch.randn_like(expected)
    inputs = (x, w) if b is None else (x, w, b)
    grads = torch.autograd.grad(out, inputs, upstream)
    for got, want in zip(grads, torch.autograd.grad(expected, inputs, upstream), strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE[torch.float64])


def test_conv2d_uses_none_of_pytorchs_convolutions(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("conv2d must compute the convolution itself")

    for name in ("conv2d", "conv_transpose2d", "unfold", "fold"):
        monkeypatch.setattr(F, name, forbidden)
    for name in ("conv2d", "convolution", "conv_transpose2d"):
        monkeypatch.setattr(torch, name, forbidden)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    conv.conv2d(x, w, padding=1).sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def test_conv2d_accepts_channels_last_and_non_contiguous_gradients():
    x = torch.randn(2, 3, 7, 7).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    out = conv.conv2d(x, w, padding=1)
    torch.testing.assert_close(out, F.conv2d(x, w, padding=1), **TOLERANCE[torch.float32])
    out.sum().backward()  # grad_out is an expanded (stride-0) tensor of ones
    x_ref = x.detach().clone().requires_grad_()
    F.conv2d(x_ref, w.detach(), padding=1).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, **TOLERANCE[torch.float32])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: conv.conv2d_backward_input(G, W, (1, 3, 5, 5)), ValueError, None),
        (lambda: conv.conv2d_backward_input(G[0], W, X.shape), ValueError, r"grad_out must be a"),
        (lambda: conv.conv2d_backward_input(G, W, (1, 4, 5, 5)), ValueError, "channel mismatch"),
        (lambda: conv.conv2d_backward_input(G, W, (1, 3, 5)), ValueError, "input_shape must be"),
        (lambda: conv.conv2d_backward_input(G, W, (1, 3, 6, 5)), ValueError, r"grad_out has sh"),
        (lambda: conv.conv2d_backward_input(G.double(), W, X.shape), TypeError, "weight has dt"),
        (lambda: conv.conv2d_backward_weight(G, X, (2, 3, 3)), ValueError, "weight_shape must"),
        (lambda: conv.conv2d_backward_weight(G, X, (3, 3, 3, 3)), ValueError, r"grad_out has sh"),
        (lambda: conv.conv2d_backward_weight(G, X, W.shape, 2), ValueError, r"grad_out has sh"),
        (lambda: conv.conv2d_backward_weight(G, X.numpy(), W.shape), TypeError, "x must be a"),
        (lambda: conv.col2im(conv.im2col(X, 3), X.shape, 2), ValueError, "columns has shape"),
    ],
)
def test_backward_bad_input(call, error, message):
    if message is None:  # a valid call: the right shape comes back
        assert call().shape == (1, 3, 5, 5)
        return
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------------------
# Counting: the decks' figures
# --------------------------------------------------------------------------------------
def test_alexnet_conv1_parameters():
    assert conv.conv2d_params(3, 96, 11) == 34_944  # 96 filters * (11*11*3 + 1) = 96 * 364
    assert conv.conv2d_params(3, 96, 11) == sum(
        p.numel() for p in nn.Conv2d(3, 96, 11).parameters()
    )
    output_size = conv.conv_output_size(227, 11, stride=4)
    assert output_size == 55 and 55 * 55 * 96 == 290_400
    assert conv.locally_connected_params(3, 96, 11, output_size) == 105_705_600


def test_cifar_conv_multiply_adds():
    """3x32x32 input, ten 5x5 filters, same padding: 75 * 1024 * 10 = 768,000."""
    padding = conv.same_padding(5)
    output_size = conv.conv_output_size(32, 5, padding=padding)
    assert (padding, output_size) == (2, 32)
    assert conv.conv2d_macs(3, 10, 5, output_size) == 768_000
    assert conv.conv2d_params(3, 10, 5) == 750 + 10


def test_macs_equal_the_matmul_size():
    """The im2col matmul (F, CKK) @ (CKK, L) does exactly F * CKK * L multiply-adds."""
    weight_matrix = torch.randn(10, 3, 5, 5).view(10, -1)  # (F, C*KH*KW) = (10, 75)
    cols = conv.im2col(torch.randn(1, 3, 32, 32), 5, padding=2)  # (1, 75, 1024)
    filters, dot_length = weight_matrix.shape
    assert cols.shape == (1, dot_length, 1024)
    assert filters * dot_length * cols.shape[2] == conv.conv2d_macs(3, 10, 5, 32) == 768_000


def test_counts_match_torch_modules():
    assert conv.linear_params(120, 84) == sum(p.numel() for p in nn.Linear(120, 84).parameters())
    assert conv.linear_params(120, 84, bias=False) == 120 * 84
    layer = nn.Conv2d(6, 16, (5, 3), bias=False)
    assert conv.conv2d_params(6, 16, (5, 3), bias=False) == layer.weight.numel()
    assert conv.locally_connected_params(1, 2, 3, (4, 5), bias=False) == 2 * 9 * 20
    assert conv.conv2d_macs(2, 4, (3, 1), (5, 6)) == 2 * 3 * 4 * 30


# --------------------------------------------------------------------------------------
# The Conv2d layer
# --------------------------------------------------------------------------------------
def test_conv2d_module_matches_nn_conv2d(device):
    torch.manual_seed(1)
    ours = conv.Conv2d(3, 8, 3, stride=2, padding=1, device=device, dtype=torch.float64)
    torch.manual_seed(1)
    theirs = nn.Conv2d(3, 8, 3, stride=2, padding=1, device=device, dtype=torch.float64)
    # Same names, shapes and (seeded) initial values as nn.Conv2d.
    for (name, p), (name_t, p_t) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        assert name == name_t
        torch.testing.assert_close(p, p_t, rtol=0, atol=0)
    x = randn(2, 3, 9, 9, device=device)
    torch.testing.assert_close(ours(x), theirs(x), **TOLERANCE[torch.float64])


def test_conv2d_module_state_dict_round_trip():
    theirs = nn.Conv2d(2, 4, (3, 2), padding=(1, 0), dilation=2, bias=False)
    ours = conv.Conv2d(2, 4, (3, 2), padding=(1, 0), dilation=2, bias=False)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(ours(x), theirs(x), **TOLERANCE[torch.float32])
    back = nn.Conv2d(2, 4, (3, 2), padding=(1, 0), dilation=2, bias=False)
    back.load_state_dict(ours.state_dict())
    assert ours.bias is None and "bias=False" in repr(ours)


def test_conv2d_module_trains():
    torch.manual_seed(0)
    layer = conv.Conv2d(1, 1, 3, padding=1)
    x = torch.randn(4, 1, 6, 6)
    target = F.conv2d(x, torch.ones(1, 1, 3, 3), padding=1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    losses = []
    for _ in range(50):
        loss = F.mse_loss(layer(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]


# --------------------------------------------------------------------------------------
# Bad input: the right error type, with a message that names the problem
# --------------------------------------------------------------------------------------
X = torch.randn(1, 3, 5, 5)
W = torch.randn(2, 3, 3, 3)
G = torch.randn(1, 2, 3, 3)  # the gradient of conv2d(X, W)


@pytest.mark.parametrize("convolve", [conv.conv2d, conv.conv2d_naive], ids=["conv2d", "naive"])
@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((X[0], W), {}, ValueError, r"x must be a 4-D tensor \(N, C, H, W\); got 3-D"),
        ((X, W[0]), {}, ValueError, r"weight must be a 4-D tensor \(C_out, C_in, KH, KW\)"),
        ((X, torch.randn(2, 4, 3, 3)), {}, ValueError, "channel mismatch: x has C_in=3"),
        ((X, torch.randn(2, 3, 6, 3)), {}, ValueError, "kernel is larger than the padded input"),
        ((X, W), {"stride": 0}, ValueError, "stride must be >= 1; got 0"),
        ((X, W), {"stride": -2}, ValueError, "stride must be >= 1; got -2"),
        ((X, W), {"padding": -1}, ValueError, "padding must be >= 0; got -1"),
        ((X, W), {"stride": 1.5}, TypeError, "stride must be an int"),
        ((X.long(), W), {}, TypeError, "x must have a floating dtype"),
        ((X, W.int()), {}, TypeError, "weight must have a floating dtype"),
        ((X.numpy(), W), {}, TypeError, "x must be a torch.Tensor"),
        ((X, W, torch.randn(3)), {}, ValueError, r"bias has 3 entries but there are C_out=2"),
        ((X, W, torch.randn(2, 1)), {}, ValueError, r"bias must be a 1-D tensor \(C_out,\)"),
        ((X, W.double()), {}, TypeError, "weight has dtype torch.float64 but the input"),
    ],
)
def test_conv2d_bad_input(convolve, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        convolve(*args, **kwargs)


@pytest.mark.parametrize(
    "func, args, error, message",
    [
        (conv.conv_output_size, (5, 7), ValueError, "kernel is larger than the padded input"),
        (conv.conv_output_size, (5, 3, 1, 0, 3), ValueError, "effective kernel size 7"),
        (conv.conv_output_size, (5, 3, 0), ValueError, "stride must be >= 1"),
        (conv.conv_output_size, (5, 0), ValueError, "kernel_size must be >= 1"),
        (conv.conv_output_size, (5, 3, 1, -1), ValueError, "padding must be >= 0"),
        (conv.conv_output_size, (5.0, 3), TypeError, "input_size must be an int"),
        (conv.same_padding, (4,), ValueError, "'same' padding needs an odd kernel_size; got 4"),
        (conv.same_padding, (3, 0), ValueError, "dilation must be >= 1"),
        (conv.corr1d, ([1.0, 2.0], torch.ones(1)), TypeError, "x must be a torch.Tensor"),
        (conv.corr1d, (torch.ones(2, 2), torch.ones(1)), ValueError, r"x must be a 1-D tensor"),
        (conv.corr1d, (torch.arange(5), torch.ones(2)), TypeError, "x must have a floating"),
        (conv.corr1d, (torch.ones(2), torch.ones(3)), ValueError, "kernel is larger than the"),
        (conv.corr2d, (torch.ones(3), torch.ones(2, 2)), ValueError, r"\(H, W\); got 1-D"),
        (conv.corr2d, (torch.ones(3, 3), torch.ones(4, 2)), ValueError, "kernel is larger"),
        (conv.im2col, (X[0], 3), ValueError, r"x must be a 4-D tensor"),
        (conv.im2col, (X, 6), ValueError, "kernel is larger than the padded input"),
        (conv.im2col, (X, 3, 0), ValueError, "stride must be >= 1"),
        (conv.im2col, (X, (3, 3, 3)), ValueError, r"kernel_size must be an int or a pair"),
        (conv.pad2d, (X, -1), ValueError, "padding must be >= 0"),
        (conv.conv2d_params, (0, 96, 11), ValueError, "in_channels must be >= 1"),
        (conv.conv2d_params, (3, 96, 0), ValueError, "kernel_size must be >= 1"),
        (conv.locally_connected_params, (3, 96, 11, 0), ValueError, "output_size must be >= 1"),
        (conv.linear_params, (10, 2.5), TypeError, "out_features must be an int"),
        (conv.conv2d_macs, (3, 10, 5, -32), ValueError, "output_size must be >= 1"),
        (conv.Conv2d, (3, 8, 3, 0), ValueError, "stride must be >= 1"),
        (conv.Conv2d, (3, 8, 3, 1, -1), ValueError, "padding must be >= 0"),
    ],
)
def test_bad_input_messages(func, args, error, message):
    with pytest.raises(error, match=message):
        func(*args)


def test_conv2d_module_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="channel mismatch"):
        conv.Conv2d(3, 4, 3)(torch.randn(1, 1, 5, 5))
