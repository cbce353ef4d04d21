"""Pooling: max, average and global average pooling, and the max-pool backward pass.

A pooling layer summarises every ``KH x KW`` window of each channel by one number, with no
learnable parameters. For ``x: (N, C, H, W)``, stride ``S`` (default: the kernel size) and
padding ``P``:

    max:     out[n, c, i, j] = max_{u, v}  x_pad[n, c, i*S + u, j*S + v]
    average: out[n, c, i, j] = 1/(KH*KW) * sum_{u, v} x_pad[n, c, i*S + u, j*S + v]

and each output size is ``floor((H + 2P - K) / S) + 1``, the convolution rule.
(One deck writes ``(H - K) / (s + 1)``; that is wrong: ``H=4, K=2, s=2`` gives 0.67 where
PyTorch gives 2.) Max pooling pads with ``-inf`` so that padding never wins a window;
average pooling pads with zeros. As in PyTorch, the padding may be at most half the kernel
(``P <= K // 2``), so that every window holds at least one real pixel.
"""

from __future__ import annotations

import torch

from course_lib._validate import check_same_device_dtype, check_tensor, pair
from course_lib.conv import conv_output_size, pad2d, sliding_windows

__all__ = [
    "pool_output_size",
    "max_pool2d_naive",
    "max_pool2d",
    "max_pool2d_with_indices",
    "max_pool2d_backward",
    "avg_pool2d",
    "global_avg_pool2d",
]

IntOrPair = int | tuple[int, int]
Pair = tuple[int, int]


def _check_pool_padding(kernel: Pair, padding: Pair) -> None:
    for k, p in zip(kernel, padding, strict=True):
        if p > k // 2:
            raise ValueError(
                f"padding must be at most half the kernel size (padding <= kernel_size // 2, "
                f"as in PyTorch); got padding={p} for kernel_size={k}"
            )


def pool_output_size(
    input_size: int, kernel_size: int, stride: int | None = None, padding: int = 0
) -> int:
    """Output size of a pooling layer along one axis: ``floor((H + 2P - K) / S) + 1``.

    ``stride`` defaults to ``kernel_size`` (non-overlapping windows). Raises ``ValueError``
    when the kernel is larger than the padded input, for ``padding > kernel_size // 2``
    (PyTorch's rule), ``kernel_size, stride < 1`` or ``padding < 0``.
    """
    if stride is None:
        stride = kernel_size
    size = conv_output_size(input_size, kernel_size, stride, padding)
    _check_pool_padding((kernel_size, kernel_size), (padding, padding))
    return size


def _pool_geometry(
    x: torch.Tensor, kernel_size: IntOrPair, stride: IntOrPair | None, padding: IntOrPair
) -> tuple[Pair, Pair, Pair, Pair]:
    """Validate ``x`` and the window; return kernel, stride, padding and ``(OH, OW)``."""
    check_tensor(x, "x", 4)
    kernel = pair(kernel_size, "kernel_size", 1)
    strides = kernel if stride is None else pair(stride, "stride", 1)
    paddings = pair(padding, "padding", 0)
    out_size = (
        pool_output_size(x.shape[2], kernel[0], strides[0], paddings[0]),
        pool_output_size(x.shape[3], kernel[1], strides[1], paddings[1]),
    )
    return kernel, strides, paddings, out_size


def max_pool2d_naive(
    x: torch.Tensor, kernel_size: IntOrPair, stride: IntOrPair | None = None
) -> torch.Tensor:
    """Max pooling with explicit loops over images, channels and output pixels (for teaching).

    ``out[n, c, i, j] = max_{u < KH, v < KW} x[n, c, i*S + u, j*S + v]``

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C, OH, OW)``, ``OH = floor((H - KH) / S) + 1``.
    ``[[1,2,3],[4,5,6],[7,8,9]]`` with a 2x2 window and stride 1 gives ``[[5,6],[8,9]]``.
    """
    (kernel_h, kernel_w), (stride_h, stride_w), _, (out_h, out_w) = _pool_geometry(
        x, kernel_size, stride, 0
    )
    batch, channels = x.shape[:2]
    out = x.new_zeros(batch, channels, out_h, out_w)
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    top, left = i * stride_h, j * stride_w
                    out[n, c, i, j] = x[n, c, top : top + kernel_h, left : left + kernel_w].max()
    return out


def max_pool2d_with_indices(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max pooling that also returns where each maximum came from.

    ``out[n, c, i, j] = x[n, c, r, s]`` with ``(r, s)`` the arg-max of the window, and
    ``indices[n, c, i, j] = r * W + s``: a position in the flattened, *unpadded* ``H*W``
    plane, as ``F.max_pool2d(..., return_indices=True)``. Ties go to the first position in
    row-major order, like PyTorch. (A window holding several NaNs returns NaN, as PyTorch
    does, but may point at another of its NaNs.)

    Shapes: ``x: (N, C, H, W)`` -> ``out: (N, C, OH, OW)``, ``indices: (N, C, OH, OW)`` int64.
    """
    kernel, strides, paddings, (out_h, out_w) = _pool_geometry(x, kernel_size, stride, padding)
    windows = sliding_windows(pad2d(x, paddings, value=float("-inf")), kernel, strides)
    # (N, C, OH, OW, KH, KW) -> (N, C, OH, OW, KH*KW); max returns the first arg-max on ties.
    out, position_in_window = windows.flatten(start_dim=4).max(dim=-1)
    # Window (i, j) starts at padded row i*S, i.e. at unpadded row i*S - P.
    top = torch.arange(out_h, device=x.device).view(out_h, 1) * strides[0] - paddings[0]
    left = torch.arange(out_w, device=x.device).view(1, out_w) * strides[1] - paddings[1]
    row = top + position_in_window // kernel[1]
    col = left + position_in_window % kernel[1]
    # A window whose real pixels are all -inf ties with its padding; argmax then points at
    # the window's top-left corner, maybe in the padding. PyTorch reports the first *real*
    # pixel instead, which is that corner clamped into the image.
    return out, row.clamp(min=0) * x.shape[3] + col.clamp(min=0)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> torch.Tensor:
    """Vectorized max pooling; equals ``F.max_pool2d``.

    ``out[n, c, i, j] = max_{u, v} x_pad[n, c, i*S + u, j*S + v]`` with ``-inf`` padding.

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C, OH, OW)``, ``OH = floor((H + 2P - KH) / S) + 1``.
    Differentiable: autograd sends each gradient to its window's arg-max.
    """
    out, _ = max_pool2d_with_indices(x, kernel_size, stride, padding)
    return out


def max_pool2d_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> torch.Tensor:
    """The max-pool backward pass by hand: route each upstream gradient to its arg-max.

    ``dL/dx[n, c, r, s] = sum over windows (i, j) whose arg-max is (r, s) of grad_out[n, c, i, j]``

    Only the winner of a window gets gradient (the max is locally the identity in that
    input and constant in the others); overlapping windows that share a winner add up.
    Ties go to the first index, like PyTorch.

    Shapes: ``grad_out: (N, C, OH, OW)``, ``x: (N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    check_tensor(grad_out, "grad_out", 4)
    check_tensor(x, "x", 4)
    check_same_device_dtype(x, "grad_out", grad_out)
    with torch.no_grad():
        _, indices = max_pool2d_with_indices(x, kernel_size, stride, padding)
    if grad_out.shape != indices.shape:
        raise ValueError(
            f"grad_out has shape {tuple(grad_out.shape)} but pooling x {tuple(x.shape)} gives "
            f"{tuple(indices.shape)}; expected grad_out of the pooled output's shape"
        )
    batch, channels, height, width = x.shape
    grad_x = grad_out.new_zeros(batch, channels, height * width)
    # scatter_add_ adds grad_out[n, c, k] into grad_x[n, c, indices[n, c, k]].
    grad_x.scatter_add_(2, indices.flatten(start_dim=2), grad_out.flatten(start_dim=2))
    return grad_x.view(batch, channels, height, width)


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> torch.Tensor:
    """Vectorized average pooling; equals ``F.avg_pool2d``.

    ``out[n, c, i, j] = sum_{u, v} x_pad[n, c, i*S + u, j*S + v] / count[i, j]`` with zero
    padding, where ``count = KH*KW`` (``count_include_pad=True``) or the number of real,
    unpadded pixels in the window (``False``).

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C, OH, OW)``, ``OH = floor((H + 2P - KH) / S) + 1``.
    """
    kernel, strides, paddings, _ = _pool_geometry(x, kernel_size, stride, padding)
    window_sums = sliding_windows(pad2d(x, paddings), kernel, strides).sum(dim=(-2, -1))
    if count_include_pad:
        return window_sums / (kernel[0] * kernel[1])
    # Pool a plane of ones the same way: each window's sum is its number of real pixels.
    ones = x.new_ones(1, 1, x.shape[2], x.shape[3])
    counts = sliding_windows(pad2d(ones, paddings), kernel, strides).sum(dim=(-2, -1))
    return window_sums / counts


def global_avg_pool2d(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: one number per channel, the mean over all pixels.

    ``out[n, c] = 1/(H*W) * sum_{i, j} x[n, c, i, j]``

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C)``; equals ``F.adaptive_avg_pool2d(x, 1).flatten(1)``.
    It replaces flatten + large FC layers at the end of ResNets.
    """
    check_tensor(x, "x", 4)
    return x.mean(dim=(2, 3))
