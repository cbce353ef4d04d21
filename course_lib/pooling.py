"""Pooling: max, average and global average pooling, and the max-pool backward pass.

A pooling layer summarises every ``K_h x K_w`` window of each channel by one number, with no
learnable parameters. For ``x: (N, C, H, W)``, stride ``S`` (default: the kernel size) and
padding ``P``:

    max:     out[n, c, i, j] = max_{u, v}  x_pad[n, c, i*S + u, j*S + v]
    average: out[n, c, i, j] = 1/(K_h*K_w) * sum_{u, v} x_pad[n, c, i*S + u, j*S + v]

and each output size is ``floor((H + 2P - K) / S) + 1``, the convolution rule.
(One deck writes ``(H - K) / (s + 1)``; that is wrong: ``H=4, K=2, s=2`` gives 0.67 where
PyTorch gives 2.) Max pooling pads with ``-inf`` so that padding never wins a window;
average pooling pads with zeros. As in PyTorch, the padding may be at most half the kernel
(``P <= K // 2``), so that every window holds at least one real pixel.

How it is computed: ``max_pool2d_naive`` loops over windows (for reading). The vectorized
functions work on *taps*: for each offset ``(u, v)`` inside the window, the ``(N, C, H_out,
W_out)`` view of the pixel at that offset in every window; a max (or a sum) over the
``K_h*K_w`` taps pools all windows at once, without copying the windows. Average pooling sums
rows first and columns second (a box sum is separable). Both work through the batch a few
images at a time (``course_lib._chunks``), and each has a hand-written backward pass: the
max pool records where each maximum came from and scatters the gradient there; the average
spreads each gradient evenly over its window.
"""

from __future__ import annotations

import torch

from course_lib._chunks import batch_chunks
from course_lib._validate import check_same_device_dtype, check_tensor, pair
from course_lib.conv import conv_output_size, pad2d

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
    """Validate ``x`` and the window; return kernel, stride, padding and ``(H_out, W_out)``."""
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

    ``out[n, c, i, j] = max_{u < K_h, v < K_w} x[n, c, i*S + u, j*S + v]``

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C, H_out, W_out)``, ``H_out = floor((H - K_h) / S) + 1``.
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


def _tap_views(x_pad: torch.Tensor, kernel: Pair, strides: Pair, out_size: Pair) -> list:
    """The ``K_h*K_w`` taps of every window, ``(N, C, H_out, W_out)`` views each:
    ``taps[u*K_w + v][n, c, i, j] = x_pad[n, c, i*S_h + u, j*S_w + v]``.

    A "tap" is the pixel at offset ``(u, v)`` from each window's corner; as ``(N, C, H_out,
    W_out)`` tensors, whole-tensor operations over the taps pool every window at once.
    With stride 1 each tap is a shifted slice of ``x_pad``. With stride ``S > 1`` it would
    read every ``S``-th pixel of a row, which the CPU's vector instructions cannot load at
    once (about 7x slower); so ``x_pad`` is first split into its ``S_h*S_w`` *phases*
    ``x_pad[:, :, a::S_h, b::S_w]`` (one copy of the input in all), and tap ``(u, v)`` is the
    shifted slice of phase ``(u % S_h, v % S_w)`` starting at ``(u // S_h, v // S_w)``.
    """
    (kernel_h, kernel_w), (stride_h, stride_w), (out_h, out_w) = kernel, strides, out_size
    if (stride_h, stride_w) == (1, 1):
        phases = {(0, 0): x_pad}
    else:
        phases = {
            (a, b): x_pad[:, :, a::stride_h, b::stride_w].contiguous()
            for a in range(min(stride_h, kernel_h))
            for b in range(min(stride_w, kernel_w))
        }
    taps = []
    for u in range(kernel_h):
        for v in range(kernel_w):
            phase = phases[u % stride_h, v % stride_w]
            top, left = u // stride_h, v // stride_w
            taps.append(phase[:, :, top : top + out_h, left : left + out_w])
    return taps


def _max_over_taps(
    x: torch.Tensor,
    kernel: Pair,
    strides: Pair,
    paddings: Pair,
    out: torch.Tensor,
    tap_index: torch.Tensor | None,
) -> None:
    """Write the window maxima into ``out`` and (if given) which tap holds each into ``tap_index``.

    A running maximum over the taps (see :func:`_tap_views`): ``K_h*K_w`` passes over the
    output, no copy of the windows. ``tap_index[n, c, i, j] = u*K_w + v`` records the winning
    tap with PyTorch's rule: a later tap wins only if it is strictly larger, or NaN (so ties
    go to the first tap in row-major order).
    """
    padded = pad2d(x, paddings, value=float("-inf")) if any(paddings) else x
    taps = _tap_views(padded, kernel, strides, out.shape[2:])
    out.copy_(taps[0])
    if tap_index is None:
        for tap in taps[1:]:
            torch.maximum(out, tap, out=out)  # NaN wins, as in PyTorch
        return
    tap_index.zero_()
    for k, tap in enumerate(taps[1:], start=1):
        wins = torch.gt(tap, out).logical_or_(torch.isnan(tap))
        # "tap_index = k where the tap wins": k is larger than every earlier index, so this
        # is max(tap_index, k * wins), which (unlike masked_fill_) needs no branch per pixel.
        torch.maximum(tap_index, wins.to(tap_index.dtype).mul_(k), out=tap_index)
        torch.maximum(out, tap, out=out)


def _max_pool(
    x: torch.Tensor,
    kernel: Pair,
    strides: Pair,
    paddings: Pair,
    out_size: Pair,
    with_indices: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(maxima, flat arg-max indices or None)`` of every window, a few images at a time."""
    out = x.new_empty(*x.shape[:2], *out_size)
    indices = torch.empty(out.shape, dtype=torch.int64, device=x.device) if with_indices else None
    taps = kernel[0] * kernel[1]
    index_dtype = torch.uint8 if taps <= 256 else torch.int64  # one byte is enough
    for images in batch_chunks(x):
        if indices is None:
            _max_over_taps(x[images], kernel, strides, paddings, out[images], None)
            continue
        tap_index = torch.empty(out[images].shape, dtype=index_dtype, device=x.device)
        _max_over_taps(x[images], kernel, strides, paddings, out[images], tap_index)
        indices[images] = _flat_indices(x.shape[3], tap_index, kernel, strides, paddings)
    return out, indices


def _flat_indices(
    width: int, tap_index: torch.Tensor, kernel: Pair, strides: Pair, paddings: Pair
) -> torch.Tensor:
    """Turn each window's tap index ``u*K_w + v`` into ``r * W + s`` in the unpadded plane.

    The pixel of tap ``(u, v)`` of window ``(i, j)`` is ``r = i*S_h - P_h + u``,
    ``s = j*S_w - P_w + v``: the window's corner plus the tap's offset ``u*W + v``.
    """
    out_h, out_w = tap_index.shape[2:]
    device = tap_index.device
    top = torch.arange(out_h, device=device).view(out_h, 1) * strides[0] - paddings[0]
    left = torch.arange(out_w, device=device).view(1, out_w) * strides[1] - paddings[1]
    taps = torch.arange(kernel[0] * kernel[1], device=device)
    tap_offsets = (taps // kernel[1]) * width + taps % kernel[1]  # u*W + v for every tap
    indices = tap_offsets[tap_index.long()] + (top * width + left)
    if any(paddings):
        # Padding is -inf, so only tap 0 can win inside it: in a window whose real pixels
        # are all -inf. PyTorch then reports the window's first *real* pixel, which is the
        # corner clamped into the image.
        first_real = top.clamp(min=0) * width + left.clamp(min=0)
        indices = torch.where(tap_index == 0, first_real, indices)
    return indices


def _route_to_indices(
    grad_out: torch.Tensor, indices: torch.Tensor, x_shape: torch.Size
) -> torch.Tensor:
    """``grad_x[n, c, indices[n, c, i, j]] += grad_out[n, c, i, j]`` (the max-pool backward)."""
    batch, channels, height, width = x_shape
    grad_x = grad_out.new_zeros(batch, channels, height * width)
    # scatter_add_ adds grad_out[n, c, k] into grad_x[n, c, indices[n, c, k]]; overlapping
    # windows that share a winner add up.
    grad_x.scatter_add_(2, indices.flatten(start_dim=2), grad_out.flatten(start_dim=2))
    return grad_x.view(batch, channels, height, width)


class _MaxPool2dFunction(torch.autograd.Function):
    """Max pooling that saves the arg-max indices, so the backward pass is one scatter."""

    @staticmethod
    def forward(ctx, x, kernel, strides, paddings, out_size):  # noqa: D102
        out, indices = _max_pool(x, kernel, strides, paddings, out_size, with_indices=True)
        ctx.save_for_backward(indices)
        ctx.x_shape = x.shape
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    def backward(ctx, grad_out, _grad_indices):  # noqa: D102
        (indices,) = ctx.saved_tensors
        return _route_to_indices(grad_out, indices, ctx.x_shape), None, None, None, None


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
    row-major order and NaN wins (the last NaN of a window), like PyTorch.

    Computed tap by tap: for each offset ``(u, v)`` inside the window, the ``(N, C, H_out,
    W_out)`` strided view of the pixels at that offset is compared with the running maximum.
    The backward pass routes each gradient to its saved index (see :func:`max_pool2d_backward`).

    Shapes: ``x: (N, C, H, W)`` -> ``out: (N, C, H_out, W_out)``, ``indices`` the same, int64.
    """
    kernel, strides, paddings, out_size = _pool_geometry(x, kernel_size, stride, padding)
    return _MaxPool2dFunction.apply(x, kernel, strides, paddings, out_size)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> torch.Tensor:
    """Vectorized max pooling; equals ``F.max_pool2d``.

    ``out[n, c, i, j] = max_{u, v} x_pad[n, c, i*S + u, j*S + v]`` with ``-inf`` padding.

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C, H_out, W_out)`` with
    ``H_out = floor((H + 2P - K_h) / S) + 1``.
    A running maximum over the ``K_h*K_w`` taps of the window (strided views, no copies).
    Differentiable: when a gradient is needed, the arg-max indices are recorded as well and
    the backward pass sends each gradient to its window's arg-max.
    """
    kernel, strides, paddings, out_size = _pool_geometry(x, kernel_size, stride, padding)
    if torch.is_grad_enabled() and x.requires_grad:
        out, _ = _MaxPool2dFunction.apply(x, kernel, strides, paddings, out_size)
        return out
    out, _ = _max_pool(x, kernel, strides, paddings, out_size, with_indices=False)
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
    Ties go to the first index, like PyTorch. (Inside :func:`max_pool2d` the indices come
    from the forward pass; here they are recomputed from ``x``.)

    Shapes: ``grad_out: (N, C, H_out, W_out)``, ``x: (N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    check_tensor(grad_out, "grad_out", 4)
    check_tensor(x, "x", 4)
    check_same_device_dtype(x, "grad_out", grad_out)
    kernel, strides, paddings, out_size = _pool_geometry(x, kernel_size, stride, padding)
    if grad_out.shape != (*x.shape[:2], *out_size):
        raise ValueError(
            f"grad_out has shape {tuple(grad_out.shape)} but pooling x {tuple(x.shape)} gives "
            f"{(*x.shape[:2], *out_size)}; expected grad_out of the pooled output's shape"
        )
    with torch.no_grad():
        _, indices = _max_pool(x, kernel, strides, paddings, out_size, with_indices=True)
    return _route_to_indices(grad_out, indices, x.shape)


# -- average pooling: a box sum, done separably --------------------------------------------
def _every(start: int, step: int, count: int) -> slice:
    """The slice ``start, start + step, ..., start + (count - 1) * step``."""
    return slice(start, start + step * (count - 1) + 1, step)


def _box_sum(x_pad: torch.Tensor, kernel: Pair, strides: Pair, out: torch.Tensor) -> torch.Tensor:
    """``out[n, c, i, j] = sum_{u, v} x_pad[n, c, i*S_h + u, j*S_w + v]``, separably.

    A rectangle's sum is the sum of its row sums: first add the ``K_h`` strided row slices
    (one per ``u``) into ``(N, C, H_out, W_pad)``, then the ``K_w`` strided column slices of
    that into ``out``: ``K_h + K_w`` whole-tensor additions instead of ``K_h * K_w``.
    """
    (kernel_h, kernel_w), (stride_h, stride_w) = kernel, strides
    out_h, out_w = out.shape[2:]
    row_sums = x_pad[:, :, _every(0, stride_h, out_h)].clone()
    for u in range(1, kernel_h):
        row_sums += x_pad[:, :, _every(u, stride_h, out_h)]
    out.copy_(row_sums[..., _every(0, stride_w, out_w)])
    for v in range(1, kernel_w):
        out += row_sums[..., _every(v, stride_w, out_w)]
    return out


def _box_sum_backward(
    grad_sums: torch.Tensor, padded_size: Pair, kernel: Pair, strides: Pair
) -> torch.Tensor:
    """The adjoint of :func:`_box_sum`: every window's gradient goes to each of its pixels."""
    (kernel_h, kernel_w), (stride_h, stride_w) = kernel, strides
    batch, channels, out_h, out_w = grad_sums.shape
    grad_rows = grad_sums.new_zeros(batch, channels, out_h, padded_size[1])
    for v in range(kernel_w):
        grad_rows[..., _every(v, stride_w, out_w)] += grad_sums
    grad_x_pad = grad_sums.new_zeros(batch, channels, *padded_size)
    for u in range(kernel_h):
        grad_x_pad[:, :, _every(u, stride_h, out_h)] += grad_rows
    return grad_x_pad


def _window_counts(
    x: torch.Tensor, kernel: Pair, strides: Pair, paddings: Pair, out_size: Pair
) -> torch.Tensor:
    """Real (unpadded) pixels in every window, ``(H_out, W_out)``: box sums of a plane of ones."""
    ones = pad2d(x.new_ones(1, 1, x.shape[2], x.shape[3]), paddings)
    return _box_sum(ones, kernel, strides, x.new_empty(1, 1, *out_size))[0, 0]


class _AvgPool2dFunction(torch.autograd.Function):
    """Average pooling with its backward pass by hand (no gradient through the slices)."""

    @staticmethod
    def forward(ctx, x, kernel, strides, paddings, out_size, counts):  # noqa: D102
        (pad_h, pad_w), (height, width) = paddings, x.shape[2:]
        ctx.geometry = (x.shape, kernel, strides, paddings, (height + 2 * pad_h, width + 2 * pad_w))
        ctx.save_for_backward(counts)
        out = x.new_empty(*x.shape[:2], *out_size)
        for images in batch_chunks(x):  # a few images at a time
            padded = pad2d(x[images], paddings) if any(paddings) else x[images]
            _box_sum(padded, kernel, strides, out[images])
        return out.div_(kernel[0] * kernel[1] if counts is None else counts)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x_shape, kernel, strides, (pad_h, pad_w), padded_size = ctx.geometry
        (counts,) = ctx.saved_tensors
        grad_sums = grad_out / (kernel[0] * kernel[1] if counts is None else counts)
        grad_x = grad_out.new_empty(x_shape)
        for images in batch_chunks(grad_x):
            grad_x_pad = _box_sum_backward(grad_sums[images], padded_size, kernel, strides)
            grad_x[images] = grad_x_pad[
                :, :, pad_h : pad_h + x_shape[2], pad_w : pad_w + x_shape[3]
            ]
        return grad_x, None, None, None, None, None


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    count_include_pad: bool = True,
) -> torch.Tensor:
    """Vectorized average pooling; equals ``F.avg_pool2d``.

    ``out[n, c, i, j] = sum_{u, v} x_pad[n, c, i*S + u, j*S + v] / count[i, j]`` with zero
    padding, where ``count = K_h*K_w`` (``count_include_pad=True``) or the number of real,
    unpadded pixels in the window (``False``).

    The window sums are separable: sum ``K_h`` strided row slices, then ``K_w`` strided
    column slices of the result. The backward pass spreads each output's gradient,
    divided by its count, evenly over its window (the same two steps in reverse).

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C, H_out, W_out)`` with
    ``H_out = floor((H + 2P - K_h) / S) + 1``.
    """
    kernel, strides, paddings, out_size = _pool_geometry(x, kernel_size, stride, padding)
    counts = None  # None: divide by K_h*K_w
    if not count_include_pad:
        counts = _window_counts(x, kernel, strides, paddings, out_size)
    return _AvgPool2dFunction.apply(x, kernel, strides, paddings, out_size, counts)


def global_avg_pool2d(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: one number per channel, the mean over all pixels.

    ``out[n, c] = 1/(H*W) * sum_{i, j} x[n, c, i, j]``

    Shapes: ``x: (N, C, H, W)`` -> ``(N, C)``; equals ``F.adaptive_avg_pool2d(x, 1).flatten(1)``.
    It replaces flatten + large FC layers at the end of ResNets.
    """
    check_tensor(x, "x", 4)
    return x.mean(dim=(2, 3))
