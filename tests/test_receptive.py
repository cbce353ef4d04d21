"""course_lib.receptive: the layer-by-layer recurrence against gradients measured by autograd."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from course_lib.receptive import (
    ReceptiveField,
    effective_receptive_field,
    gradient_spread,
    gradient_support,
    input_gradient,
    layer_geometries,
    positive_linear_copy,
    receptive_fields,
)


def test_three_3x3_convolutions_and_dilation() -> None:
    assert [f.size for f in receptive_fields([(3, 1, 1)] * 3)] == [3, 5, 7]
    assert [f.size for f in receptive_fields([(3, 1, 1), (3, 1, 2), (3, 1, 4)])] == [3, 7, 15]
    # a stride-2 pool doubles the jump, so the next 3x3 conv adds 4 pixels, not 2
    fields = receptive_fields([(3, 1, 1), (2, 2, 1), (3, 1, 1)])
    assert [(f.size, f.jump) for f in fields] == [(3, 1), (4, 2), (8, 2)]


def test_vgg16_receptive_field_is_212_at_pool5() -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        features = torchvision.models.vgg16().features
    geometries = layer_geometries(features)
    assert len(geometries) == 13 + 5
    fields = receptive_fields([g for _, g in geometries])
    assert fields[-2].size == 196  # conv5_3 (published: Araujo et al. 2019)
    assert fields[-1] == ReceptiveField(size=212, jump=32, start=15.5)


def _random_chain(rng: random.Random) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 2
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(["conv", "conv", "max", "avg"])
        if kind == "conv":
            kernel, stride, dilation = (
                rng.choice([1, 2, 3, 5]),
                rng.choice([1, 1, 2]),
                rng.choice([1, 2, 3]),
            )
            padding = rng.randint(0, kernel // 2 * dilation)
            out = rng.choice([1, 3])
            layers += [nn.Conv2d(channels, out, kernel, stride, padding, dilation), nn.ReLU()]
            channels = out
        else:
            kernel = rng.choice([2, 3])
            padding = rng.randint(0, kernel // 2)
            pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
            layers.append(pool(kernel, rng.choice([1, 2, kernel]), padding))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("seed", range(12))
def test_recurrence_matches_gradient_of_positive_copy(seed: int) -> None:
    chain = _random_chain(random.Random(seed))
    field = receptive_fields([g for _, g in layer_geometries(chain)])[-1]
    size = 3 * field.size + 8 * field.jump + 16  # large enough that the field is not clipped
    probe = positive_linear_copy(chain)
    x = torch.rand(1, 2, size, size, dtype=torch.float64)
    out = probe.double()(x)
    i, j = out.shape[2] // 2, out.shape[3] // 2
    grad = input_gradient(probe, x, (i, j))[0]
    assert gradient_support(grad) == (field.size, field.size)
    rows = torch.nonzero(grad.sum(dim=1)).flatten()
    cols = torch.nonzero(grad.sum(dim=0)).flatten()
    # the unit (i, j) is centred on input pixel start + i * jump
    assert (rows[0] + rows[-1]).item() / 2 == pytest.approx(field.start + i * field.jump)
    assert (cols[0] + cols[-1]).item() / 2 == pytest.approx(field.start + j * field.jump)


def test_positive_copy_leaves_model_unchanged_and_replaces_layers() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe = positive_linear_copy(model)
    assert isinstance(probe[1], nn.Identity) and isinstance(probe[2], nn.Identity)
    assert isinstance(probe[3], nn.AvgPool2d)
    assert torch.all(probe[0].weight == 1 / 9) and torch.all(probe[0].bias == 0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_dilated_stack_has_holes_but_the_same_extent() -> None:
    # dilation 2 three times: a 13-pixel field of which only every other row/column is seen
    chain = nn.Sequential(*[nn.Conv2d(1, 1, 3, dilation=2) for _ in range(3)])
    grad = input_gradient(positive_linear_copy(chain), torch.ones(1, 1, 31, 31))[0]
    assert gradient_support(grad) == (13, 13)
    assert int((grad > 0).sum()) == 7 * 7


def test_input_gradient_is_per_image_and_leaves_no_parameter_grad() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Conv2d(4, 2, 3))
    x = torch.randn(3, 3, 9, 9, dtype=torch.float64)
    model = model.double()
    maps = input_gradient(model, x, (2, 3))
    assert maps.shape == (3, 9, 9)
    for n in range(3):
        single = x[n : n + 1].clone().requires_grad_(True)
        model(single)[0, :, 2, 3].sum().backward()
        torch.testing.assert_close(maps[n], single.grad[0].abs().sum(0))
    model.zero_grad(set_to_none=True)
    input_gradient(model, x)
    assert all(p.grad is None for p in model.parameters())


def test_uniform_stack_spreads_like_a_random_walk() -> None:
    for n in (1, 4, 9):
        chain = nn.Sequential(*[nn.Conv2d(1, 1, 3, bias=False) for _ in range(n)])
        size = 2 * n + 9
        erf = effective_receptive_field(positive_linear_copy(chain), torch.rand(2, 1, size, size))
        assert erf.sum().item() == pytest.approx(1.0)
        sigma_rows, sigma_cols = gradient_spread(erf)
        assert sigma_rows == pytest.approx(math.sqrt(2 * n / 3), rel=1e-5)
        assert sigma_cols == pytest.approx(math.sqrt(2 * n / 3), rel=1e-5)


def test_gradient_spread_of_two_points() -> None:
    weights = torch.zeros(5, 5)
    weights[1, 2] = weights[3, 2] = 1.0  # rows 1 and 3: mean 2, std 1; one column
    assert gradient_spread(weights) == pytest.approx((1.0, 0.0))


def test_bad_input_says_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"\(kernel, stride, dilation\)"):
        receptive_fields([(3, 1)])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        receptive_fields([(3, 0, 1)])
    with pytest.raises(TypeError, match="list of"):
        receptive_fields("3,1,1")
    with pytest.raises(ValueError, match="4-D"):
        input_gradient(nn.Conv2d(1, 1, 3), torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="outside"):
        input_gradient(nn.Conv2d(1, 1, 3), torch.zeros(1, 1, 5, 5), (3, 0))
    with pytest.raises(ValueError, match="non-negative"):
        gradient_spread(-torch.ones(3, 3))
    with pytest.raises(ValueError, match="padding='same'"):
        layer_geometries(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")))
    assert gradient_support(torch.zeros(4, 4)) == (0, 0)


def test_gradients_agree_on_every_device(device) -> None:
    chain = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 1, 3)
    )
    chain = chain.double()
    x = torch.rand(3, 2, 12, 12, dtype=torch.float64)
    expected = effective_receptive_field(chain, x)
    result = effective_receptive_field(chain.to(device), x.to(device))
    torch.testing.assert_close(result.cpu(), expected.cpu())
    probe = positive_linear_copy(chain)  # a copy on the same device as the model
    assert gradient_support(input_gradient(probe, x.to(device))[0].cpu()) == (8, 8)
