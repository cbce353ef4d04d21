"""Input checks shared by every module: each error says what was wrong and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch

_LAYOUTS = {1: "(L,)", 2: "(N, C)", 3: "(C, H, W)", 4: "(N, C, H, W)"}


def check_tensor(
    x: object,
    name: str,
    ndim: int | Sequence[int],
    layout: str | None = None,
    floating: bool = True,
) -> torch.Tensor:
    """Return ``x`` unchanged if it is a tensor of an allowed rank (and floating dtype).

    Raises ``TypeError`` for a non-tensor or a non-floating dtype and ``ValueError`` for a
    wrong rank, naming the expected layout, e.g. "x must be a 4-D tensor (N, C, H, W)".
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if layout is None:
        layout = " or ".join(_LAYOUTS.get(d, f"{d}-D") for d in allowed)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}; got {type(x).__name__}")
    if x.dim() not in allowed:
        ranks = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(
            f"{name} must be a {ranks} tensor {layout}; got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if floating and not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating dtype (float32 or float64); got {x.dtype}. "
            f"Convert with {name}.float()."
        )
    return x


def check_same_device_dtype(reference: torch.Tensor, name: str, other: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``other`` lives on another device or has another dtype."""
    if other.device != reference.device:
        raise ValueError(f"{name} is on {other.device} but the input is on {reference.device}")
    if other.dtype != reference.dtype:
        raise TypeError(f"{name} has dtype {other.dtype} but the input has dtype {reference.dtype}")


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; raise TypeError / ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def pair(value: int | Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    """Turn ``k`` or ``(kh, kw)`` into ``(kh, kw)``, checking each entry is an int >= minimum."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w); got {value!r}")
        return (check_int(value[0], name, minimum), check_int(value[1], name, minimum))
    single = check_int(value, name, minimum)
    return (single, single)
