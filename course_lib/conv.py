"""Convolution: output-size arithmetic, naive and im2col convolutions, parameter counting.

Deep-learning "convolution" is cross-correlation: the filter slides over the input without
being flipped. For an input ``x: (N, C, H, W)``, filters ``w: (F, C, KH, KW)`` and a bias
``b: (F,)``, with stride ``S``, zero padding ``P`` and dilation ``D``:

    out[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, c, i*S + u*D, j*S + v*D]

and each spatial output size is ``floor((W + 2P - D*(KW-1) - 1) / S) + 1``.

Two ways to compute it are given: ``conv2d_naive`` with explicit loops (read it to learn what
a convolution does) and ``conv2d`` with im2col + one matrix multiply (how fast libraries
think about it; vectorized, differentiable, runs on any device).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_lib._validate import check_int, check_same_device_dtype, check_tensor, pair

__all__ = [
    "conv_output_size",
    "same_padding",
    "corr1d",
    "corr2d",
    "pad2d",
    "sliding_windows",
    "conv2d_naive",
    "im2col",
    "conv2d",
    "conv2d_params",
    "locally_connected_params",
    "linear_params",
    "conv2d_macs",
    "Conv2d",
]

IntOrPair = int | tuple[int, int]


# --------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------
def conv_output_size(
    input_size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Spatial output size of a convolution along one axis.

    ``O = floor((W + 2P - D*(F-1) - 1) / S) + 1``; with ``D = 1`` this is the familiar
    ``floor((W + 2P - F) / S) + 1``. The floor means input rows that do not fit a whole
    final step are dropped (as PyTorch does).

    Two slide formulas are worth checking against this rule:

    * ``(n + 2p - f + s) / s`` equals it only when ``s`` divides ``n + 2p - f``
      (``n=6, f=3, p=0, s=2`` gives 2.5, the true size is 2);
    * the pooling rule ``(H - K) / (s + 1)`` is simply wrong
      (``H=4, K=2, s=2`` gives 0.67, the true size is 2).

    Raises ``ValueError`` when the (dilated) kernel is larger than the padded input, or for
    ``kernel_size, stride, dilation < 1``, ``padding < 0``; ``TypeError`` for non-ints.
    """
    check_int(input_size, "input_size", 1)
    check_int(kernel_size, "kernel_size", 1)
    check_int(stride, "stride", 1)
    check_int(padding, "padding", 0)
    check_int(dilation, "dilation", 1)
    effective_kernel = dilation * (kernel_size - 1) + 1
    padded = input_size + 2 * padding
    if effective_kernel > padded:
        raise ValueError(
            f"kernel is larger than the padded input: effective kernel size "
            f"{effective_kernel} (kernel_size={kernel_size}, dilation={dilation}) > "
            f"input_size + 2*padding = {padded}; expected a kernel that fits"
        )
    return (padded - effective_kernel) // stride + 1


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding ``P = D*(F-1)/2`` that keeps a stride-1 convolution's output size ``W``.

    From ``W + 2P - D*(F-1) = W``. Only odd kernels work with the same padding on both
    sides: an even kernel raises ``ValueError``.
    Examples: ``same_padding(5) == 2``, ``same_padding(3, dilation=2) == 2``.
    """
    check_int(kernel_size, "kernel_size", 1)
    check_int(dilation, "dilation", 1)
    if kernel_size % 2 == 0:
        raise ValueError(
            f"'same' padding needs an odd kernel_size; got {kernel_size}, which would need "
            f"{dilation * (kernel_size - 1) / 2} pixels on each side"
        )
    return dilation * (kernel_size - 1) // 2


# --------------------------------------------------------------------------------------
# The worked examples: 1-D and single-channel 2-D cross-correlation
# --------------------------------------------------------------------------------------
def corr1d(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """1-D cross-correlation ``y[i] = sum_k x[i + k] * w[k]``.

    Shapes: ``x: (L,)``, ``w: (K,)`` -> ``y: (L - K + 1,)``.
    Example from the slides: ``[1,2,3,4,5,6] * [1,2] = [5,8,11,14,17]``.
    """
    check_tensor(x, "x", 1)
    check_tensor(w, "w", 1)
    check_same_device_dtype(x, "w", w)
    if w.shape[0] > x.shape[0]:
        raise ValueError(
            f"kernel is larger than the input: w has length {w.shape[0]}, x has length "
            f"{x.shape[0]}; expected len(w) <= len(x)"
        )
    # x.unfold(0, K, 1) is a (L-K+1, K) view whose row i is the window x[i : i+K].
    windows = x.unfold(0, w.shape[0], 1)
    return windows @ w


def corr2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Single-channel 2-D cross-correlation with explicit loops (the by-hand example).

    ``c[i, j] = sum_{u, v} x[i + u, j + v] * k[u, v]``, e.g. for a 3x3 ``A`` and 2x2 ``W``:
    ``c11 = a11*w11 + a12*w12 + a21*w21 + a22*w22``.

    Shapes: ``x: (H, W)``, ``k: (KH, KW)`` -> ``(H - KH + 1, W - KW + 1)``.
    """
    check_tensor(x, "x", 2, layout="(H, W)")
    check_tensor(k, "k", 2, layout="(KH, KW)")
    check_same_device_dtype(x, "k", k)
    kh, kw = k.shape
    out_h = conv_output_size(x.shape[0], kh)
    out_w = conv_output_size(x.shape[1], kw)
    out = x.new_zeros(out_h, out_w)
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = (x[i : i + kh, j : j + kw] * k).sum()
    return out


# --------------------------------------------------------------------------------------
# Building blocks shared with course_lib.pooling
# --------------------------------------------------------------------------------------
def pad2d(x: torch.Tensor, padding: IntOrPair, value: float = 0.0) -> torch.Tensor:
    """Surround ``x: (N, C, H, W)`` with ``P`` rows / columns of ``value`` on every side.

    Returns ``(N, C, H + 2*PH, W + 2*PW)``. Differentiable: the gradient of the padded
    tensor flows back to the interior. Max pooling pads with ``value=-inf``.
    """
    check_tensor(x, "x", 4)
    pad_h, pad_w = pair(padding, "padding", 0)
    n, c, h, w = x.shape
    out = x.new_full((n, c, h + 2 * pad_h, w + 2 * pad_w), value)
    # Copy-by-slice keeps autograd: out is a fresh tensor, the slice assignment is recorded.
    out[:, :, pad_h : pad_h + h, pad_w : pad_w + w] = x
    return out


def sliding_windows(
    x: torch.Tensor, kernel_size: IntOrPair, stride: IntOrPair = 1, dilation: IntOrPair = 1
) -> torch.Tensor:
    """Every ``KH x KW`` window of an (already padded) ``x: (N, C, H, W)`` as a view.

    Returns ``(N, C, OH, OW, KH, KW)`` with
    ``windows[n, c, i, j, u, v] = x[n, c, i*S + u*D, j*S + v*D]``.

    ``Tensor.unfold(dim, size, step)`` cuts ``dim`` into overlapping pieces of length
    ``size`` every ``step`` elements and appends them as a new last axis; doing it on the
    rows and then on the columns gives all 2-D windows without copying. A dilated window
    is the undilated window of size ``D*(K-1)+1`` keeping every ``D``-th element.
    """
    kernel_h, kernel_w = pair(kernel_size, "kernel_size", 1)
    stride_h, stride_w = pair(stride, "stride", 1)
    dil_h, dil_w = pair(dilation, "dilation", 1)
    span_h = dil_h * (kernel_h - 1) + 1
    span_w = dil_w * (kernel_w - 1) + 1
    windows = x.unfold(2, span_h, stride_h).unfold(3, span_w, stride_w)
    return windows[..., ::dil_h, ::dil_w]


def _check_conv_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate a convolution's arguments; return stride, padding, dilation and (OH, OW)."""
    check_tensor(x, "x", 4)
    check_tensor(weight, "weight", 4, layout="(F, C, KH, KW)")
    check_same_device_dtype(x, "weight", weight)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: x has C={x.shape[1]} channels but weight {tuple(weight.shape)} "
            f"expects C={weight.shape[1]}; expected weight of shape (F, {x.shape[1]}, KH, KW)"
        )
    if bias is not None:
        check_tensor(bias, "bias", 1, layout="(F,)")
        check_same_device_dtype(x, "bias", bias)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"bias has {bias.shape[0]} entries but there are F={weight.shape[0]} filters; "
                f"expected bias of shape ({weight.shape[0]},)"
            )
    strides = pair(stride, "stride", 1)
    paddings = pair(padding, "padding", 0)
    dilations = pair(dilation, "dilation", 1)
    out_size = tuple(
        conv_output_size(x.shape[2 + axis], weight.shape[2 + axis], s, p, d)
        for axis, s, p, d in zip(range(2), strides, paddings, dilations, strict=True)
    )
    return strides, paddings, dilations, out_size


# --------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------
def conv2d_naive(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
) -> torch.Tensor:
    """Convolution with explicit loops over images, filters and output pixels (for teaching).

    ``out[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, c, i*S + u, j*S + v]``

    Shapes: ``x: (N, C, H, W)``, ``weight: (F, C, KH, KW)``, ``bias: (F,)`` or ``None``
    -> ``(N, F, OH, OW)`` with ``OH = floor((H + 2P - KH) / S) + 1`` (likewise ``OW``).
    """
    (stride_h, stride_w), paddings, _, (out_h, out_w) = _check_conv_args(
        x, weight, bias, stride, padding, 1
    )
    num_filters, _, kernel_h, kernel_w = weight.shape
    x_pad = pad2d(x, paddings)
    out = x.new_zeros(x.shape[0], num_filters, out_h, out_w)
    for n in range(x.shape[0]):
        for f in range(num_filters):
            for i in range(out_h):
                for j in range(out_w):
                    top, left = i * stride_h, j * stride_w
                    window = x_pad[n, :, top : top + kernel_h, left : left + kernel_w]
                    out[n, f, i, j] = (window * weight[f]).sum()
            if bias is not None:
                out[n, f] += bias[f]
    return out


def im2col(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Lay every receptive field out as a column ("image to columns"); equals ``F.unfold``.

    ``cols[n, (c, u, v), (i, j)] = x_pad[n, c, i*S + u*D, j*S + v*D]``, where the row index
    runs over ``c, u, v`` (channel slowest) and the column index over ``i, j`` (row-major).

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C*KH*KW, OH*OW)``.
    After this, a convolution is one matrix product: ``weight.view(F, -1) @ cols``.
    """
    check_tensor(x, "x", 4)
    kernel_h, kernel_w = pair(kernel_size, "kernel_size", 1)
    strides = pair(stride, "stride", 1)
    paddings = pair(padding, "padding", 0)
    dilations = pair(dilation, "dilation", 1)
    # Check that the kernel fits on each axis: Tensor.unfold's own error would be cryptic.
    for axis, k in enumerate((kernel_h, kernel_w)):
        conv_output_size(x.shape[2 + axis], k, strides[axis], paddings[axis], dilations[axis])
    windows = sliding_windows(pad2d(x, paddings), (kernel_h, kernel_w), strides, dilations)
    n, c, out_h, out_w = windows.shape[:4]
    # (N, C, OH, OW, KH, KW) -> (N, C, KH, KW, OH, OW) -> (N, C*KH*KW, OH*OW)
    columns = windows.permute(0, 1, 4, 5, 2, 3)
    return columns.reshape(n, c * kernel_h * kernel_w, out_h * out_w)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Vectorized convolution: im2col, then one matrix multiply; equals ``F.conv2d``.

    ``out[n, f, :] = W_mat[f, :] @ cols[n] + b[f]`` with ``W_mat = weight.view(F, C*KH*KW)``
    and ``cols = im2col(x)``, i.e.
    ``out[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, c, i*S + u*D, j*S + v*D]``.

    Shapes: ``x: (N, C, H, W)``, ``weight: (F, C, KH, KW)``, ``bias: (F,)`` or ``None``
    -> ``(N, F, OH, OW)``. Works on any device and floating dtype; autograd differentiates
    through every step, so no hand-written backward is needed.
    """
    strides, paddings, dilations, (out_h, out_w) = _check_conv_args(
        x, weight, bias, stride, padding, dilation
    )
    num_filters, _, kernel_h, kernel_w = weight.shape
    columns = im2col(x, (kernel_h, kernel_w), strides, paddings, dilations)
    # (F, C*KH*KW) @ (N, C*KH*KW, OH*OW) broadcasts over the batch -> (N, F, OH*OW)
    out = weight.reshape(num_filters, -1) @ columns
    if bias is not None:
        out = out + bias.view(1, num_filters, 1)
    return out.view(x.shape[0], num_filters, out_h, out_w)


# --------------------------------------------------------------------------------------
# Counting parameters and multiply-adds
# --------------------------------------------------------------------------------------
def conv2d_params(
    in_channels: int, out_channels: int, kernel_size: IntOrPair, bias: bool = True
) -> int:
    """Learnable parameters of a conv layer: ``F * (C*KH*KW + 1)`` (``+1`` for the bias).

    Weight sharing makes this independent of the image size. AlexNet conv1
    (96 filters of 11x11x3): ``96 * 364 = 34,944``.
    """
    check_int(in_channels, "in_channels", 1)
    check_int(out_channels, "out_channels", 1)
    kernel_h, kernel_w = pair(kernel_size, "kernel_size", 1)
    return out_channels * (in_channels * kernel_h * kernel_w + int(bias))


def locally_connected_params(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    output_size: IntOrPair,
    bias: bool = True,
) -> int:
    """Parameters of the same layer *without* weight sharing: one filter per output pixel.

    ``F * OH * OW * (C*KH*KW + 1)``. AlexNet conv1 (output 55x55x96):
    ``290,400 * 364 = 105,705,600``, about 3000 times ``conv2d_params``.
    """
    kernel_h, kernel_w = pair(kernel_size, "kernel_size", 1)
    out_h, out_w = pair(output_size, "output_size", 1)
    shared = conv2d_params(in_channels, out_channels, (kernel_h, kernel_w), bias)
    return shared * out_h * out_w


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of a fully connected layer: ``out * (in + 1)`` (``+1`` for the bias)."""
    check_int(in_features, "in_features", 1)
    check_int(out_features, "out_features", 1)
    return out_features * (in_features + int(bias))


def conv2d_macs(
    in_channels: int, out_channels: int, kernel_size: IntOrPair, output_size: IntOrPair
) -> int:
    """Multiply-adds of a conv layer for one image: ``C*KH*KW * F * OH*OW``.

    Each output value is a dot product of length ``C*KH*KW``; there are ``F*OH*OW`` of them.
    A 3x32x32 image, ten 5x5 filters, same padding (output 10x32x32):
    ``75 * 10 * 1024 = 768,000``. The bias adds are not counted.
    """
    check_int(in_channels, "in_channels", 1)
    check_int(out_channels, "out_channels", 1)
    kernel_h, kernel_w = pair(kernel_size, "kernel_size", 1)
    out_h, out_w = pair(output_size, "output_size", 1)
    return in_channels * kernel_h * kernel_w * out_channels * out_h * out_w


# --------------------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------------------
class Conv2d(nn.Module):
    """A convolution layer around :func:`conv2d`, a drop-in for ``nn.Conv2d``.

    Parameters ``weight: (F, C, KH, KW)`` and ``bias: (F,)`` have the same names, shapes and
    initialisation as ``nn.Conv2d`` (Kaiming-uniform weight with ``a = sqrt(5)``, bias
    uniform in ``+-1/sqrt(C*KH*KW)``), so ``load_state_dict`` works both ways and the same
    seed gives the same weights. Forward: ``x: (N, C, H, W) -> (N, F, OH, OW)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *self.kernel_size, **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise exactly as ``nn.Conv2d.reset_parameters`` (same random draws)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"bias={self.bias is not None}"
        )
