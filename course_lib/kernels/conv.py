"""A convolution forward pass as one Triton kernel: implicit GEMM.

:func:`course_lib.conv.conv2d` computes ``out = w_mat @ columns``, building the column
matrix (im2col) in memory first. A GPU kernel can skip that copy: it computes the same matrix
product *tile by tile*, and reads the column entries it needs straight from the input image,
working out for every entry which pixel it is. That is an "implicit GEMM" (general matrix
multiply): the column matrix is never stored, only its address arithmetic is.

The output seen as a matrix: one row per output pixel ``m = (n, i, j)`` (``N*H_out*W_out``
rows), one column per output channel ``o`` (``C_out``), and

    out[m, o] = b[o] + sum_r  cols[m, r] * w[o, r],    r = (c, u, v) over C_in*K_h*K_w,
    cols[m, r] = x[n, c, i*S_h - P_h + u*D_h, j*S_w - P_w + v*D_w]   (0 outside the image).

Each program computes one ``BLOCK_M x BLOCK_N`` tile of ``out``: it walks along ``r`` in steps
of ``BLOCK_K``, loads a ``BLOCK_M x BLOCK_K`` tile of ``cols`` (gathered from ``x``, with a
mask for the padding) and a ``BLOCK_K x BLOCK_N`` tile of the weights, and multiplies them with
``tl.dot`` into an accumulator that stays in the program's registers. The grid has
``ceil(M / BLOCK_M) x ceil(C_out / BLOCK_N)`` programs, all running at once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_M, BLOCK_N, BLOCK_K = 64, 32, 32


@triton.jit
def conv2d_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    N,
    C_in,
    H,
    W,
    C_out,
    H_out,
    W_out,
    stride_h,
    stride_w,
    pad_h,
    pad_w,
    dil_h,
    dil_w,
    K_H: tl.constexpr,
    K_W: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """One ``BLOCK_M x BLOCK_N`` tile of the output matrix ``out[(n, i, j), o]``."""
    M = N * H_out * W_out  # rows of the output matrix
    R = C_in * K_H * K_W  # length of every dot product
    # This program's rows (output pixels) and columns (output channels).
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    o = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n = m // (H_out * W_out)
    i = (m // W_out) % H_out
    j = m % W_out

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r_start in range(0, R, BLOCK_K):
        r = r_start + tl.arange(0, BLOCK_K)  # reduction indices r = (c, u, v)
        c = r // (K_H * K_W)
        u = (r // K_W) % K_H
        v = r % K_W
        # The implicit im2col: the pixel every (output pixel, r) pair reads, BLOCK_M x BLOCK_K.
        row = i[:, None] * stride_h - pad_h + u[None, :] * dil_h
        col = j[:, None] * stride_w - pad_w + v[None, :] * dil_w
        inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)
        inside = inside & (m[:, None] < M) & (r[None, :] < R)
        x_offsets = ((n[:, None] * C_in + c[None, :]) * H + row) * W + col
        x_tile = tl.load(x_ptr + x_offsets, mask=inside, other=0.0)
        # weight[o, c, u, v] is w_mat[o, r] at o * R + r: a BLOCK_K x BLOCK_N tile.
        w_mask = (r[:, None] < R) & (o[None, :] < C_out)
        w_tile = tl.load(w_ptr + o[None, :] * R + r[:, None], mask=w_mask, other=0.0)
        if IEEE_FP32:  # full float32 products, not the GPU's default TF32 shortcut
            acc += tl.dot(x_tile, w_tile, input_precision="ieee")
        else:
            acc += tl.dot(x_tile, w_tile)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=o < C_out, other=0.0).to(tl.float32)[None, :]
    # out[n, o, i, j] in the (N, C_out, H_out, W_out) layout
    out_offsets = ((n[:, None] * C_out + o[None, :]) * H_out + i[:, None]) * W_out + j[:, None]
    out_mask = (m[:, None] < M) & (o[None, :] < C_out)
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


def conv2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation)`` with :func:`conv2d_kernel`.

    Shapes: ``x: (N, C_in, H, W)``, ``weight: (C_out, C_in, K_h, K_w)``, ``bias: (C_out,)`` or
    None; stride, padding and dilation are pairs. Returns ``(N, C_out, H_out, W_out)`` in x's
    dtype (accumulated in float32). The arguments are assumed valid (``conv2d`` checks them).
    """
    x, weight = x.contiguous(), weight.contiguous()
    n, c_in, h, w = x.shape
    c_out, _, k_h, k_w = weight.shape
    h_out = (h + 2 * padding[0] - dilation[0] * (k_h - 1) - 1) // stride[0] + 1
    w_out = (w + 2 * padding[1] - dilation[1] * (k_w - 1) - 1) // stride[1] + 1
    out = x.new_empty(n, c_out, h_out, w_out)
    grid = (triton.cdiv(n * h_out * w_out, BLOCK_M), triton.cdiv(c_out, BLOCK_N))
    conv2d_kernel[grid](
        x,
        weight,
        bias if bias is not None else weight,  # any pointer; unused without a bias
        out,
        n,
        c_in,
        h,
        w,
        c_out,
        h_out,
        w_out,
        *stride,
        *padding,
        *dilation,
        K_H=k_h,
        K_W=k_w,
        HAS_BIAS=bias is not None,
        IEEE_FP32=x.dtype == torch.float32,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
    )
    return out
