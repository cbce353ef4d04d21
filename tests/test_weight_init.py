"""course_lib.weight_init against torch.nn.init, and the variance argument against measurement."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.weight_init import (
    fan_in_and_fan_out,
    gain,
    he_normal_,
    he_std,
    he_uniform_,
    init_model_,
    layer_statistics,
    plain_conv_net,
    xavier_normal_,
    xavier_std,
    xavier_uniform_,
)

SHAPES = [(64, 32, 3, 3), (10, 300), (16, 1, 5, 5), (8, 4, 3, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape) -> None:
    weight = torch.empty(shape)
    assert fan_in_and_fan_out(weight) == nn.init._calculate_fan_in_and_fan_out(weight)


@pytest.mark.parametrize("name", ["linear", "conv2d", "sigmoid", "tanh", "relu"])
def test_gains_match_torch(name: str) -> None:
    assert gain(name) == pytest.approx(nn.init.calculate_gain(name))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_initialisers_equal_torch_seed_for_seed(shape, mode: str) -> None:
    pairs = [
        (lambda w: xavier_normal_(w, gain=1.7), lambda w: nn.init.xavier_normal_(w, gain=1.7)),
        (lambda w: xavier_uniform_(w), lambda w: nn.init.xavier_uniform_(w)),
        (
            lambda w: he_normal_(w, mode=mode),
            lambda w: nn.init.kaiming_normal_(w, mode=mode, nonlinearity="relu"),
        ),
        (
            lambda w: he_uniform_(w, mode=mode, nonlinearity="tanh"),
            lambda w: nn.init.kaiming_uniform_(w, mode=mode, nonlinearity="tanh"),
        ),
    ]
    for ours, theirs in pairs:
        torch.manual_seed(3)
        mine = ours(torch.empty(shape))
        torch.manual_seed(3)
        reference = theirs(torch.empty(shape))
        assert torch.equal(mine, reference)


def test_standard_deviations() -> None:
    assert xavier_std(100, 300) == pytest.approx(math.sqrt(2 / 400))
    assert he_std(288) == pytest.approx(math.sqrt(2 / 288))
    weight = he_normal_(torch.empty(256, 128, 3, 3))
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.01)


def test_initialisers_work_on_parameters_with_grad() -> None:
    layer = nn.Conv2d(4, 8, 3)
    he_normal_(layer.weight)  # in place on a leaf that requires grad: needs no_grad inside
    assert layer.weight.requires_grad and layer.weight.grad_fn is None


@pytest.mark.parametrize("scheme", ["normal 0.01", "xavier", "he"])
def test_init_model_sets_every_layer(scheme: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 128))
    init_model_(model, scheme)
    for layer in (model[0], model[3]):
        fan_in, fan_out = fan_in_and_fan_out(layer.weight)
        expected = {
            "normal 0.01": 0.01,
            "xavier": xavier_std(fan_in, fan_out),
            "he": he_std(fan_in),
        }
        assert layer.weight.std().item() == pytest.approx(expected[scheme], rel=0.1)
        assert torch.all(layer.bias == 0)


def test_default_scheme_is_pytorch_reset() -> None:
    model = plain_conv_net(2, channels=8)
    torch.manual_seed(5)
    init_model_(model, "default")
    torch.manual_seed(5)
    fresh = plain_conv_net(2, channels=8)
    for ours, reference in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(ours, reference)


def _per_layer_factors(scheme: str, seed: int) -> tuple[float, float]:
    """Geometric-mean variance ratio per layer, forward and backward, layers 2..8 of a ReLU net."""
    torch.manual_seed(seed)
    # circular padding: no border, where zero padding would lose a few % per layer
    model = plain_conv_net(
        8, channels=96, activation="relu", in_channels=96, padding_mode="circular"
    )
    init_model_(model, scheme)
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            nn.init.zeros_(layer.bias)  # the default scheme's biases add an input-free floor
    stats = layer_statistics(model, torch.randn(4, 96, 16, 16))
    forward, backward = torch.tensor(stats["forward"]), torch.tensor(stats["backward"])
    steps = len(forward) - 2
    return (
        ((forward[-1] / forward[1]) ** (2 / steps)).item(),
        ((backward[1] / backward[-1]) ** (2 / steps)).item(),
    )


@pytest.mark.parametrize(("scheme", "factor"), [("he", 1.0), ("xavier", 0.5), ("default", 1 / 6)])
def test_variance_argument_predicts_the_measured_per_layer_factor(
    scheme: str, factor: float
) -> None:
    # ReLU, n_in = n_out = 96 * 9: Var(z) is multiplied by n_in sigma^2 / 2 per layer, both ways
    factors = torch.tensor([_per_layer_factors(scheme, seed) for seed in range(3)])
    forward, backward = factors.mean(dim=0).tolist()
    assert forward == pytest.approx(factor, rel=0.1)
    assert backward == pytest.approx(factor, rel=0.1)


def test_layer_statistics_matches_autograd() -> None:
    torch.manual_seed(1)
    model = plain_conv_net(3, channels=4, activation="tanh").double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    stats = layer_statistics(model, x, seed=7)
    assert all(len(v) == 3 for v in stats.values())
    # recompute by hand: conv outputs, input gradient of conv 1 (= dL/dx), weight gradients
    z1 = model[0](x)
    torch.testing.assert_close(stats["forward"][0], z1.std().item())
    x_leaf = x.clone().requires_grad_(True)
    out = model(x_leaf)
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
    (out * r).sum().backward()
    torch.testing.assert_close(stats["backward"][0], x_leaf.grad.std().item())
    torch.testing.assert_close(stats["weight_grad"][2], model[4].weight.grad.std().item())
    assert model[0].weight.grad is not None  # from our manual backward only
    model.zero_grad(set_to_none=True)
    layer_statistics(model, x)
    assert all(p.grad is None for p in model.parameters())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fan_in_and_fan_out(torch.empty(5))
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        gain("gelu")
    with pytest.raises(ValueError, match="mode must be"):
        he_normal_(torch.empty(3, 3), mode="in")
    with pytest.raises(ValueError, match="scheme must be one of"):
        init_model_(nn.Linear(2, 2), "kaiming")
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        init_model_(nn.ReLU(), "he")
    with pytest.raises(ValueError, match="activation must be one of"):
        plain_conv_net(3, activation="gelu")
    with pytest.raises(ValueError, match="padding_mode must be"):
        plain_conv_net(3, padding_mode="same")


def test_layer_statistics_and_initialisers_on_every_device(device) -> None:
    torch.manual_seed(2)
    model = plain_conv_net(3, channels=4).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    expected = layer_statistics(model, x, seed=3)
    result = layer_statistics(model.to(device), x.to(device), seed=3)
    if torch.device(device).type == "cpu":
        assert result == expected
    else:  # r ~ N(0, 1) comes from the device's own generator (other values): compare the forward
        assert result["forward"] == pytest.approx(expected["forward"], rel=1e-9)
    weight = he_normal_(torch.empty(32, 16, 3, 3, device=device))
    assert weight.device.type == torch.device(device).type
    assert weight.std().item() == pytest.approx(he_std(16 * 9), rel=0.1)
