"""Convolution: output-size arithmetic, naive and im2col convolutions, the backward pass, counting.

Deep-learning "convolution" is cross-correlation: the filter slides over the input without
being flipped. For an input ``x: (N, C_in, H, W)``, weights ``w: (C_out, C_in, K_h, K_w)``
and a bias ``b: (C_out,)``, with stride ``S``, zero padding ``P`` and dilation ``D``::

    out[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[n, c, i*S + u*D, j*S + v*D]

and the output is ``(N, C_out, H_out, W_out)`` with
``H_out = floor((H + 2P - D*(K_h - 1) - 1) / S) + 1`` (likewise ``W_out``).

Three ways to compute it are given:

* ``conv2d_naive``: explicit loops (read it to learn what a convolution does);
* ``im2col``: every receptive field copied out as a column, after which the convolution is one
  matrix product (how fast libraries think about it);
* ``conv2d``: im2col + matrix product done chunk by chunk, with a hand-written backward pass
  (:func:`conv2d_backward_input`, :func:`conv2d_backward_weight`). This is the layer the
  course's models use; it runs at a small constant factor of ``F.conv2d``.

**Why chunks (the column buffer).** The column matrix of a whole batch holds ``K_h*K_w`` copies
of every input pixel: for 32 images of 64x56x56 and a 3x3 kernel that is 231 MB. A fresh buffer
that large is new memory to the operating system each call (the allocator hands big blocks
back at once), so every call first pays a page fault per 4 KiB page, and the copy and the
matrix product stream it through main memory. ``conv2d`` therefore builds the columns chunk by
chunk: a few whole images at a time, or, for an image whose columns alone are too big, a band
of its output rows at a time. Each chunk's columns (at most ``COLUMN_BUFFER_BYTES``, a few MiB)
stay in cache and in memory the allocator reuses, and the cost stays proportional to the
work, ``N*C_out*H_out*W_out*C_in*K_h*K_w`` multiply-adds, at every image size. The backward
pass works through the same chunks: two more matrix products per chunk (see
:func:`conv2d_backward_input` and :func:`conv2d_backward_weight`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validate import check_int, check_same_device_dtype, check_tensor, pair
from course_lib.kernels import use_triton

__all__ = [
    "conv_output_size",
    "same_padding",
    "corr1d",
    "corr2d",
    "pad2d",
    "sliding_windows",
    "conv2d_naive",
    "im2col",
    "col2im",
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_params",
    "locally_connected_params",
    "linear_params",
    "conv2d_macs",
    "Conv2d",
    "COLUMN_BUFFER_BYTES",
    "ACCELERATOR_COLUMN_BUFFER_BYTES",
]

IntOrPair = int | tuple[int, int]
Pair = tuple[int, int]

# Largest column matrix conv2d builds at once on the CPU. A few MiB stay in the CPU's cache and
# are served from memory the allocator keeps (no page faults); the matrix products on chunks
# this size still run at full speed. On a GPU (whose allocator caches memory) larger chunks
# mean fewer, larger matrix products.
COLUMN_BUFFER_BYTES = 4 * 2**20
ACCELERATOR_COLUMN_BUFFER_BYTES = 256 * 2**20


# --------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------
def conv_output_size(
    input_size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Spatial output size of a convolution along one axis.

    ``H_out = floor((H + 2P - D*(K-1) - 1) / S) + 1``; with ``D = 1`` this is the familiar
    ``floor((H + 2P - K) / S) + 1``. The floor means input rows that do not fit a whole
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
    """Padding ``P = D*(K-1)/2`` that keeps a stride-1 convolution's output size.

    From ``H + 2P - D*(K-1) = H``. Only odd kernels work with the same padding on both
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

    ``c[i, j] = sum_{u, v} x[i + u, j + v] * k[u, v]``, e.g. for a 3x3 ``A`` and a 2x2 kernel
    ``k``: ``c11 = a11*k11 + a12*k12 + a21*k21 + a22*k22``.

    Shapes: ``x: (H, W)``, ``k: (K_h, K_w)`` -> ``(H - K_h + 1, W - K_w + 1)``.
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

    Returns ``(N, C, H + 2*P_h, W + 2*P_w)``. Differentiable: the gradient of the padded
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
    """Every ``K_h x K_w`` window of an (already padded) ``x: (N, C, H, W)`` as a view.

    Returns ``(N, C, H_out, W_out, K_h, K_w)`` with
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
) -> tuple[Pair, Pair, Pair, Pair]:
    """Validate a convolution's arguments; return stride, padding, dilation and (H_out, W_out)."""
    check_tensor(x, "x", 4)
    check_tensor(weight, "weight", 4, layout="(C_out, C_in, KH, KW)")
    check_same_device_dtype(x, "weight", weight)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: x has C_in={x.shape[1]} channels but weight "
            f"{tuple(weight.shape)} expects C_in={weight.shape[1]}; expected weight of shape "
            f"(C_out, {x.shape[1]}, KH, KW)"
        )
    if bias is not None:
        check_tensor(bias, "bias", 1, layout="(C_out,)")
        check_same_device_dtype(x, "bias", bias)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"bias has {bias.shape[0]} entries but there are C_out={weight.shape[0]} "
                f"filters; expected bias of shape ({weight.shape[0]},)"
            )
    return _geometry(x.shape, weight.shape, stride, padding, dilation)


def _geometry(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
) -> tuple[Pair, Pair, Pair, Pair]:
    """Stride, padding and dilation as pairs, and the output size ``(H_out, W_out)``."""
    strides = pair(stride, "stride", 1)
    paddings = pair(padding, "padding", 0)
    dilations = pair(dilation, "dilation", 1)
    out_size = tuple(
        conv_output_size(x_shape[2 + axis], weight_shape[2 + axis], s, p, d)
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

    ``out[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[n, c, i*S + u, j*S + v]``

    Shapes: ``x: (N, C_in, H, W)``, ``weight: (C_out, C_in, K_h, K_w)``, ``bias: (C_out,)`` or
    ``None`` -> ``(N, C_out, H_out, W_out)`` with ``H_out = floor((H + 2P - K_h) / S) + 1``.
    """
    (stride_h, stride_w), paddings, _, (out_h, out_w) = _check_conv_args(
        x, weight, bias, stride, padding, 1
    )
    out_channels, _, kernel_h, kernel_w = weight.shape
    x_pad = pad2d(x, paddings)
    out = x.new_zeros(x.shape[0], out_channels, out_h, out_w)
    for n in range(x.shape[0]):
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    top, left = i * stride_h, j * stride_w
                    window = x_pad[n, :, top : top + kernel_h, left : left + kernel_w]
                    out[n, o, i, j] = (window * weight[o]).sum()
            if bias is not None:
                out[n, o] += bias[o]
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

    Shapes: ``x: (N, C_in, H, W)`` -> ``(N, C_in*K_h*K_w, H_out*W_out)``.
    After this, a convolution is one matrix product: ``weight.view(C_out, -1) @ cols``.
    The result holds ``K_h*K_w`` copies of every pixel: see the module docstring for why
    :func:`conv2d` builds it a chunk at a time.
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
    # (N, C, H_out, W_out, KH, KW) -> (N, C, KH, KW, H_out, W_out) -> (N, C*KH*KW, H_out*W_out)
    columns = windows.permute(0, 1, 4, 5, 2, 3)
    return columns.reshape(n, c * kernel_h * kernel_w, out_h * out_w)


def _add_windows_back(
    grad_x_pad: torch.Tensor, window_grads: torch.Tensor, strides: Pair, dilations: Pair
) -> None:
    """Add ``window_grads: (N, C, K_h, K_w, H_out, W_out)`` into the pixels they were read from.

    ``grad_x_pad[n, c, i*S + u*D, j*S + v*D] += window_grads[n, c, u, v, i, j]``, in place, for
    the padded input ``grad_x_pad: (N, C, H + 2P_h, W + 2P_w)``. One strided slice per kernel
    tap ``(u, v)``: the slice starting at ``(u*D, v*D)`` with step ``S`` holds exactly the pixels
    that tap read, one per output position. Overlapping windows (``S < K``) add up.
    """
    kernel_h, kernel_w, out_h, out_w = window_grads.shape[2:]
    (stride_h, stride_w), (dil_h, dil_w) = strides, dilations
    for u in range(kernel_h):
        top = u * dil_h
        rows = slice(top, top + stride_h * (out_h - 1) + 1, stride_h)
        for v in range(kernel_w):
            left = v * dil_w
            cols = slice(left, left + stride_w * (out_w - 1) + 1, stride_w)
            grad_x_pad[:, :, rows, cols] += window_grads[:, :, u, v]


def col2im(
    columns: torch.Tensor,
    input_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """The adjoint of :func:`im2col`: add every column entry back to the pixel it came from.

    ``x[n, c, i*S + u*D - P, j*S + v*D - P] += cols[n, (c, u, v), (i, j)]`` (entries that
    fall into the padding are dropped); equals ``F.fold``. A pixel covered by several windows
    receives the sum of its copies, which is exactly what the backward pass of im2col needs.

    Shapes: ``columns: (N, C*K_h*K_w, H_out*W_out)`` and ``input_shape = (N, C, H, W)``
    -> ``(N, C, H, W)``.
    """
    check_tensor(columns, "columns", 3, layout="(N, C*KH*KW, H_out*W_out)")
    n, c, h, w = _check_shape(input_shape, "input_shape")
    kernel = pair(kernel_size, "kernel_size", 1)
    strides, paddings, dilations, (out_h, out_w) = _geometry(
        input_shape, (1, c, *kernel), stride, padding, dilation
    )
    expected = (n, c * kernel[0] * kernel[1], out_h * out_w)
    if tuple(columns.shape) != expected:
        raise ValueError(
            f"columns has shape {tuple(columns.shape)} but im2col of an input {tuple(input_shape)} "
            f"with this kernel, stride, padding and dilation has shape {expected}"
        )
    (pad_h, pad_w) = paddings
    grad_x_pad = columns.new_zeros(n, c, h + 2 * pad_h, w + 2 * pad_w)
    _add_windows_back(grad_x_pad, columns.reshape(n, c, *kernel, out_h, out_w), strides, dilations)
    return grad_x_pad[:, :, pad_h : pad_h + h, pad_w : pad_w + w]


# -- conv2d: the forward pass chunk by chunk, and its backward pass ----------------------
def _chunk_plan(column_rows: int, out_size: Pair, n: int, tensor: torch.Tensor) -> Pair:
    """``(images, output rows)`` per chunk, so that a chunk's columns fit ``COLUMN_BUFFER_BYTES``
    (``ACCELERATOR_COLUMN_BUFFER_BYTES`` for a tensor on a GPU).

    Whole images when one image's columns fit (as many images as fit), else bands of output
    rows of a single image: a large image is cut into horizontal strips.
    """
    out_h, out_w = out_size
    budget = COLUMN_BUFFER_BYTES if tensor.device.type == "cpu" else ACCELERATOR_COLUMN_BUFFER_BYTES
    bytes_per_row = column_rows * out_w * tensor.element_size()  # one output row's columns
    rows = max(1, budget // bytes_per_row)
    if rows >= out_h:
        return min(n, rows // out_h), out_h
    return 1, rows


def _chunks(n: int, out_h: int, plan: Pair):
    """Every chunk of the plan: ``(images, rows)`` slices, row bands inside image groups."""
    images_per_chunk, rows_per_chunk = plan
    for start in range(0, n, images_per_chunk):
        for row in range(0, out_h, rows_per_chunk):
            yield (
                slice(start, start + images_per_chunk),
                slice(row, min(row + rows_per_chunk, out_h)),
            )


def _chunk_columns(
    x: torch.Tensor,
    images: slice,
    rows: slice,
    kernel: Pair,
    strides: Pair,
    paddings: Pair,
    dilations: Pair,
) -> torch.Tensor:
    """im2col of output rows ``rows`` of images ``images``, side by side:
    ``(C_in*K_h*K_w, B*R*W_out)`` for ``B`` images and ``R`` rows.

    Row ``(c, u, v)``, column ``(b, i, j)`` holds ``x_pad[b, c, i*S + u*D, j*S + v*D]``. With
    the images side by side, one matrix product serves the whole chunk in the forward pass
    *and* in the weight gradient (which sums over images). Only the input rows these output
    rows read are padded and copied: from ``i_first*S_h - P_h`` to ``i_last*S_h - P_h +
    D_h*(K_h - 1)``.
    """
    height = x.shape[2]
    span_h = dilations[0] * (kernel[0] - 1) + 1
    top = rows.start * strides[0] - paddings[0]  # first input row read (may be padding)
    bottom = (rows.stop - 1) * strides[0] - paddings[0] + span_h  # one past the last
    # the real rows among them (maybe none: a band can lie wholly in the padding)
    first = min(max(top, 0), height)
    last = max(min(bottom, height), first)
    pad_top = min(max(first - top, 0), bottom - top)
    pad_bottom = (bottom - top) - pad_top - (last - first)
    x_pad = F.pad(x[images, :, first:last], (paddings[1], paddings[1], pad_top, pad_bottom))
    windows = sliding_windows(x_pad, kernel, strides, dilations)
    b, c, out_rows, out_w, kernel_h, kernel_w = windows.shape
    # (B, C, R, W_out, KH, KW) -> (C, KH, KW, B, R, W_out); reshape makes the copy.
    return windows.permute(1, 4, 5, 0, 2, 3).reshape(c * kernel_h * kernel_w, -1)


def _as_matrix(grad_out_chunk: torch.Tensor) -> torch.Tensor:
    """``(B, C_out, H_out, W_out)`` -> ``(C_out, B*H_out*W_out)``, the columns' layout."""
    return grad_out_chunk.transpose(0, 1).reshape(grad_out_chunk.shape[1], -1)


def _conv2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    strides: Pair,
    paddings: Pair,
    dilations: Pair,
    out_size: Pair,
) -> torch.Tensor:
    """``out = w_mat @ columns (+ b)`` chunk by chunk; see :func:`conv2d`.

    On a CUDA GPU the Triton kernel :func:`course_lib.kernels.conv2d_forward` computes the
    same product tile by tile without storing any columns (an "implicit GEMM").
    """
    if use_triton(x):
        from course_lib.kernels import conv2d_forward

        return conv2d_forward(x, weight, bias, strides, paddings, dilations)
    n, out_channels = x.shape[0], weight.shape[0]
    out_h, out_w = out_size
    w_mat = weight.reshape(out_channels, -1)  # (C_out, C_in*KH*KW)
    out = x.new_empty(n, out_channels, out_h, out_w)
    plan = _chunk_plan(w_mat.shape[1], out_size, n, x)
    for images, rows in _chunks(n, out_h, plan):
        columns = _chunk_columns(x, images, rows, weight.shape[2:], strides, paddings, dilations)
        if bias is None:
            out_mat = w_mat @ columns  # (C_out, B*R*W_out)
        else:
            out_mat = torch.addmm(bias.view(-1, 1), w_mat, columns)  # b + w_mat @ columns
        chunk = out_mat.view(out_channels, -1, rows.stop - rows.start, out_w)
        out[images, :, rows] = chunk.transpose(0, 1)
    return out


def _check_backward_args(
    grad_out: torch.Tensor,
    other: torch.Tensor,
    other_name: str,
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
) -> tuple[Pair, Pair, Pair, Pair]:
    """Check grad_out against the convolution of ``x_shape`` with ``weight_shape``."""
    check_tensor(grad_out, "grad_out", 4, layout="(N, C_out, H_out, W_out)")
    check_same_device_dtype(grad_out, other_name, other)
    if x_shape[1] != weight_shape[1]:
        raise ValueError(
            f"channel mismatch: the input has C_in={x_shape[1]} channels but the weight "
            f"{tuple(weight_shape)} expects C_in={weight_shape[1]}"
        )
    geometry = _geometry(x_shape, weight_shape, stride, padding, dilation)
    expected = (x_shape[0], weight_shape[0], *geometry[3])
    if tuple(grad_out.shape) != expected:
        raise ValueError(
            f"grad_out has shape {tuple(grad_out.shape)} but the convolution of an input "
            f"{tuple(x_shape)} with weights {tuple(weight_shape)} gives {expected}; expected "
            "grad_out of the output's shape"
        )
    return geometry


def _check_shape(shape: object, name: str) -> tuple[int, int, int, int]:
    if not isinstance(shape, Sequence) or len(shape) != 4:
        raise ValueError(f"{name} must be a 4-D shape (N, C, H, W); got {shape!r}")
    return tuple(check_int(size, name, 1) for size in shape)


def conv2d_backward_input(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    input_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Gradient of a convolution with respect to its input, by hand: ``dL/dx``.

    Each input pixel fed every output it appears in, so its gradient collects those outputs'
    gradients times the weight that connected them::

        dL/dx_pad[n, c, i*S + u*D, j*S + v*D]  +=  sum_o w[o, c, u, v] * g[n, o, i, j]

    with ``g = dL/dout``. In matrix form, for the columns of a chunk of images:
    ``grad_columns = w_mat.T @ g_mat`` (``(C_in*K_h*K_w, C_out) @ (C_out, B*H_out*W_out)``),
    the gradient of every copy in the column matrix; :func:`col2im` (the adjoint of im2col)
    then adds each copy back to the pixel it was copied from. (For stride 1 this equals a
    convolution of ``g`` with the flipped, transposed weights: the "transposed convolution".)

    Shapes: ``grad_out: (N, C_out, H_out, W_out)``, ``weight: (C_out, C_in, K_h, K_w)``,
    ``input_shape = (N, C_in, H, W)`` -> ``(N, C_in, H, W)``. Autograd can differentiate
    through it (double backward).
    """
    check_tensor(weight, "weight", 4, layout="(C_out, C_in, KH, KW)")
    n, c, h, w = _check_shape(input_shape, "input_shape")
    strides, paddings, dilations, (out_h, out_w) = _check_backward_args(
        grad_out, weight, "weight", input_shape, weight.shape, stride, padding, dilation
    )
    out_channels, _, kernel_h, kernel_w = weight.shape
    w_mat = weight.reshape(out_channels, -1)  # (C_out, C_in*KH*KW)
    (pad_h, pad_w), stride_h = paddings, strides[0]
    grad_x = grad_out.new_empty(n, c, h, w)
    images_per_chunk, rows_per_chunk = _chunk_plan(w_mat.shape[1], (out_h, out_w), n, grad_out)
    for start in range(0, n, images_per_chunk):
        images = slice(start, start + images_per_chunk)
        b = len(range(n)[images])
        grad_x_pad = grad_out.new_zeros(b, c, h + 2 * pad_h, w + 2 * pad_w)
        for row in range(0, out_h, rows_per_chunk):
            rows = slice(row, min(row + rows_per_chunk, out_h))
            g_mat = _as_matrix(grad_out[images, :, rows])  # (C_out, B*R*W_out)
            grad_columns = w_mat.t() @ g_mat  # (C_in*KH*KW, B*R*W_out)
            # rows (c, u, v), columns (b, i, j) -> (B, C, KH, KW, R, W_out), a view
            window_grads = grad_columns.view(c, kernel_h, kernel_w, b, -1, out_w)
            _add_windows_back(
                grad_x_pad[:, :, row * stride_h :],  # output row `row` reads from here on
                window_grads.permute(3, 0, 1, 2, 4, 5),
                strides,
                dilations,
            )
        grad_x[images] = grad_x_pad[:, :, pad_h : pad_h + h, pad_w : pad_w + w]
    return grad_x


def conv2d_backward_weight(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Gradient of a convolution with respect to its weights, by hand: ``dL/dw``.

    A weight is shared by every output position of every image, so its gradient sums over
    them::

        dL/dw[o, c, u, v] = sum_{n, i, j} g[n, o, i, j] * x_pad[n, c, i*S + u*D, j*S + v*D]

    with ``g = dL/dout``. That sum is a matrix product with the columns of im2col:
    ``dL/dw_mat = g_mat @ columns.T`` (``(C_out, B*H_out*W_out) @ (B*H_out*W_out, C_in*K_h*K_w)``),
    accumulated over chunks of images whose columns are rebuilt here (saving them from the
    forward pass would cost ``K_h*K_w`` times the input's memory).

    Shapes: ``grad_out: (N, C_out, H_out, W_out)``, ``x: (N, C_in, H, W)``,
    ``weight_shape = (C_out, C_in, K_h, K_w)`` -> ``(C_out, C_in, K_h, K_w)``. The bias
    gradient is simply ``grad_out.sum((0, 2, 3))``.
    """
    check_tensor(x, "x", 4)
    out_channels, in_channels, kernel_h, kernel_w = _check_shape(weight_shape, "weight_shape")
    strides, paddings, dilations, (out_h, out_w) = _check_backward_args(
        grad_out, x, "x", x.shape, weight_shape, stride, padding, dilation
    )
    column_rows = in_channels * kernel_h * kernel_w
    grad_w_mat = grad_out.new_zeros(out_channels, column_rows)
    plan = _chunk_plan(column_rows, (out_h, out_w), x.shape[0], x)
    for images, rows in _chunks(x.shape[0], out_h, plan):
        kernel = (kernel_h, kernel_w)
        columns = _chunk_columns(x, images, rows, kernel, strides, paddings, dilations)
        g_mat = _as_matrix(grad_out[images, :, rows])  # (C_out, B*R*W_out)
        grad_w_mat = grad_w_mat + g_mat @ columns.t()
    return grad_w_mat.view(out_channels, in_channels, kernel_h, kernel_w)


class _Conv2dFunction(torch.autograd.Function):
    """``conv2d`` as one autograd node with the hand-written backward pass.

    The forward saves only ``x`` and ``weight`` (as ``F.conv2d`` does); the backward rebuilds
    the columns it needs chunk by chunk.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, strides, paddings, dilations, out_size):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.geometry = (strides, paddings, dilations)
        return _conv2d_forward(x, weight, bias, strides, paddings, dilations, out_size)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_x = grad_weight = grad_bias = None
        if need_x:
            grad_x = conv2d_backward_input(grad_out, weight, x.shape, *ctx.geometry)
        if need_weight:
            grad_weight = conv2d_backward_weight(grad_out, x, weight.shape, *ctx.geometry)
        if need_bias:
            grad_bias = grad_out.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None, None, None


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """Vectorized convolution: im2col, then one matrix product; equals ``F.conv2d``.

    ``out[n, :, :] = w_mat @ cols[n] + b`` with ``w_mat = weight.view(C_out, C_in*K_h*K_w)``
    and ``cols = im2col(x)``, i.e.
    ``out[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[n, c, i*S + u*D, j*S + v*D]``.

    The columns are built chunk by chunk (a few images, or a band of output rows; at most
    ``COLUMN_BUFFER_BYTES`` each), so memory and time grow linearly with the batch and the
    image size; the backward pass is
    :func:`conv2d_backward_input` and :func:`conv2d_backward_weight` (and ``grad_out.sum((0,
    2, 3))`` for the bias) rather than autograd through the copies.

    Shapes: ``x: (N, C_in, H, W)``, ``weight: (C_out, C_in, K_h, K_w)``, ``bias: (C_out,)`` or
    ``None`` -> ``(N, C_out, H_out, W_out)``. Works on any device and floating dtype; on a
    CUDA GPU the forward pass is the Triton kernel of ``course_lib.kernels``.
    """
    strides, paddings, dilations, out_size = _check_conv_args(
        x, weight, bias, stride, padding, dilation
    )
    return _Conv2dFunction.apply(x, weight, bias, strides, paddings, dilations, out_size)


# --------------------------------------------------------------------------------------
# Counting parameters and multiply-adds
# --------------------------------------------------------------------------------------
def conv2d_params(
    in_channels: int, out_channels: int, kernel_size: IntOrPair, bias: bool = True
) -> int:
    """Learnable parameters of a conv layer: ``C_out * (C_in*K_h*K_w + 1)`` (``+1``: the bias).

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

    ``C_out * H_out * W_out * (C_in*K_h*K_w + 1)``. AlexNet conv1 (output 55x55x96):
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
    """Multiply-adds of a conv layer for one image: ``C_in*K_h*K_w * C_out * H_out*W_out``.

    Each output value is a dot product of length ``C_in*K_h*K_w``; there are
    ``C_out*H_out*W_out`` of them. A 3x32x32 image, ten 5x5 filters, same padding (output
    10x32x32): ``75 * 10 * 1024 = 768,000``. The bias adds are not counted.
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

    Parameters ``weight: (C_out, C_in, K_h, K_w)`` and ``bias: (C_out,)`` have the same names,
    shapes and initialisation as ``nn.Conv2d`` (Kaiming-uniform weight with ``a = sqrt(5)``,
    bias uniform in ``+-1/sqrt(C_in*K_h*K_w)``), so ``load_state_dict`` works both ways and
    the same seed gives the same weights.
    Forward: ``x: (N, C_in, H, W) -> (N, C_out, H_out, W_out)``.
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
