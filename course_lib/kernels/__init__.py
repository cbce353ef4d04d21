"""GPU kernels you can read: convolution, batch norm and Adam written in Triton.

On a CUDA GPU, ``course_lib`` uses these kernels by itself: :func:`course_lib.conv.conv2d`'s
forward pass, :func:`course_lib.norm.batch_norm` and :class:`course_lib.optim.Adam` /
``AdamW`` (``fused=None``) call them whenever their tensors live on a CUDA device and Triton
is installed (set ``COURSE_TRITON=0`` to switch them off and use the PyTorch-operation
versions). Without a GPU they run in Triton's interpreter (``TRITON_INTERPRET=1``), which
executes the same code with NumPy on the CPU: slowly, but exactly what the GPU would compute;
that is how the tests and the appendix notebook ``lectures/A1_gpu_convolution.ipynb`` use them.

How a Triton kernel works, in four lines: the GPU runs many copies of the kernel, the
*programs*, at once; ``tl.program_id(axis)`` says which one is running; each program works
on a *block* of numbers at a time (``tl.arange(0, BLOCK)`` is a vector of offsets, and
``tl.load`` / ``tl.store`` read and write whole blocks, with a ``mask`` for the ragged edge);
and ``tl.dot`` multiplies two blocks as matrices (on the GPU's matrix units for float16 and
bfloat16; for float32 these kernels ask for exact IEEE products, not the TF32 that PyTorch's
own convolutions use on such GPUs by default).

    conv2d_forward(x, weight, bias, stride, padding, dilation)   implicit-GEMM convolution
    batch_norm_forward(x, gamma, beta, eps)                        training mode: stats + normalize
    batch_norm_eval(x, scale, shift)                               y = scale_c * x + shift_c
    fused_adam_step(params, grads, states, group, decoupled)       Adam / AdamW in one kernel

Importing this package is free: Triton itself is imported by the submodules on first use.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import torch

__all__ = [
    "triton_available",
    "use_triton",
    "conv2d_forward",
    "batch_norm_forward",
    "batch_norm_eval",
    "fused_adam_step",
]

_LAZY = {
    "conv2d_forward": "conv",
    "batch_norm_forward": "batch_norm",
    "batch_norm_eval": "batch_norm",
    "fused_adam_step": "adam",
}


@functools.cache
def triton_available() -> bool:
    """True when a CUDA GPU is present and the ``triton`` package is installed."""
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether ``course_lib`` should run this tensor's operation with a Triton kernel.

    Yes for CUDA tensors of dtype float32, float16 or bfloat16 when Triton is available,
    unless the environment variable ``COURSE_TRITON`` is ``0``.
    """
    return (
        tensor.is_cuda
        and tensor.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and os.environ.get("COURSE_TRITON", "1") != "0"
        and triton_available()
    )


def __getattr__(name: str):
    # PEP 562: `from course_lib.kernels import conv2d_forward` imports triton only then.
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
