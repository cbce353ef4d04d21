"""course_lib.schedules: closed forms vs torch.optim.lr_scheduler, gradient noise vs exact sums."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, OneCycleLR, StepLR

from course_lib.schedules import (
    cosine_annealing,
    expected_gradient_noise,
    flat_gradient,
    gradient_noise,
    learning_rates,
    linear_warmup,
    one_cycle,
    per_sample_gradients,
    step_decay,
    warmup_cosine,
)


def test_step_decay_equals_steplr() -> None:
    traced = learning_rates(lambda opt: StepLR(opt, step_size=7, gamma=0.5), 30, base_lr=0.2)
    assert traced == pytest.approx([step_decay(t, 0.2, 7, 0.5) for t in range(30)])


def test_cosine_equals_cosineannealinglr() -> None:
    traced = learning_rates(lambda opt: CosineAnnealingLR(opt, T_max=50, eta_min=1e-3), 51, 0.1)
    assert traced == pytest.approx([cosine_annealing(t, 50, 0.1, 1e-3) for t in range(51)])
    assert traced[0] == pytest.approx(0.1) and traced[50] == pytest.approx(1e-3)


def test_linear_warmup_equals_linearlr() -> None:
    traced = learning_rates(lambda opt: LinearLR(opt, start_factor=0.1, total_iters=10), 20, 0.5)
    assert traced == pytest.approx([linear_warmup(t, 10, 0.5, 0.1) for t in range(20)])


@pytest.mark.parametrize(("total", "pct"), [(100, 0.3), (37, 0.25), (10, 0.5)])
def test_one_cycle_equals_onecyclelr(total: int, pct: float) -> None:
    traced = learning_rates(
        lambda opt: OneCycleLR(opt, max_lr=0.4, total_steps=total, pct_start=pct), total, 0.4
    )
    assert traced == pytest.approx([one_cycle(t, total, 0.4, pct) for t in range(total)])
    assert max(traced) == pytest.approx(0.4, rel=1e-2)  # the peak falls between steps


def test_warmup_cosine_ramps_then_anneals() -> None:
    traced = learning_rates(lambda opt: warmup_cosine(opt, 10, 60, start_factor=0.01), 60, 1.0)
    for t in range(10):
        assert traced[t] == pytest.approx(linear_warmup(t, 10, 1.0, 0.01))
    for t in range(10, 60):
        assert traced[t] == pytest.approx(cosine_annealing(t - 10, 50, 1.0))


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)
    ).double()


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 6, 6, dtype=torch.float64, generator=generator)
    return x, torch.randint(0, 4, (n,), generator=generator)


def test_per_sample_gradients_equal_a_loop() -> None:
    model, (x, y) = _tiny_model(), _data(9)
    rows = per_sample_gradients(model, F.cross_entropy, x, y, chunk_size=4)
    for i in range(9):
        torch.testing.assert_close(
            rows[i], flat_gradient(model, F.cross_entropy, x[i : i + 1], y[i : i + 1])
        )
    # their mean is the full-batch gradient of the mean loss
    torch.testing.assert_close(rows.mean(dim=0), flat_gradient(model, F.cross_entropy, x, y))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("batch_size", [1, 2, 3, 6])
def test_expected_noise_equals_average_over_every_batch(batch_size: int) -> None:
    model, (x, y) = _tiny_model(), _data(6)
    per_sample = per_sample_gradients(model, F.cross_entropy, x, y)
    full = per_sample.mean(dim=0)
    subsets = list(itertools.combinations(range(6), batch_size))
    exact = sum(
        (per_sample[list(s)].mean(dim=0) - full).pow(2).sum().item() for s in subsets
    ) / len(subsets)
    assert expected_gradient_noise(per_sample, batch_size) == pytest.approx(
        exact, rel=1e-9, abs=1e-15
    )


def test_measured_noise_follows_one_over_b() -> None:
    model, (x, y) = _tiny_model(), _data(200)
    per_sample = per_sample_gradients(model, F.cross_entropy, x, y)
    for batch_size in (4, 32):
        measured = gradient_noise(model, F.cross_entropy, x, y, batch_size, draws=300, seed=2)
        assert measured == pytest.approx(expected_gradient_noise(per_sample, batch_size), rel=0.15)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="batch_size must be between"):
        expected_gradient_noise(torch.zeros(5, 3), 6)
    with pytest.raises(ValueError, match="at most"):
        gradient_noise(_tiny_model(), F.cross_entropy, *_data(3), batch_size=4)
    with pytest.raises(ValueError, match="total_steps must be >= 11"):
        learning_rates(lambda opt: warmup_cosine(opt, 10, 10), 5)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        learning_rates(lambda opt: StepLR(opt, 1), 0)


def test_train_with_schedule_steps_the_scheduler_every_batch() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from course_lib.schedules import train_with_schedule

    torch.manual_seed(0)
    x, y = torch.randn(40, 1, 6, 6), torch.randint(0, 4, (40,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = _tiny_model().float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = train_with_schedule(
        model, loader, loader, optimizer, 3, CosineAnnealingLR(optimizer, T_max=15)
    )
    assert run.steps_per_epoch == 5 and len(run.lrs) == len(run.losses) == 15
    assert run.lrs == pytest.approx([cosine_annealing(t, 15, 0.1) for t in range(15)])
    assert len(run.val_acc) == len(run.val_loss) == 3 and len(run.epoch_losses()) == 3
    assert run.epoch_losses()[0] == pytest.approx(sum(run.losses[:5]) / 5)
    # without a scheduler the rate stays put, and the loop matches a hand-written one
    torch.manual_seed(1)
    first = _tiny_model().float()
    second = _tiny_model().float()
    second.load_state_dict(first.state_dict())
    train_with_schedule(first, loader, loader, torch.optim.SGD(first.parameters(), lr=0.05), 1)
    opt = torch.optim.SGD(second.parameters(), lr=0.05)
    for inputs, targets in loader:
        opt.zero_grad()
        F.cross_entropy(second(inputs), targets).backward()
        opt.step()
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_gradient_noise_on_every_device(device) -> None:
    model, (x, y) = _tiny_model(), _data(12)
    expected = per_sample_gradients(model, F.cross_entropy, x, y)
    on_device = model.to(device)
    result = per_sample_gradients(on_device, F.cross_entropy, x.to(device), y.to(device))
    torch.testing.assert_close(result.cpu(), expected.cpu())
    measured = gradient_noise(on_device, F.cross_entropy, x.to(device), y.to(device), 3, draws=4)
    assert measured == pytest.approx(
        gradient_noise(model.cpu(), F.cross_entropy, x, y, 3, draws=4), rel=1e-9
    )
