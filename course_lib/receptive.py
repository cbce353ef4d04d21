"""Receptive fields: computed layer by layer, and measured from gradients (lecture 07).

The *receptive field* of a unit is the set of input pixels that can change its value. Along
one axis, a chain of layers with kernel K_l, stride S_l, dilation D_l and padding P_l gives
(Araujo, Norris and Sim, "Computing receptive fields of convolutional neural networks",
Distill 2019)

    effective kernel   k_l = D_l (K_l - 1) + 1
    jump               j_l = j_{l-1} S_l                   (j_0 = 1: input pixels between
                                                             neighbouring units of layer l)
    size               r_l = r_{l-1} + (k_l - 1) j_{l-1}    (r_0 = 1)
    centre of unit 0   c_l = c_{l-1} + ((k_l - 1) / 2 - P_l) j_{l-1}   (c_0 = 0)

so unit ``i`` of layer ``l`` is centred on input pixel ``c_l + i j_l`` and sees ``r_l`` pixels.

    layer by layer          ReceptiveField, receptive_fields, layer_geometries
    measured by gradients   input_gradient, gradient_support, positive_linear_copy
    effective field         effective_receptive_field, gradient_spread

Only chains of layers are covered (``nn.Sequential``): branches and skip connections are not
followed. Square kernels: the functions use the height axis of a layer's kernel, stride,
dilation and padding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from course_lib._validate import check_int, check_tensor

__all__ = [
    "ReceptiveField",
    "effective_receptive_field",
    "gradient_spread",
    "gradient_support",
    "input_gradient",
    "layer_geometries",
    "positive_linear_copy",
    "receptive_fields",
]


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of one layer's units in input pixels (along one axis).

    ``size``: pixels one unit sees (r_l); ``jump``: input pixels between neighbouring units
    (j_l, the product of the strides so far); ``start``: centre of unit 0's field in input
    coordinates (c_l; negative when padding puts it left of pixel 0).
    """

    size: int
    jump: int
    start: float


def _check_layer(layer: object, index: int) -> tuple[int, int, int, int]:
    """``(K, S, D)`` or ``(K, S, D, P)`` -> ``(K, S, D, P)``, each an int (P >= 0, others >= 1)."""
    if not isinstance(layer, (tuple, list)) or len(layer) not in (3, 4):
        raise ValueError(
            f"layer {index} must be a tuple (kernel, stride, dilation) or "
            f"(kernel, stride, dilation, padding); got {layer!r}"
        )
    kernel = check_int(layer[0], f"layer {index} kernel", 1)
    stride = check_int(layer[1], f"layer {index} stride", 1)
    dilation = check_int(layer[2], f"layer {index} dilation", 1)
    padding = check_int(layer[3], f"layer {index} padding", 0) if len(layer) == 4 else 0
    return kernel, stride, dilation, padding


def receptive_fields(layers: Sequence[Sequence[int]]) -> list[ReceptiveField]:
    """Receptive field after each layer of a chain, from the recurrence in the module docstring.

    ``layers``: one ``(K, S, D)`` or ``(K, S, D, P)`` tuple per layer, input side first
    (pooling layers count like convolutions: a 2x2 max pool is ``(2, 2, 1)``). Padding only
    moves the centre (``start``), never the size. Returns one :class:`ReceptiveField` per layer.

    Three 3x3 convolutions: sizes 3, 5, 7 (r grows by K - 1 = 2 per layer). With dilations
    1, 2, 4: sizes 3, 7, 15 (r grows by D (K - 1)). A 2x2 stride-2 pool doubles the jump, so
    every later layer grows the field twice as fast.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(
            f"layers must be a list of (kernel, stride, dilation) tuples; got {layers!r}"
        )
    size, jump, start = 1, 1, 0.0
    fields = []
    for index, layer in enumerate(layers):
        kernel, stride, dilation, padding = _check_layer(layer, index)
        effective_kernel = dilation * (kernel - 1) + 1
        size = size + (effective_kernel - 1) * jump
        start = start + ((effective_kernel - 1) / 2 - padding) * jump
        jump = jump * stride
        fields.append(ReceptiveField(size=size, jump=jump, start=start))
    return fields


def _first(value: int | Sequence[int]) -> int:
    """The height entry of an int-or-pair layer attribute (``3`` or ``(3, 3)`` -> 3)."""
    return value if isinstance(value, int) else int(value[0])


def layer_geometries(model: nn.Module) -> list[tuple[str, tuple[int, int, int, int]]]:
    """``[(name, (K, S, D, P)), ...]`` for each conv and pooling layer of ``model``.

    In registration order, which is the forward order for an ``nn.Sequential``. Other layers
    (ReLU, batch norm, dropout) do not change the geometry and are skipped. Pass the result's
    tuples to :func:`receptive_fields`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    geometries = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            dilation = _first(module.dilation)
        elif isinstance(module, nn.MaxPool2d):
            dilation = _first(module.dilation)
        elif isinstance(module, nn.AvgPool2d):
            dilation = 1
        else:
            continue
        if isinstance(module.padding, str):
            raise ValueError(f"layer {name!r} has padding={module.padding!r}; give it as an int")
        stride = _first(module.stride) if module.stride is not None else _first(module.kernel_size)
        geometries.append(
            (name, (_first(module.kernel_size), stride, dilation, _first(module.padding)))
        )
    return geometries


# ----------------------------------------------------------------------------------------------
# measuring the receptive field with gradients
# ----------------------------------------------------------------------------------------------


def input_gradient(
    model: nn.Module, x: torch.Tensor, position: tuple[int, int] | None = None
) -> torch.Tensor:
    """``|d y[n, :, i, j].sum() / d x[n]|`` summed over input channels: ``(N, H, W)``.

    ``x``: ``(N, C, H, W)``; ``y = model(x)`` is ``(N, C_out, H_out, W_out)``; ``position``
    ``(i, j)`` picks the output unit (default: the centre ``(H_out // 2, W_out // 2)``). Each
    image's map is the gradient of *its own* unit (images do not interact unless the model mixes
    the batch, e.g. batch norm in training mode: use ``model.eval()``). An input pixel outside
    the unit's receptive field gets exactly 0. The model's parameters get no ``.grad``.
    """
    check_tensor(x, "x", 4)
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    if y.dim() != 4:
        raise ValueError(f"model must output (N, C, H, W) feature maps; got shape {tuple(y.shape)}")
    if position is None:
        position = (y.shape[2] // 2, y.shape[3] // 2)
    i, j = position
    if not (0 <= i < y.shape[2] and 0 <= j < y.shape[3]):
        raise ValueError(f"position {position} is outside the {y.shape[2]}x{y.shape[3]} output")
    (grad,) = torch.autograd.grad(y[:, :, i, j].sum(), x)
    return grad.abs().sum(dim=1)


def gradient_support(grad_map: torch.Tensor) -> tuple[int, int]:
    """Height and width of the bounding box of the non-zero entries of an ``(H, W)`` map.

    For :func:`input_gradient` of a :func:`positive_linear_copy` this is the receptive field
    (clipped by the image border). ``(0, 0)`` for an all-zero map.
    """
    check_tensor(grad_map, "grad_map", 2, "(H, W)")
    rows = torch.nonzero(grad_map.abs().sum(dim=1)).flatten()
    cols = torch.nonzero(grad_map.abs().sum(dim=0)).flatten()
    if rows.numel() == 0:
        return (0, 0)
    return (int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)


def positive_linear_copy(model: nn.Module) -> nn.Module:
    """A copy of a conv / pool chain in which no gradient can cancel or vanish.

    Why: a trained or random network can have gradient exactly 0 inside the receptive field
    (a ReLU that is off, max pooling that routes the gradient to one pixel per window, weights
    that cancel). In the copy every conv weight is ``1 / (C_in K_h K_w)`` and every bias 0,
    max pools become average pools with the same geometry, and every other layer (ReLU,
    batch norm, dropout) becomes ``nn.Identity``. The copy is linear with positive weights, so
    the gradient of a unit is positive on its whole receptive field and 0 outside it.
    ``model`` itself is unchanged.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    clone = copy.deepcopy(model)
    _make_positive_linear(clone)
    return clone


def _make_positive_linear(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            with torch.no_grad():
                child.weight.fill_(1.0 / child.weight[0].numel())
                if child.bias is not None:
                    child.bias.zero_()
        elif isinstance(child, nn.MaxPool2d):
            if _first(child.dilation) != 1:
                raise ValueError(f"max pool {name!r} is dilated; average pooling cannot copy it")
            replacement = nn.AvgPool2d(
                child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
            )
            setattr(module, name, replacement)
        elif isinstance(child, nn.AvgPool2d):
            continue
        elif len(list(child.children())) > 0:
            _make_positive_linear(child)
        else:
            setattr(module, name, nn.Identity())


# ----------------------------------------------------------------------------------------------
# the effective receptive field
# ----------------------------------------------------------------------------------------------


def effective_receptive_field(
    model: nn.Module, x: torch.Tensor, position: tuple[int, int] | None = None
) -> torch.Tensor:
    """Mean of :func:`input_gradient` over the batch ``x``, scaled to sum to 1: ``(H, W)``.

    Luo et al. (2016), "Understanding the effective receptive field in deep convolutional
    neural networks": how much each input pixel moves the centre unit *on average*. It is
    concentrated in the middle of the theoretical receptive field, roughly Gaussian.
    """
    maps = input_gradient(model, x, position)
    mean_map = maps.mean(dim=0)
    total = mean_map.sum()
    if total == 0:
        raise ValueError("the gradient is zero everywhere: no input pixel reaches this unit")
    return mean_map / total


def gradient_spread(weights: torch.Tensor) -> tuple[float, float]:
    """Standard deviations ``(sigma_rows, sigma_cols)`` of a non-negative ``(H, W)`` map.

    The map is read as a distribution over pixel positions: with ``p = map / map.sum()``,
    ``sigma_rows^2 = sum_{i,j} p_ij (i - mean_i)^2`` (likewise for columns). A stack of ``n``
    3x3 average filters spreads the gradient like a sum of ``n`` uniform steps in {-1, 0, 1}:
    ``sigma = sqrt(2 n / 3)``, while the receptive field is ``2 n + 1`` wide.
    """
    check_tensor(weights, "weights", 2, "(H, W)")
    if (weights < 0).any():
        raise ValueError("weights must be non-negative (take .abs() of a gradient map first)")
    total = weights.sum()
    if total == 0:
        raise ValueError("weights are all zero: there is no distribution to measure")
    p = weights.double() / total
    rows = torch.arange(p.shape[0], dtype=p.dtype, device=p.device)
    cols = torch.arange(p.shape[1], dtype=p.dtype, device=p.device)
    p_rows, p_cols = p.sum(dim=1), p.sum(dim=0)
    mean_row, mean_col = (p_rows * rows).sum(), (p_cols * cols).sum()
    var_row = (p_rows * (rows - mean_row) ** 2).sum()
    var_col = (p_cols * (cols - mean_col) ** 2).sum()
    return (var_row.sqrt().item(), var_col.sqrt().item())
