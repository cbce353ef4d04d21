"""Batch normalization: the functional forward pass, the backward pass by hand, and modules.

For every channel ``c`` the statistics are taken over all the other axes, i.e. over the
``m = N`` rows of an ``(N, C)`` input or the ``m = N * H * W`` values of an ``(N, C, H, W)`` input::

    mu_c    = 1/m * sum x                       (batch mean)
    var_c   = 1/m * sum (x - mu_c)^2            (biased batch variance: used to normalize)
    x_hat   = (x - mu_c) / sqrt(var_c + eps)
    y       = gamma_c * x_hat + beta_c

In training mode the running statistics are updated in place with an exponential moving
average, and -- a detail PyTorch documents and many slides skip -- the running variance
receives the *unbiased* batch variance ``var_c * m / (m - 1)`` while the output is normalized
with the biased one::

    running_mean = (1 - momentum) * running_mean + momentum * mu_c
    running_var  = (1 - momentum) * running_var  + momentum * var_c * m / (m - 1)

In evaluation mode the running statistics replace ``mu_c`` and ``var_c``, so the layer becomes
a fixed per-channel affine map.

How it is computed: the statistics take two passes over the batch (the mean, then the mean of
the squared *centred* values ``x - mu_c``), and ``scale_c = gamma_c / sqrt(var_c + eps)`` is
folded into one number per channel, so the output costs one multiply-add per value:
``y = scale_c * (x - mu_c) + beta_c``. A batch that fits in the CPU's cache (at most
``course_lib._chunks.CHUNK_BYTES``), and any GPU tensor that the Triton kernel does not take
(MPS; CUDA float64 or ``COURSE_TRITON=0``), is processed whole, in a handful of tensor
operations; there the training forward pass reuses the centred values it computed for the
variance and keeps them, instead of ``x``, for the backward pass. A larger CPU batch
goes through the same statistics a few images at a time (``course_lib._chunks``), so that no
temporary as large as the input is ever made; there, in evaluation mode and in the fused
Triton kernel that training uses on a CUDA GPU, the mean moves into a per-channel shift as
well, ``y = scale_c * x + (beta_c - mu_c * scale_c)``, as PyTorch computes it. In training
mode the backward pass is written by hand (:func:`batch_norm_backward`'s formula) and reuses
what the forward pass saved (the mean, ``1/sqrt(var + eps)``, and ``x - mu`` when it kept
them).

Why two passes and not one: ``var = E[x^2] - E[x]^2`` needs a single pass but subtracts two
nearly equal large numbers when the mean is large compared with the spread, and in float32
loses every digit of the variance (mean 10^4, standard deviation 1: the one-pass formula
returns numbers like -16 or 24 instead of 1). ``torch.var_mean`` is accurate (Welford's
one-pass update) but on the CPU it is several times slower than the two passes (measured with
PyTorch 2.x). The two centred passes are both accurate and fast.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from course_lib._chunks import CHUNK_BYTES, batch_pieces
from course_lib._validate import check_same_device_dtype, check_tensor
from course_lib.kernels import use_triton

__all__ = [
    "batch_statistics",
    "batch_norm",
    "batch_norm_backward",
    "BatchNorm1d",
    "BatchNorm2d",
]

_LAYOUT = "(N, C) or (N, C, H, W)"


# ----------------------------------------------------------------------------------------------
# input checks specific to normalization
# ----------------------------------------------------------------------------------------------
def _check_input(x: object) -> torch.Tensor:
    return check_tensor(x, "x", (2, 4), layout=_LAYOUT)


def _check_per_channel(x: torch.Tensor, name: str, value: object) -> torch.Tensor | None:
    """``value`` must be None or a (C,) tensor with x's dtype and device."""
    if value is None:
        return None
    check_tensor(value, name, 1, layout="(C,)")
    channels = x.shape[1]
    if value.shape[0] != channels:
        raise ValueError(
            f"{name} must have one entry per channel: expected shape ({channels},) for an input "
            f"with {channels} channels (x.shape = {tuple(x.shape)}); got {tuple(value.shape)}"
        )
    check_same_device_dtype(x, name, value)
    return value


def _check_float(value: object, name: str, low: float, high: float | None = None) -> float:
    """A real number with ``low <= value`` (and ``value <= high`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float; got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {expected}; got {value}")
    return float(value)


def _check_eps(eps: object) -> float:
    eps = _check_float(eps, "eps", 0.0)
    if eps == 0.0:
        raise ValueError("eps must be > 0 (it keeps sqrt(var + eps) away from zero); got 0")
    return eps


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return value


def _values_per_channel(x: torch.Tensor) -> int:
    """m: how many numbers each channel's statistics are computed from (N or N*H*W)."""
    return x.numel() // x.shape[1]


def _check_enough_values(x: torch.Tensor) -> None:
    if _values_per_channel(x) < 2:
        raise ValueError(
            "batch norm in training mode needs more than 1 value per channel (N*H*W > 1) to "
            f"estimate a variance; got x.shape = {tuple(x.shape)}. Use a larger batch, or "
            "evaluation mode (running statistics)."
        )


# ----------------------------------------------------------------------------------------------
# shape helpers
# ----------------------------------------------------------------------------------------------
def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    """Every axis but the channel axis 1: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0,) + tuple(range(2, x.dim()))


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will want gradients of any of these tensors."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (C,) vector shaped to broadcast against x: as it is for (N, C), (1, C, 1, 1) for images.

    (Broadcasting lines shapes up from the right, so (C,) already pairs with the C columns
    of an (N, C) input.)
    """
    return v if x.dim() == 2 else v.view(1, -1, 1, 1)


def _in_one_piece(x: torch.Tensor) -> bool:
    """Whether ``x`` is processed whole: it fits in the CPU's cache, or it lives on a GPU.

    Larger CPU batches are processed a few images at a time (``course_lib._chunks``). On a
    small batch that loop would cost more than the arithmetic: every tensor operation called
    from Python has a fixed cost of one to a few microseconds.
    """
    return not x.is_cpu or x.numel() * x.element_size() <= CHUNK_BYTES


# ----------------------------------------------------------------------------------------------
# functional forward and backward
# ----------------------------------------------------------------------------------------------
def batch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and *biased* variance of ``x: (N, C) or (N, C, H, W)``.

    ``mu_c = 1/m sum x``, ``var_c = 1/m sum (x - mu_c)^2`` over every axis but the channel
    axis (``m = N`` or ``N*H*W``). Returns two ``(C,)`` tensors.
    """
    return _statistics(_check_input(x))


def _statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, biased var)``: the textbook two passes over ``x``.

    Pass 1 averages ``x``; pass 2 averages the squares of the *centred* values ``x - mu``,
    which keeps the variance accurate even when the mean is much larger than the spread
    (``E[x^2] - E[x]^2`` would cancel catastrophically; see the module docstring).
    """
    if not _in_one_piece(x):
        return _statistics_in_pieces(x)
    mean, var, _ = _centred_statistics(x)
    return mean, var


def _centred_statistics(
    x: torch.Tensor, squares: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mu, biased var, x - mu)``: :func:`_statistics` for a batch processed whole.

    The two passes also hand back the centred values they computed. The squares
    ``(x - mu)^2`` are written into ``squares`` (a tensor of x's shape) when it is given,
    else into a temporary.
    """
    dims = _reduce_dims(x)
    mean = x.mean(dim=dims)
    centred = x - _per_channel(mean, x)
    var = torch.square(centred, out=squares).mean(dim=dims)
    return mean, var, centred


def _statistics_in_pieces(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_statistics` for a large CPU batch, a few images at a time.

    Pass 1 sums ``x``; pass 2 centres each piece and adds up its squares while the piece is
    still in the CPU's cache (see ``course_lib._chunks``).
    """
    dims, m = _reduce_dims(x), _values_per_channel(x)
    pieces = [piece for (piece,) in batch_pieces(x)]
    total = pieces[0].sum(dim=dims)
    for piece in pieces[1:]:
        total += piece.sum(dim=dims)
    mean = total / m
    centre = _per_channel(mean, x)
    scratch = torch.empty_like(pieces[0])  # one buffer for every piece's squares
    squares = torch.zeros_like(mean)
    for piece in pieces:
        deviations = torch.sub(piece, centre, out=scratch[: len(piece)])
        squares += deviations.square_().sum(dim=dims)
    return mean, squares / m


def _update_running_stats(
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    batch_mean: torch.Tensor,
    batch_var: torch.Tensor,
    m: int,
    momentum: float,
) -> None:
    """Exponential moving averages, in place; the variance is made unbiased first (m/(m-1)).

    ``running.lerp_(batch, momentum)`` is ``running + momentum * (batch - running)``, i.e.
    ``(1 - momentum) * running + momentum * batch`` in one operation. (No gradient flows:
    the batch statistics come without one.)
    """
    running_mean.lerp_(batch_mean, momentum)
    running_var.lerp_(batch_var * (m / (m - 1)), momentum)


def _affine(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``scale_c * x + shift_c`` per channel (``shift=None``: no shift), into ``out`` if given.

    For ``(N, C)`` input one ``torch.addcmul(shift, x, scale)``; for images a multiply, then
    an in-place add that finds the product still in cache. Measured on the CPU, ``addcmul``
    is the faster of the two when the per-channel numbers run along the contiguous last axis
    (the features of an ``(N, C)`` row) but about twice as slow when they are constant over
    each image (``(1, C, 1, 1)`` against 8x8 maps). Autograd can differentiate both forms
    (evaluation mode relies on it).
    """
    scale = _per_channel(scale, x)
    if shift is None:
        return torch.mul(x, scale, out=out)
    shift = _per_channel(shift, x)
    if x.dim() == 2:
        return torch.addcmul(shift, x, scale, out=out)
    if _in_one_piece(x) or _needs_grad(x, scale, shift):
        return torch.mul(x, scale, out=out).add_(shift)
    if out is None:
        out = torch.empty_like(x)
    for x_piece, out_piece in batch_pieces(x, out):  # a large CPU batch: each piece in cache
        torch.mul(x_piece, scale, out=out_piece).add_(shift)
    return out


def _input_gradient(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    inv_std: torch.Tensor,
    gamma: torch.Tensor | None,
    centred: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(grad_x, grad_gamma, grad_beta)`` from the input, its mean and ``1/sqrt(var + eps)``.

    ``centred``, when given, is ``x - mu`` as the forward pass computed it; ``x`` is then
    used only for its shape and device (the caller may pass ``x - mu`` for both). Without it
    ``x - mu`` is recomputed.

    With ``g = grad_out``, ``x_hat = (x - mu) * inv_std`` and ``scale = gamma * inv_std``::

        grad_beta  = sum(g)
        grad_gamma = sum(g * x_hat) = inv_std * sum(g * (x - mu))
        grad_x     = scale / m * (m * g - grad_beta - x_hat * grad_gamma)
                   = scale * g  -  scale / m * grad_beta
                     -  (scale / m * inv_std * grad_gamma) * (x - mu)

    The last line is two multiply-adds per value (``torch.addcmul``) with per-channel
    numbers (``constant = -scale / m * grad_beta`` and the ``centred_coefficient`` of
    ``x - mu``); ``x - mu`` serves both the sum and ``grad_x``, and ``grad_x`` is written
    into the buffer that held the products ``g * (x - mu)``.
    """
    if not _in_one_piece(x):
        return _input_gradient_in_pieces(grad_out, x, mean, inv_std, gamma)
    dims, m = _reduce_dims(x), _values_per_channel(x)
    if centred is None:
        centred = x - _per_channel(mean, x)
    grad_beta = grad_out.sum(dim=dims)
    products = grad_out * centred
    grad_gamma = products.sum(dim=dims) * inv_std
    scale = inv_std if gamma is None else gamma * inv_std
    scale_over_m = scale / m
    constant = _per_channel(-scale_over_m * grad_beta, x)
    centred_coefficient = _per_channel(scale_over_m * inv_std * grad_gamma, x)
    grad_x = torch.addcmul(constant, centred, centred_coefficient, value=-1, out=products)
    grad_x.addcmul_(grad_out, _per_channel(scale, x))
    return grad_x, grad_gamma, grad_beta


def _input_gradient_in_pieces(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    inv_std: torch.Tensor,
    gamma: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_input_gradient` for a large CPU batch, a few images at a time.

    One pass for the two sums and one for ``grad_x`` (neither ``x - mu`` nor ``x_hat`` is
    ever stored whole). The second pass folds ``mu`` into a per-channel constant::

        grad_x = scale * ((x - mu) * k + g) + shift,   k = -inv_std^2 * sum(g * (x - mu)) / m,
                                                       shift = -scale * grad_beta / m
               = (scale * k) * x + (shift - scale * k * mu) + scale * g
    """
    dims, m = _reduce_dims(x), _values_per_channel(x)
    pieces = batch_pieces(grad_out, x)
    scratch = torch.empty_like(pieces[0][1])  # one buffer for every piece's products
    grad_beta, dot = torch.zeros_like(mean), torch.zeros_like(mean)
    for g_piece, x_piece in pieces:  # pass 1: sum(g) and sum(g * (x - mu)) per channel
        grad_beta += g_piece.sum(dim=dims)
        product = torch.sub(x_piece, _per_channel(mean, x), out=scratch[: len(x_piece)])
        dot += product.mul_(g_piece).sum(dim=dims)
    grad_gamma = dot * inv_std
    scale = inv_std if gamma is None else gamma * inv_std
    k = -inv_std.square() * dot / m
    shift = -scale * grad_beta / m
    # pass 2: grad_x = scale*k * x + (shift - scale*k*mu) + scale * g
    x_coefficient = _per_channel(scale * k, x)
    constant = _per_channel(shift - scale * k * mean, x)
    scale = _per_channel(scale, x)
    grad_x = torch.empty_like(x)
    for g_piece, x_piece, piece in batch_pieces(grad_out, x, grad_x):
        torch.addcmul(constant, x_piece, x_coefficient, out=piece).addcmul_(g_piece, scale)
    return grad_x, grad_gamma, grad_beta


def _train_forward(
    x: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Training-mode forward pass: ``(y, mean, 1/sqrt(var + eps), x - mean or None)``.

    Three branches: the fused Triton kernel (CUDA), a batch processed whole (see
    :func:`_in_one_piece`), and a large CPU batch, a few images at a time. Only the middle one
    hands back ``x - mean`` for the backward pass, which then need not compute it again; after
    the other two the backward pass recomputes it from ``x``. All three then update the
    running statistics in place when they are given, as ``F.batch_norm`` does.
    """
    centred = None
    if use_triton(x):  # one fused kernel: statistics and normalization
        from course_lib.kernels import batch_norm_forward

        out, mean, var = batch_norm_forward(x, gamma, beta, eps)
        mean, var = mean.to(x.dtype), var.to(x.dtype)
        inv_std = torch.rsqrt(var + eps)
    elif _in_one_piece(x):
        out = torch.empty_like(x)  # holds the squares (x - mu)^2 first, then the output
        mean, var, centred = _centred_statistics(x, squares=out)
        inv_std = torch.rsqrt(var + eps)
        scale = inv_std if gamma is None else gamma * inv_std
        _affine(centred, scale, beta, out=out)  # y = scale * (x - mu) + beta
    else:
        mean, var = _statistics_in_pieces(x)
        inv_std = torch.rsqrt(var + eps)
        # y = scale * (x - mu) + beta = scale * x + (beta - scale * mu), as PyTorch computes it
        scale = inv_std if gamma is None else gamma * inv_std
        shift = -mean * scale if beta is None else beta - mean * scale
        out = _affine(x, scale, shift)
    if running_mean is not None:
        _update_running_stats(
            running_mean, running_var, mean, var, _values_per_channel(x), momentum
        )
    return out, mean, inv_std, centred


class _BatchNormTrainFunction(torch.autograd.Function):
    """Training-mode batch norm as one autograd node with one output.

    ``forward`` runs :func:`_train_forward` (which also updates the running statistics) and
    saves gamma, the batch mean, ``1/sqrt(var + eps)`` and either ``x - mean``, when
    :func:`_train_forward` kept the centred values (a batch processed whole), or the input
    ``x``, as ``F.batch_norm`` does: either way one tensor of x's size. ``backward``
    (:func:`_input_gradient`) reuses them instead of recomputing the statistics.
    ``@once_differentiable`` makes a second derivative an error: what ``forward`` saved (the
    mean, ``1/sqrt(var + eps)`` and ``x - mean``) was computed with autograd switched off and
    carries no graph, so differentiating ``backward`` would miss the paths through it.

    The running statistics are changed in place, but they are neither outputs nor tensors
    that require gradients (:func:`batch_norm` refuses those), so autograd needs no
    ``ctx.mark_dirty`` for them.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, momentum, eps):  # noqa: D102
        out, mean, inv_std, centred = _train_forward(
            x, gamma, beta, running_mean, running_var, momentum, eps
        )
        ctx.kept_centred = centred is not None
        ctx.save_for_backward(centred if ctx.kept_centred else x, mean, inv_std, gamma)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        saved, mean, inv_std, gamma = ctx.saved_tensors
        # x - mean has x's shape and device, so it can stand in for x here
        centred = saved if ctx.kept_centred else None
        grad_x, grad_gamma, grad_beta = _input_gradient(
            grad_out, saved, mean, inv_std, gamma, centred
        )
        needs_x, needs_gamma, needs_beta = ctx.needs_input_grad[:3]
        no_gradient_for_the_rest = (None,) * 4  # running_mean, running_var, momentum, eps
        return (
            grad_x if needs_x else None,
            grad_gamma if needs_gamma else None,
            grad_beta if needs_beta else None,
            *no_gradient_for_the_rest,
        )


def batch_norm(
    x: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Batch normalization ``y = gamma * (x - mu) / sqrt(var + eps) + beta``, per channel.

    Shapes: ``x: (N, C)`` or ``(N, C, H, W)``; ``gamma, beta, running_mean, running_var: (C,)``
    (for 2-D input ``C`` counts the features). Returns a tensor of x's shape.

    * ``training=True``: ``mu`` and ``var`` are the batch mean and the *biased* batch variance
      (see :func:`batch_statistics`). If running statistics are given they are updated **in
      place**: ``running = (1 - momentum) * running + momentum * batch_stat``, where the running
      variance receives the *unbiased* variance ``var * m / (m - 1)`` (``m`` values per
      channel), exactly as ``torch.nn.functional.batch_norm`` does.
    * ``training=False``: ``mu, var = running_mean, running_var`` (both required).

    ``gamma=None`` / ``beta=None`` mean 1 / 0 (``affine=False``). Both modes compute
    ``y = scale_c * (x - mu_c) + beta_c`` with ``scale = gamma / sqrt(var + eps)`` folded into one
    number per channel first (a single multiply-add per value; in eval mode, for a large CPU
    batch and in the Triton kernel ``mu_c`` moves into the shift as well). In training mode
    the backward pass is
    :func:`batch_norm_backward`'s formula, reusing the statistics saved by the forward pass
    (first derivatives only); in eval mode autograd differentiates the affine map.
    """
    x = _check_input(x)
    gamma = _check_per_channel(x, "gamma", gamma)
    beta = _check_per_channel(x, "beta", beta)
    running_mean = _check_per_channel(x, "running_mean", running_mean)
    running_var = _check_per_channel(x, "running_var", running_var)
    training = _check_bool(training, "training")
    momentum = _check_float(momentum, "momentum", 0.0, 1.0)
    eps = _check_eps(eps)
    if (running_mean is None) != (running_var is None):
        raise ValueError("give both running_mean and running_var, or neither")
    if _needs_grad(running_mean, running_var):
        raise ValueError(
            "running_mean and running_var must not require gradients: they are statistics "
            "(buffers), not learned parameters, and batch norm does not differentiate through "
            "them (F.batch_norm refuses them too). Pass tensors with requires_grad=False, "
            "or detach them."
        )

    if training:
        _check_enough_values(x)
        if _needs_grad(x, gamma, beta):
            return _BatchNormTrainFunction.apply(
                x, gamma, beta, running_mean, running_var, momentum, eps
            )
        # nothing to differentiate: no autograd node, nothing saved
        out, *_ = _train_forward(x, gamma, beta, running_mean, running_var, momentum, eps)
        return out
    if running_mean is None:
        raise ValueError(
            "evaluation mode (training=False) normalizes with running_mean and running_var; "
            "got None. Pass the running statistics or use training=True."
        )
    # y = scale * x + (beta - scale * running_mean): a fixed per-channel affine map
    inv_std = torch.rsqrt(running_var + eps)
    scale = inv_std if gamma is None else gamma * inv_std
    shift = -running_mean * scale if beta is None else beta - running_mean * scale
    if use_triton(x) and not _needs_grad(x, gamma, beta):
        from course_lib.kernels import batch_norm_eval

        return batch_norm_eval(x, scale, shift)
    return _affine(x, scale, shift)  # autograd differentiates the multiply-add when needed


def batch_norm_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    gamma: torch.Tensor | None,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training-mode backward pass of :func:`batch_norm`, by hand (no autograd).

    With ``x_hat = (x - mu) / sqrt(var + eps)`` and ``m`` values per channel, summing over
    every axis but the channel axis::

        grad_beta  = sum(grad_out)
        grad_gamma = sum(grad_out * x_hat)
        grad_x     = gamma / (m * sqrt(var + eps)) * (m * grad_out - grad_beta - x_hat * grad_gamma)

    The compact ``grad_x`` formula collects the three paths from ``x`` to the loss (directly,
    through ``mu`` and through ``var``) into one line. This function recomputes ``mu`` and
    ``var`` from ``x``; inside :func:`batch_norm` the same formula reuses what the forward
    pass saved.

    Shapes: ``grad_out, x: (N, C)`` or ``(N, C, H, W)``, ``gamma: (C,)`` (None means 1).
    Returns ``(grad_x, grad_gamma, grad_beta)`` with shapes ``x.shape, (C,), (C,)``.
    """
    x = _check_input(x)
    check_tensor(grad_out, "grad_out", x.dim(), layout=_LAYOUT)
    if grad_out.shape != x.shape:
        raise ValueError(
            f"grad_out must have the shape of x {tuple(x.shape)}; got {tuple(grad_out.shape)}"
        )
    check_same_device_dtype(x, "grad_out", grad_out)
    gamma = _check_per_channel(x, "gamma", gamma)
    eps = _check_eps(eps)
    _check_enough_values(x)
    mean, var = _statistics(x)
    return _input_gradient(grad_out, x, mean, torch.rsqrt(var + eps), gamma)


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
class _BatchNorm(nn.Module):
    """Shared code of BatchNorm1d / BatchNorm2d; subclasses set ``input_ndim`` and ``layout``.

    Parameters ``weight`` (gamma) and ``bias`` (beta), buffers ``running_mean``, ``running_var``
    and ``num_batches_tracked``: the names ``torch.nn.BatchNorm*`` uses, so state dicts load
    both ways.
    """

    input_ndim: int = 4
    layout: str = "(N, C, H, W)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int):
            raise TypeError(f"num_features must be an int; got {type(num_features).__name__}")
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1; got {num_features}")
        self.num_features = num_features
        self.eps = _check_eps(eps)
        # momentum=None selects the cumulative average: factor 1/t at the t-th training batch.
        self.momentum = None if momentum is None else _check_float(momentum, "momentum", 0.0, 1.0)
        self.affine = _check_bool(affine, "affine")
        self.track_running_stats = _check_bool(track_running_stats, "track_running_stats")

        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, batch counter 0."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0, and fresh running statistics."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _averaging_factor(self) -> float:
        """The momentum of this step; with momentum=None the cumulative average 1/t."""
        if self.momentum is not None:
            return self.momentum
        return 1.0 / float(self.num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", self.input_ndim, layout=self.layout)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects {self.num_features} channels "
                f"in x {self.layout}; got x.shape = {tuple(x.shape)}"
            )
        update_running = self.training and self.track_running_stats
        if update_running:
            self.num_batches_tracked.add_(1)
        # Without running statistics (track_running_stats=False, buffers None) the batch
        # statistics are used in evaluation mode too, as in PyTorch.
        return batch_norm(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            training=self.training or not self.track_running_stats,
            momentum=self._averaging_factor() if update_running else 0.0,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)``: statistics per channel over ``N*H*W`` values.

    ``y = weight * (x - mu) / sqrt(var + eps) + bias``; equal to ``torch.nn.BatchNorm2d`` in
    training and evaluation mode, including the running statistics (``momentum=None`` gives
    the cumulative average) and the state dict.
    """

    input_ndim = 4
    layout = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)``: statistics per feature over the ``N`` rows.

    Equal to ``torch.nn.BatchNorm1d`` on 2-D input (the ``(N, C, L)`` layout is not supported).
    """

    input_ndim = 2
    layout = "(N, C)"
