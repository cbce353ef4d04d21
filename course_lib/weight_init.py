"""Weight initialisation: the variance argument behind Xavier/Glorot and He (lecture 07).

A conv or linear layer computes ``z = sum_{i=1}^{n_in} w_i a_i`` with ``n_in = C_in K_h K_w``
(the *fan-in*). With weights drawn independently, mean 0 and variance ``sigma^2``, independent
of the inputs ``a``:

    forward    Var(z_l)      = n_in  sigma^2 E[a_{l-1}^2]
    backward   Var(dL/da_{l-1}) = n_out sigma^2 Var(dL/dz_l)      (n_out = C_out K_h K_w)

For ReLU, ``E[a^2] = Var(z) / 2`` (half the symmetric z is cut off), so keeping ``Var(z)``
the same in every layer needs ``sigma^2 = 2 / n_in`` (**He**, Kaiming He et al., 2015). For a
linear or tanh unit near 0, ``E[a^2] ~ Var(z)``: ``sigma^2 = 1 / n_in`` keeps the forward
signal and ``1 / n_out`` the backward one; **Xavier/Glorot** (2010) takes the compromise
``sigma^2 = 2 / (n_in + n_out)``. A uniform ``U(-a, a)`` has variance ``a^2 / 3``, so the
uniform versions use ``a = sqrt(3) sigma``.

    fans and gains      fan_in_and_fan_out, gain
    standard deviations xavier_std, he_std
    initialisers        xavier_normal_, xavier_uniform_, he_normal_, he_uniform_, init_model_
    measuring           plain_conv_net, layer_statistics

The initialisers draw from the same random stream in the same order as ``torch.nn.init``'s
``xavier_normal_``, ``xavier_uniform_``, ``kaiming_normal_`` and ``kaiming_uniform_``: with
the same seed they give identical tensors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_lib._validate import check_int

__all__ = [
    "INIT_SCHEMES",
    "fan_in_and_fan_out",
    "gain",
    "he_normal_",
    "he_std",
    "he_uniform_",
    "init_model_",
    "layer_statistics",
    "plain_conv_net",
    "xavier_normal_",
    "xavier_std",
    "xavier_uniform_",
]


def fan_in_and_fan_out(weight: torch.Tensor) -> tuple[int, int]:
    """``(n_in, n_out) = (C_in K_h K_w, C_out K_h K_w)`` for a weight ``(C_out, C_in, K_h, K_w)``.

    A linear weight ``(out_features, in_features)`` gives ``(in_features, out_features)``. As in
    ``torch.nn.init``, a grouped convolution's weight ``(C_out, C_in / groups, K_h, K_w)`` counts
    ``C_in / groups`` inputs per output.
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor; got {type(weight).__name__}")
    if weight.dim() < 2:
        raise ValueError(
            "weight must have at least 2 dimensions (out, in, *kernel); "
            f"got shape {tuple(weight.shape)}"
        )
    kernel_volume = weight[0, 0].numel()
    return weight.shape[1] * kernel_volume, weight.shape[0] * kernel_volume


_GAINS = {
    "linear": 1.0,
    "conv2d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
}


def gain(nonlinearity: str) -> float:
    """Factor by which the activation's variance loss is undone: ``sigma = gain / sqrt(fan)``.

    ``relu``: ``sqrt(2)`` (ReLU keeps half the second moment); ``linear``/``conv2d``/``sigmoid``:
    1; ``tanh``: 5/3 (an empirical value from ``torch.nn.init.calculate_gain``: tanh shrinks
    its input's variance).
    """
    if nonlinearity not in _GAINS:
        raise ValueError(f"nonlinearity must be one of {sorted(_GAINS)}; got {nonlinearity!r}")
    return _GAINS[nonlinearity]


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Glorot's ``sigma = gain * sqrt(2 / (n_in + n_out))``."""
    check_int(fan_in, "fan_in", 1)
    check_int(fan_out, "fan_out", 1)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def he_std(fan: int, gain: float = math.sqrt(2.0)) -> float:
    """He's ``sigma = gain / sqrt(fan)``: ``sqrt(2 / n_in)`` for ReLU with ``fan = n_in``."""
    check_int(fan, "fan", 1)
    return gain / math.sqrt(fan)


def _fan(weight: torch.Tensor, mode: str) -> int:
    fan_in, fan_out = fan_in_and_fan_out(weight)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(
            f"mode must be 'fan_in' (keep the forward signal) or 'fan_out'; got {mode!r}"
        )
    return fan_in if mode == "fan_in" else fan_out


@torch.no_grad()
def xavier_normal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``weight`` in place from ``N(0, sigma^2)``, ``sigma = gain sqrt(2/(n_in + n_out))``."""
    std = xavier_std(*fan_in_and_fan_out(weight), gain=gain)
    return weight.normal_(0.0, std)


@torch.no_grad()
def xavier_uniform_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``weight`` in place from ``U(-a, a)``, ``a = sqrt(3) sigma`` (the normal's variance)."""
    bound = math.sqrt(3.0) * xavier_std(*fan_in_and_fan_out(weight), gain=gain)
    return weight.uniform_(-bound, bound)


@torch.no_grad()
def he_normal_(
    weight: torch.Tensor, mode: str = "fan_in", nonlinearity: str = "relu"
) -> torch.Tensor:
    """Fill ``weight`` in place from ``N(0, sigma^2)``, ``sigma = gain / sqrt(fan)``.

    ``mode="fan_in"`` keeps the forward activations' variance, ``"fan_out"`` the gradients'.
    Equals ``torch.nn.init.kaiming_normal_(weight, mode=mode, nonlinearity=nonlinearity)``.
    """
    std = he_std(_fan(weight, mode), gain(nonlinearity))
    return weight.normal_(0.0, std)


@torch.no_grad()
def he_uniform_(
    weight: torch.Tensor, mode: str = "fan_in", nonlinearity: str = "relu"
) -> torch.Tensor:
    """Fill ``weight`` in place from ``U(-a, a)``, ``a = sqrt(3) gain / sqrt(fan)``."""
    bound = math.sqrt(3.0) * he_std(_fan(weight, mode), gain(nonlinearity))
    return weight.uniform_(-bound, bound)


INIT_SCHEMES = ("default", "normal 0.01", "xavier", "he")


@torch.no_grad()
def init_model_(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise every ``Conv2d`` / ``Linear`` of ``model`` in place; returns ``model``.

    ``scheme``: ``"default"`` (PyTorch's own ``reset_parameters()``: ``U(-a, a)`` with
    ``a = 1 / sqrt(n_in)``, i.e. ``sigma^2 = 1 / (3 n_in)``), ``"normal 0.01"`` (``N(0, 0.01^2)``,
    the "small random numbers" recipe), ``"xavier"`` (Glorot and Bengio's ``N(0, 2 / (n_in +
    n_out))``, gain 1) or ``"he"`` (``N(0, 2 / n_in)``, made for ReLU). Biases are set to 0
    except in ``"default"``, which keeps PyTorch's bias initialisation.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme must be one of {INIT_SCHEMES}; got {scheme!r}")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to initialise")
    for layer in layers:
        if scheme == "default":
            layer.reset_parameters()
            continue
        if scheme == "normal 0.01":
            layer.weight.normal_(0.0, 0.01)
        elif scheme == "xavier":
            xavier_normal_(layer.weight)
        else:
            he_normal_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()
    return model


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}


def plain_conv_net(
    depth: int,
    channels: int = 32,
    activation: str = "relu",
    in_channels: int = 3,
    padding_mode: str = "zeros",
) -> nn.Sequential:
    """``depth`` blocks of 3x3 convolution (same padding) + activation, nothing else.

    No batch norm, no skip connections, no pooling: the network in which the initialisation
    alone decides whether signals survive. Block ``l`` is ``model[2 l]`` (conv) and
    ``model[2 l + 1]`` (activation: ``"relu"``, ``"tanh"`` or ``"linear"``). Input
    ``(N, in_channels, H, W)``, output ``(N, channels, H, W)``. ``padding_mode="circular"``
    wraps the image around, so that every unit has all ``n_in`` inputs as the variance argument
    assumes (zero padding gives border units fewer, which shrinks the signal a little more).
    """
    check_int(depth, "depth", 1)
    check_int(channels, "channels", 1)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
    if padding_mode not in ("zeros", "circular", "reflect", "replicate"):
        raise ValueError(
            "padding_mode must be 'zeros', 'circular', 'reflect' or 'replicate'; "
            f"got {padding_mode!r}"
        )
    layers: list[nn.Module] = []
    for index in range(depth):
        width_in = in_channels if index == 0 else channels
        layers.append(nn.Conv2d(width_in, channels, 3, padding=1, padding_mode=padding_mode))
        layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def layer_statistics(model: nn.Module, x: torch.Tensor, seed: int = 0) -> dict[str, list[float]]:
    """Forward and backward signal size at every ``Conv2d`` of ``model``, in forward order.

    Runs ``z = model(x)`` and backpropagates ``L = sum(z * r)`` with a fixed ``r ~ N(0, 1)``
    (seeded by ``seed``), so the gradient arriving at the output has unit variance whatever the
    task. Returns ``{"forward": [std(z_l)], "backward": [std(dL/dx_l)], "weight_grad":
    [std(dL/dw_l)]}`` where ``z_l`` is conv ``l``'s output (before the activation) and
    ``x_l`` its input, for ``l = 1 .. number of conv layers``. The model's parameters get no
    ``.grad``.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to measure")
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def record(_module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        inputs.append(args[0])
        outputs.append(output)

    handles = [conv.register_forward_hook(record) for conv in convs]
    try:
        x = x.detach().requires_grad_(True)
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    generator = torch.Generator(device=out.device).manual_seed(seed)
    r = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
    weights = [conv.weight for conv in convs]
    grads = torch.autograd.grad((out * r).sum(), inputs + weights)
    count = len(convs)
    return {
        "forward": [z.std().item() for z in outputs],
        "backward": [g.std().item() for g in grads[:count]],
        "weight_grad": [g.std().item() for g in grads[count:]],
    }
