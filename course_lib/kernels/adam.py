"""Adam and AdamW's update as one Triton kernel per parameter ("fused").

Written with PyTorch operations (:meth:`course_lib.optim.Adam._update`), one Adam step reads
and writes the parameter, its gradient and both moments several times over, one operation
(one GPU kernel) after the other. Here every program loads a block of each of the four
tensors once, does the whole update in registers and writes the parameter and the two
moments back once: for ``theta``, ``g``, ``m``, ``v`` and ``t`` the step number::

    g      <- g + lambda * theta             (Adam: L2 through the gradient), or
    theta  <- (1 - lr * lambda) * theta      (AdamW: decoupled decay)
    m      <- m + (1 - beta1) * (g - m)      (= beta1 * m + (1 - beta1) * g)
    v      <- beta2 * v + (1 - beta2) * g^2
    theta  <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The arithmetic is done in float32, like ``torch.optim.Adam(fused=True)``: the result equals the
other paths to rounding error, not bit for bit. (``torch.optim``'s fused kernels also handle
all parameters in one launch; here it is one launch per parameter, which keeps the kernel
short.)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def adam_kernel(
    param_ptr,
    grad_ptr,
    exp_avg_ptr,
    exp_avg_sq_ptr,
    numel,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    bias_correction1,
    bias_correction2_sqrt,
    HAS_WEIGHT_DECAY: tl.constexpr,
    DECOUPLED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The whole Adam (``DECOUPLED=False``) or AdamW update of one block of values."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    theta = tl.load(param_ptr + offsets, mask=mask).to(tl.float32)
    g = tl.load(grad_ptr + offsets, mask=mask).to(tl.float32)
    m = tl.load(exp_avg_ptr + offsets, mask=mask).to(tl.float32)
    v = tl.load(exp_avg_sq_ptr + offsets, mask=mask).to(tl.float32)
    if HAS_WEIGHT_DECAY:
        if DECOUPLED:
            theta = theta * (1.0 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
    m = m + (1.0 - beta1) * (g - m)
    v = beta2 * v + (1.0 - beta2) * g * g
    denom = tl.sqrt(v) / bias_correction2_sqrt + eps
    theta = theta - (lr / bias_correction1) * m / denom
    tl.store(param_ptr + offsets, theta.to(param_ptr.dtype.element_ty), mask=mask)
    tl.store(exp_avg_ptr + offsets, m.to(exp_avg_ptr.dtype.element_ty), mask=mask)
    tl.store(exp_avg_sq_ptr + offsets, v.to(exp_avg_sq_ptr.dtype.element_ty), mask=mask)


def fused_adam_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[dict],
    group: dict,
    decoupled_weight_decay: bool,
) -> None:
    """One Adam / AdamW step for every parameter of ``params``, in place.

    ``states[i]`` holds ``exp_avg``, ``exp_avg_sq`` and the step number ``step`` *after*
    this step (the caller increments it); ``group`` the hyperparameters ``lr``, ``betas``,
    ``eps``, ``weight_decay`` and ``bias_correction``. The kernel walks over memory in order,
    so each parameter and its moments must be contiguous (``Adam`` checks).
    """
    beta1, beta2 = group["betas"]
    for param, grad, state in zip(params, grads, states, strict=True):
        if group["bias_correction"]:
            bias_correction1 = 1 - beta1 ** state["step"]
            bias_correction2 = 1 - beta2 ** state["step"]
        else:
            bias_correction1 = bias_correction2 = 1.0
        numel = param.numel()
        adam_kernel[(triton.cdiv(numel, BLOCK),)](
            param,
            grad.contiguous(),
            state["exp_avg"],
            state["exp_avg_sq"],
            numel,
            group["lr"],
            beta1,
            beta2,
            group["eps"],
            group["weight_decay"],
            bias_correction1,
            bias_correction2**0.5,
            HAS_WEIGHT_DECAY=group["weight_decay"] != 0,
            DECOUPLED=decoupled_weight_decay,
            BLOCK=BLOCK,
        )
