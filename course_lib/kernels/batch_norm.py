"""Batch normalization's forward pass as Triton kernels.

Training mode, :func:`batch_norm_forward`: one program per channel ``c`` does everything for
that channel in a single launch ("fused"): it walks over the channel's ``m = N*H*W`` values
three times, in blocks of ``BLOCK``: to sum them (the mean), to sum the squares of the
centred values (the biased variance), and to write ``y = scale_c * x + shift_c`` with
``scale_c = gamma_c / sqrt(var_c + eps)`` and ``shift_c = beta_c - mu_c * scale_c``. With
PyTorch operations the same work is several kernels, each reading the whole tensor from
memory. (A production kernel would also split each channel over many programs and combine
their partial sums, so that a layer with few channels still fills the GPU.)

Evaluation mode, :func:`batch_norm_eval`: one program per block of values; each value looks
up its channel's ``scale`` and ``shift`` and is written once.

Value ``k`` of channel ``c`` (``k = n*H*W + p`` for image ``n`` and pixel ``p``) sits at
``(n*C + c)*H*W + p`` in a contiguous ``(N, C, H, W)`` tensor; a ``(N, C)`` input is the case
``H*W = 1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def batch_norm_train_kernel(
    x_ptr,
    gamma_ptr,
    beta_ptr,
    out_ptr,
    mean_ptr,
    var_ptr,
    N,
    C,
    HW,
    eps,
    HAS_GAMMA: tl.constexpr,
    HAS_BETA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Statistics and normalization of channel ``c = program_id(0)``."""
    c = tl.program_id(0)
    m = N * HW
    # pass 1: the mean
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, m, BLOCK):
        k = start + tl.arange(0, BLOCK)
        offsets = ((k // HW) * C + c) * HW + k % HW
        total += tl.load(x_ptr + offsets, mask=k < m, other=0.0).to(tl.float32)
    mean = tl.sum(total, axis=0) / m
    # pass 2: the biased variance, from the centred values (no cancellation)
    squares = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, m, BLOCK):
        k = start + tl.arange(0, BLOCK)
        offsets = ((k // HW) * C + c) * HW + k % HW
        x = tl.load(x_ptr + offsets, mask=k < m, other=0.0).to(tl.float32)
        centred = tl.where(k < m, x - mean, 0.0)
        squares += centred * centred
    var = tl.sum(squares, axis=0) / m
    # pass 3: y = scale * x + shift
    scale = 1.0 / tl.sqrt(var + eps)
    if HAS_GAMMA:
        scale = scale * tl.load(gamma_ptr + c).to(tl.float32)
    shift = -mean * scale
    if HAS_BETA:
        shift = shift + tl.load(beta_ptr + c).to(tl.float32)
    for start in range(0, m, BLOCK):
        k = start + tl.arange(0, BLOCK)
        offsets = ((k // HW) * C + c) * HW + k % HW
        x = tl.load(x_ptr + offsets, mask=k < m, other=0.0).to(tl.float32)
        y = x * scale + shift
        tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=k < m)
    tl.store(mean_ptr + c, mean)
    tl.store(var_ptr + c, var)


@triton.jit
def batch_norm_eval_kernel(x_ptr, scale_ptr, shift_ptr, out_ptr, total, C, HW, BLOCK: tl.constexpr):
    """``out = scale[c] * x + shift[c]`` for one block of values."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < total
    c = (offsets // HW) % C
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    scale = tl.load(scale_ptr + c, mask=mask, other=0.0).to(tl.float32)
    shift = tl.load(shift_ptr + c, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, (x * scale + shift).to(out_ptr.dtype.element_ty), mask=mask)


def batch_norm_forward(
    x: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-mode batch norm: ``(y, mean, biased var)`` from :func:`batch_norm_train_kernel`.

    Shapes: ``x: (N, C)`` or ``(N, C, H, W)``, ``gamma, beta: (C,)`` or None ->
    ``y`` like ``x``, ``mean, var: (C,)`` in float32.
    """
    x = x.contiguous()
    n, channels = x.shape[:2]
    hw = x[0, 0].numel()
    out = torch.empty_like(x)
    mean = torch.empty(channels, device=x.device, dtype=torch.float32)
    var = torch.empty_like(mean)
    # the kernel reads gamma[c] at gamma_ptr + c: a strided view (e.g. w[::2]) must be copied
    batch_norm_train_kernel[(channels,)](
        x,
        gamma.contiguous() if gamma is not None else x,  # any pointer when unused
        beta.contiguous() if beta is not None else x,
        out,
        mean,
        var,
        n,
        channels,
        hw,
        eps,
        HAS_GAMMA=gamma is not None,
        HAS_BETA=beta is not None,
        BLOCK=BLOCK,
    )
    return out, mean, var


def batch_norm_eval(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``y = scale_c * x + shift_c`` with :func:`batch_norm_eval_kernel`; ``scale, shift: (C,)``."""
    x = x.contiguous()
    out = torch.empty_like(x)
    total = x.numel()
    channels, hw = x.shape[1], x[0, 0].numel()
    grid = (triton.cdiv(total, BLOCK),)
    scale, shift = scale.contiguous(), shift.contiguous()  # read at scale_ptr + c
    batch_norm_eval_kernel[grid](x, scale, shift, out, total, channels, hw, BLOCK=BLOCK)
    return out
