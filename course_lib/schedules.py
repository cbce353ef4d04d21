"""Learning-rate schedules and the batch-size trade-off (lecture 07).

Schedules change the learning rate eta_t with the step t (or epoch). PyTorch implements them in
``torch.optim.lr_scheduler``; the closed forms below are what those classes compute, written
out so the equations can be read (and are tested against the classes):

    step decay     eta_t = eta_0 gamma^floor(t / step_size)                      (StepLR)
    cosine         eta_t = eta_min + (eta_0 - eta_min) (1 + cos(pi t / T)) / 2  (CosineAnnealingLR)
    linear warm-up eta_t = eta_0 (f + (1 - f) t / T_w) for t < T_w, then eta_0    (LinearLR)
    one-cycle      cosine up from eta_max / div to eta_max over the first pct_start of the
                   steps, then cosine down to eta_max / (div * final_div)        (OneCycleLR)

Batch size: a mini-batch gradient g_B is the mean of B per-sample gradients g_i. Drawn without
replacement from n samples with mean g and spread s^2 = (1/n) sum_i ||g_i - g||^2,

    E ||g_B - g||^2 = (s^2 / B) (n - B) / (n - 1)

so the gradient noise falls like 1 / B while the cost of a step grows like B.

    schedules      learning_rates, step_decay, cosine_annealing, linear_warmup, one_cycle,
                   warmup_cosine
    training       ScheduledRun, train_with_schedule (the scheduler steps after every batch)
    batch size     flat_gradient, per_sample_gradients, expected_gradient_noise, gradient_noise
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from course_lib._validate import check_int, check_tensor

__all__ = [
    "ScheduledRun",
    "cosine_annealing",
    "expected_gradient_noise",
    "flat_gradient",
    "gradient_noise",
    "learning_rates",
    "linear_warmup",
    "one_cycle",
    "per_sample_gradients",
    "step_decay",
    "train_with_schedule",
    "warmup_cosine",
]


# ----------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------


def learning_rates(
    make_scheduler: Callable[[Optimizer], LRScheduler], steps: int, base_lr: float = 1.0
) -> list[float]:
    """The learning rate a scheduler gives at steps ``0 .. steps - 1``.

    ``make_scheduler(optimizer)`` builds the scheduler, e.g.
    ``lambda opt: StepLR(opt, step_size=30, gamma=0.1)``; it is attached to plain SGD on one
    dummy parameter with ``lr=base_lr``. Each step reads ``optimizer.param_groups[0]["lr"]``
    (the rate that step uses), then calls ``optimizer.step()`` and ``scheduler.step()`` in the
    order PyTorch requires.
    """
    check_int(steps, "steps", 1)
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return rates


def step_decay(step: int, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    """``eta_0 gamma^floor(t / step_size)``: divide by ``1 / gamma`` every ``step_size`` steps."""
    return base_lr * gamma ** (step // step_size)


def _cosine_between(start: float, end: float, fraction: float) -> float:
    """Half a cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


def cosine_annealing(step: int, total_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """``eta_min + (eta_0 - eta_min) (1 + cos(pi t / T)) / 2``: ``eta_0`` at 0, ``eta_min`` at T."""
    return _cosine_between(base_lr, min_lr, step / total_steps)


def linear_warmup(
    step: int, warmup_steps: int, base_lr: float, start_factor: float = 0.01
) -> float:
    """``eta_0 (f + (1 - f) t / T_w)`` for ``t < T_w``, then ``eta_0``: a ramp from ``f eta_0``."""
    if step >= warmup_steps:
        return base_lr
    return base_lr * (start_factor + (1 - start_factor) * step / warmup_steps)


def one_cycle(
    step: int,
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """Smith's one-cycle policy as ``OneCycleLR`` computes it (cosine annealing).

    Phase 1, steps ``0 .. pct_start T - 1``: from ``eta_max / div_factor`` up to ``eta_max``.
    Phase 2, up to step ``T - 1``: from ``eta_max`` down to
    ``eta_max / (div_factor * final_div_factor)``. The warm-up is built in.
    """
    initial_lr = max_lr / div_factor
    final_lr = initial_lr / final_div_factor
    peak_step = pct_start * total_steps - 1
    if step <= peak_step:
        return _cosine_between(initial_lr, max_lr, step / peak_step)
    return _cosine_between(max_lr, final_lr, (step - peak_step) / (total_steps - 1 - peak_step))


def warmup_cosine(
    optimizer: Optimizer,
    warmup_steps: int,
    total_steps: int,
    start_factor: float = 0.01,
    min_lr: float = 0.0,
) -> SequentialLR:
    """Linear warm-up for ``warmup_steps``, then cosine annealing to ``min_lr`` at ``total_steps``.

    PyTorch's own pieces chained with ``SequentialLR``: ``LinearLR(start_factor -> 1)`` then
    ``CosineAnnealingLR(T_max = total_steps - warmup_steps)``. Step it once per batch.
    """
    check_int(warmup_steps, "warmup_steps", 1)
    check_int(total_steps, "total_steps", warmup_steps + 1)
    warmup = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_steps)
    cosine = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


# ----------------------------------------------------------------------------------------------
# training with a per-step schedule
# ----------------------------------------------------------------------------------------------


@dataclass
class ScheduledRun:
    """What :func:`train_with_schedule` records.

    Per step (one batch): ``lrs`` (the rate the step used) and ``losses`` (the batch's training
    loss). Per epoch: ``val_loss`` and ``val_acc``. ``steps_per_epoch``: batches in one epoch.
    """

    steps_per_epoch: int
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)

    def epoch_losses(self) -> list[float]:
        """Mean training loss of each epoch (the per-step losses averaged epoch by epoch)."""
        k = self.steps_per_epoch
        return [
            sum(self.losses[i : i + k]) / len(self.losses[i : i + k])
            for i in range(0, len(self.losses), k)
        ]


def train_with_schedule(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer: Optimizer,
    epochs: int,
    scheduler: LRScheduler | None = None,
    device: torch.device | str | None = None,
) -> ScheduledRun:
    """Train with cross-entropy for ``epochs`` epochs, stepping ``scheduler`` after *every batch*.

    ``course_lib.train.fit`` steps a scheduler once per epoch; warm-up and one-cycle schedules
    are defined in steps, so this loop calls ``optimizer.step()`` then ``scheduler.step()`` per
    batch. The model is evaluated on ``val_loader`` (``course_lib.train.evaluate``) after each
    epoch. ``device`` None: where the model's parameters are.
    """
    from course_lib.train import evaluate

    check_int(epochs, "epochs", 1)
    if device is None:
        device = next(model.parameters()).device
    run = ScheduledRun(steps_per_epoch=len(train_loader))
    for _ in range(epochs):
        model.train()
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device), targets.to(device)
            run.lrs.append(float(optimizer.param_groups[0]["lr"]))
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            run.losses.append(loss.item())
        val_loss, val_acc = evaluate(model, val_loader, nn.functional.cross_entropy, device)
        run.val_loss.append(val_loss)
        run.val_acc.append(val_acc)
    return run


# ----------------------------------------------------------------------------------------------
# batch size: gradient noise
# ----------------------------------------------------------------------------------------------

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flat_gradient(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``d loss_fn(model(x), y) / d theta`` as one vector ``(P,)`` over all trainable parameters.

    ``loss_fn`` must average over the batch (as ``F.cross_entropy`` does), so this is the
    mini-batch gradient g_B for a batch ``x``. Parameters' ``.grad`` are not touched.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(x), y), params)
    return torch.cat([g.reshape(-1) for g in grads])


def per_sample_gradients(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, chunk_size: int = 256
) -> torch.Tensor:
    """All ``n`` per-sample gradients ``(n, P)``: row i is ``d loss(model(x_i), y_i) / d theta``.

    ``torch.func.vmap`` over ``torch.func.grad`` of a one-sample loss (``functional_call`` runs
    the model with the parameters as inputs). The model must treat samples independently: no
    batch norm in training mode (call ``model.eval()``). ``chunk_size`` bounds memory.
    """
    from torch.func import functional_call, grad, vmap

    check_tensor(x, "x", (2, 3, 4), floating=True)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def one_sample_loss(params: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (params, buffers), (xi[None],))
        return loss_fn(out, yi[None])

    grads = vmap(grad(one_sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, x, y)
    return torch.cat([grads[name].reshape(x.shape[0], -1) for name in names], dim=1)


def expected_gradient_noise(per_sample: torch.Tensor, batch_size: int) -> float:
    """Exact ``E ||g_B - g||^2`` for batches of ``B`` drawn without replacement from ``n`` samples.

    ``per_sample``: ``(n, P)`` per-sample gradients; ``g`` is their mean and
    ``s^2 = (1/n) sum_i ||g_i - g||^2``. Returns ``(s^2 / B) (n - B) / (n - 1)``
    (0 for ``B = n``: the full batch has no noise).
    """
    check_tensor(per_sample, "per_sample", 2, "(n, P)")
    n = per_sample.shape[0]
    check_int(batch_size, "batch_size", 1)
    if batch_size > n or n < 2:
        raise ValueError(f"batch_size must be between 1 and n = {n} (and n >= 2); got {batch_size}")
    spread = (per_sample - per_sample.mean(dim=0)).double().pow(2).sum(dim=1).mean().item()
    return spread / batch_size * (n - batch_size) / (n - 1)


def gradient_noise(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    draws: int = 20,
    seed: int = 0,
) -> float:
    """Measured ``||g_B - g||^2`` averaged over ``draws`` random mini-batches of ``batch_size``.

    Each draw is a real forward and backward pass on ``batch_size`` samples picked without
    replacement from ``(x, y)``; ``g`` is the gradient on all of ``(x, y)``. Use eval mode for a
    model with batch norm (then g_B is an average of independent per-sample gradients).
    """
    n = x.shape[0]
    check_int(batch_size, "batch_size", 1)
    check_int(draws, "draws", 1)
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the n = {n} samples given; got {batch_size}")
    full = flat_gradient(model, loss_fn, x, y)
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        index = torch.randperm(n, generator=generator)[:batch_size].to(x.device)
        total += (
            (flat_gradient(model, loss_fn, x[index], y[index]) - full).double().pow(2).sum().item()
        )
    return total / draws
