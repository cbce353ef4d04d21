"""Working through a batch a few images at a time, so that temporaries stay small.

An operation that makes temporaries as large as its input (a padded copy, a centred copy, a
product about to be summed) pays twice on large batches: every temporary travels through
main memory, and every fresh allocation of more than a few MiB is new memory the operating
system must hand over page by page (a page fault per 4 KiB). Done a few images at a time,
the same temporaries stay in the CPU's cache and in memory the allocator reuses. The
arithmetic is exactly the same; only the order of the work changes.

On a GPU the opposite holds: PyTorch's CUDA allocator keeps freed memory for reuse (no page
faults) and every operation is a kernel launch that wants as much work as possible, so tensors
on an accelerator are processed whole.
"""

from __future__ import annotations

import torch

# Bytes of input handled at once: a few MiB fit the CPU's caches.
CHUNK_BYTES = 2 * 2**20


def batch_chunks(x: torch.Tensor, chunk_bytes: int | None = None) -> list[slice]:
    """Slices along the first axis, each covering at most ``chunk_bytes`` (default
    ``CHUNK_BYTES``) of ``x``, or one item; a single slice for tensors on an accelerator.

    ``[x[s] for s in batch_chunks(x)]`` are consecutive pieces of ``x`` that together cover it.
    """
    if x.device.type != "cpu":
        return [slice(None)]
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    per_item = max(x[0].numel() * x.element_size(), 1) if x.shape[0] else 1
    step = max(1, chunk_bytes // per_item)
    return [slice(start, start + step) for start in range(0, x.shape[0], step)]


def batch_pieces(*tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The same chunks of several tensors that share their first axis, as views.

    ``for x_piece, out_piece in batch_pieces(x, out): ...`` walks through both together; a
    tensor small enough for one chunk comes back whole (no slicing at all).
    """
    chunks = batch_chunks(tensors[0])
    if len(chunks) == 1:
        return [tensors]
    return [tuple(tensor[chunk] for tensor in tensors) for chunk in chunks]
