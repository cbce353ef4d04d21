"""course_lib.optim against torch.optim, on a small CNN and on 2-D test surfaces."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from course_lib import optim

STEPS = 120  # "100+ steps" of training in every twin comparison

# (id, our class, torch's class, shared hyperparameters)
TWINS = [
    ("sgd", optim.SGD, torch.optim.SGD, dict(lr=0.05)),
    ("sgd-momentum", optim.SGD, torch.optim.SGD, dict(lr=0.02, momentum=0.9)),
    ("sgd-dampening", optim.SGD, torch.optim.SGD, dict(lr=0.02, momentum=0.9, dampening=0.5)),
    ("sgd-nesterov", optim.SGD, torch.optim.SGD, dict(lr=0.02, momentum=0.9, nesterov=True)),
    (
        "sgd-momentum-wd",
        optim.SGD,
        torch.optim.SGD,
        dict(lr=0.02, momentum=0.8, weight_decay=0.05),
    ),
    ("adagrad", optim.AdaGrad, torch.optim.Adagrad, dict(lr=0.05)),
    (
        "adagrad-wd-init",
        optim.AdaGrad,
        torch.optim.Adagrad,
        dict(lr=0.05, weight_decay=0.01, initial_accumulator_value=0.1),
    ),
    ("rmsprop", optim.RMSProp, torch.optim.RMSprop, dict(lr=1e-3)),
    ("rmsprop-wd", optim.RMSProp, torch.optim.RMSprop, dict(lr=1e-3, alpha=0.9, weight_decay=0.01)),
    ("adam", optim.Adam, torch.optim.Adam, dict(lr=1e-3)),
    ("adam-betas", optim.Adam, torch.optim.Adam, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6)),
    ("adam-wd", optim.Adam, torch.optim.Adam, dict(lr=1e-3, weight_decay=0.1)),
    ("adamw", optim.AdamW, torch.optim.AdamW, dict(lr=1e-3)),
    ("adamw-wd", optim.AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.1)),
]
TWIN_PARAMS = [pytest.param(ours, theirs, kw, id=name) for name, ours, theirs, kw in TWINS]


@pytest.fixture(autouse=True)
def _deterministic_cudnn(monkeypatch):
    # The two runs must see the same gradients: no nondeterministic conv kernels on CUDA.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


def small_cnn(dtype: torch.dtype, device: torch.device) -> nn.Module:
    """Two conv layers and a linear layer: (N, 1, 8, 8) -> (N, 3)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 3),
    )
    return model.to(device=device, dtype=dtype)


def make_batches(dtype: torch.dtype, device: torch.device, count: int = 6):
    """A few fixed (inputs (8, 1, 8, 8), targets (8,)) batches, cycled through training."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        x = torch.randn(8, 1, 8, 8, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 3, (8,), generator=generator)
        batches.append((x.to(device=device, dtype=dtype), y.to(device)))
    return batches


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batches, steps: int) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for step in range(steps):
        x, y = batches[step % len(batches)]
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()


def max_param_difference(model_a: nn.Module, model_b: nn.Module) -> float:
    return max(
        (a - b).abs().max().item()
        for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# Each optimizer against its torch.optim twin
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize(("ours_cls", "torch_cls", "kwargs"), TWIN_PARAMS)
def test_matches_torch_twin_on_small_cnn(device, dtype, tol, ours_cls, torch_cls, kwargs):
    if device.type == "mps" and dtype == torch.float64:
        pytest.skip("MPS has no float64")
    model_ours = small_cnn(dtype, device)
    model_torch = copy.deepcopy(model_ours)
    initial = copy.deepcopy(model_ours)
    batches = make_batches(dtype, device)

    ours = ours_cls(model_ours.parameters(), **kwargs)
    theirs = torch_cls(model_torch.parameters(), **kwargs)
    train(model_ours, ours, batches, STEPS)
    train(model_torch, theirs, batches, STEPS)

    # The comparison means something only if training moved the weights.
    assert max_param_difference(model_ours, initial) > 1e-3
    difference = max_param_difference(model_ours, model_torch)
    assert difference <= tol, f"{ours_cls.__name__} vs {torch_cls.__name__}: {difference:.3e}"
    # Same state names as PyTorch (momentum_buffer, sum, square_avg, exp_avg, ...).
    for p_ours, p_torch in zip(model_ours.parameters(), model_torch.parameters(), strict=True):
        assert set(ours.state[p_ours]) == set(theirs.state[p_torch])


def test_defaults_match_torch():
    param = [nn.Parameter(torch.zeros(2))]
    pairs = [
        (optim.SGD, torch.optim.SGD),
        (optim.AdaGrad, torch.optim.Adagrad),
        (optim.RMSProp, torch.optim.RMSprop),
        (optim.Adam, torch.optim.Adam),
        (optim.AdamW, torch.optim.AdamW),
    ]
    for ours_cls, torch_cls in pairs:
        ours, theirs = ours_cls(param).defaults, torch_cls(param).defaults
        for key, value in ours.items():
            if key in theirs:
                assert value == theirs[key], f"{ours_cls.__name__}.{key}: {value} vs {theirs[key]}"


def test_parameter_groups_with_different_lrs(device):
    dtype = torch.float64
    model_ours = small_cnn(dtype, device)
    model_torch = copy.deepcopy(model_ours)
    batches = make_batches(dtype, device)

    def groups(model: nn.Module) -> list[dict]:
        convs = [*model[0].parameters(), *model[2].parameters()]
        return [
            {"params": convs, "lr": 0.05},
            {"params": model[5].parameters(), "lr": 0.005, "momentum": 0.5},
        ]

    ours = optim.SGD(groups(model_ours), lr=0.01, momentum=0.9)
    theirs = torch.optim.SGD(groups(model_torch), lr=0.01, momentum=0.9)
    assert [g["lr"] for g in ours.param_groups] == [0.05, 0.005]
    train(model_ours, ours, batches, STEPS)
    train(model_torch, theirs, batches, STEPS)
    assert max_param_difference(model_ours, model_torch) <= 1e-10

    # Each group really uses its own lr: the linear layer moved much less per unit gradient.
    single = small_cnn(dtype, device)
    train(single, optim.SGD(single.parameters(), lr=0.01, momentum=0.9), batches, STEPS)
    assert max_param_difference(single, model_ours) > 1e-3


@pytest.mark.parametrize(("ours_cls", "torch_cls", "kwargs"), TWIN_PARAMS)
def test_state_dict_round_trip_mid_run(ours_cls, torch_cls, kwargs):
    dtype, device = torch.float64, torch.device("cpu")
    batches = make_batches(dtype, device)  # 6 batches: 60 steps end at the start of the cycle
    model = small_cnn(dtype, device)
    optimizer = ours_cls(model.parameters(), **kwargs)
    train(model, optimizer, batches, 60)
    checkpoint = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
    train(model, optimizer, batches, 60)

    checkpoint.seek(0)
    saved = torch.load(checkpoint, weights_only=True)
    resumed = small_cnn(dtype, device)  # a fresh model and optimizer, restored from the file
    resumed.load_state_dict(saved["model"])
    resumed_optimizer = ours_cls(resumed.parameters(), **kwargs)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    train(resumed, resumed_optimizer, batches, 60)
    assert max_param_difference(model, resumed) == 0.0

    # Restarting with a fresh optimizer (moments / buffers lost) gives another path.
    restarted = small_cnn(dtype, device)
    restarted.load_state_dict(saved["model"])
    train(restarted, ours_cls(restarted.parameters(), **kwargs), batches, 60)
    if optimizer.state[next(model.parameters())]:
        assert max_param_difference(model, restarted) > 1e-8


def test_step_with_closure_returns_loss_and_skips_params_without_grad():
    used = nn.Parameter(torch.tensor([1.0, -2.0]))
    unused = nn.Parameter(torch.tensor([3.0]))
    optimizer = optim.Adam([used, unused], lr=0.1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (used**2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert unused.grad is None and len(optimizer.state[unused]) == 0
    assert unused.item() == 3.0
    # Adam's first step moves each weight by about lr, against the gradient's sign.
    torch.testing.assert_close(used.detach(), torch.tensor([0.9, -1.9]))
    assert optimizer.state[used]["step"] == 1


# ---------------------------------------------------------------------------------------------
# The multi-tensor (foreach) path
# ---------------------------------------------------------------------------------------------
def trained_parameters(cls, kwargs, dtype, device, steps=40) -> list[torch.Tensor]:
    model = small_cnn(dtype, device)
    train(model, cls(model.parameters(), **kwargs), make_batches(dtype, device), steps)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("ours_cls", "torch_cls", "kwargs"), TWIN_PARAMS)
def test_foreach_path_is_bit_identical_to_the_loop_and_to_torch(ours_cls, torch_cls, kwargs, dtype):
    cpu = torch.device("cpu")
    loop = trained_parameters(ours_cls, {**kwargs, "foreach": False}, dtype, cpu)
    foreach = trained_parameters(ours_cls, {**kwargs, "foreach": True}, dtype, cpu)
    torch_foreach = trained_parameters(torch_cls, {**kwargs, "foreach": True}, dtype, cpu)
    for a, b, c in zip(loop, foreach, torch_foreach, strict=True):
        assert torch.equal(a, b), "foreach path differs from the per-parameter path"
        assert torch.equal(b, c), "foreach path differs from torch.optim's foreach=True"


@pytest.mark.parametrize(("ours_cls", "torch_cls", "kwargs"), TWIN_PARAMS)
def test_foreach_matches_torch_foreach_on_every_device(device, ours_cls, torch_cls, kwargs):
    dtype = torch.float32
    ours_kwargs = {**kwargs, "foreach": True}
    if ours_cls in (optim.Adam, optim.AdamW):
        ours_kwargs["fused"] = False  # the Triton kernel is tested in test_kernels.py
    ours = trained_parameters(ours_cls, ours_kwargs, dtype, device)
    theirs = trained_parameters(torch_cls, {**kwargs, "foreach": True}, dtype, device)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
        (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
        (optim.AdaGrad, dict(lr=0.1)),
        (optim.RMSProp, dict(lr=0.01)),
        (optim.Adam, dict(lr=0.01, weight_decay=0.1)),
        (optim.AdamW, dict(lr=0.01)),
    ],
)
def test_foreach_with_mixed_dtypes_late_gradients_and_groups(cls, kwargs):
    """Parameters of two dtypes, one that gets its first gradient late, two groups."""

    def run(foreach: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        a = nn.Parameter(torch.randn(5, 3))
        b = nn.Parameter(torch.randn(4, dtype=torch.float64))
        late = nn.Parameter(torch.randn(2, 2))
        other = nn.Parameter(torch.randn(3))
        groups = [{"params": [a, b, late]}, {"params": [other], "lr": 0.05}]
        optimizer = cls(groups, foreach=foreach, **kwargs)
        generator = torch.Generator().manual_seed(1)
        for step in range(12):
            for param in (a, b, other) if step < 5 else (a, b, late, other):
                param.grad = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            optimizer.step()
            optimizer.zero_grad()
        return [p.detach().clone() for p in (a, b, late, other)]

    for x, y in zip(run(False), run(True), strict=True):
        assert torch.equal(x, y)


def test_foreach_default_is_the_loop_on_cpu(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the foreach path ran")

    param = nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    optimizer = optim.Adam([param], lr=0.1)  # foreach=None: CPU parameters use the loop
    monkeypatch.setattr(optimizer, "_update_foreach", refuse)
    optimizer.step()
    forced = optim.Adam([param], lr=0.1, foreach=True)
    monkeypatch.setattr(forced, "_update_foreach", refuse)
    with pytest.raises(AssertionError, match="foreach path ran"):
        forced.step()


def test_foreach_and_fused_are_checked():
    param = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(TypeError, match="foreach must be True, False or None"):
        optim.SGD(param, lr=0.1, foreach="yes")
    with pytest.raises(TypeError, match="fused"):
        optim.Adam(param, fused=1)
    if not torch.cuda.is_available():
        optimizer = optim.AdamW(param, fused=True)
        param[0].grad = torch.ones(2)
        with pytest.raises(RuntimeError, match="fused=True needs contiguous float32"):
            optimizer.step()


# ---------------------------------------------------------------------------------------------
# Hyperparameter validation
# ---------------------------------------------------------------------------------------------
BAD_HYPERPARAMETERS = [
    (optim.SGD, dict(lr=-0.1), "lr"),
    (optim.SGD, dict(lr=float("nan")), "lr"),
    (optim.SGD, dict(momentum=-0.5), "momentum"),
    (optim.SGD, dict(momentum=1.5), "momentum"),
    (optim.SGD, dict(dampening=2.0), "dampening"),
    (optim.SGD, dict(weight_decay=-1e-4), "weight_decay"),
    (optim.SGD, dict(nesterov=True), "nesterov"),
    (optim.SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (optim.AdaGrad, dict(lr=-1.0), "lr"),
    (optim.AdaGrad, dict(eps=-1e-10), "eps"),
    (optim.AdaGrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (optim.RMSProp, dict(alpha=1.5), "alpha"),
    (optim.RMSProp, dict(alpha=-0.1), "alpha"),
    (optim.RMSProp, dict(weight_decay=-1.0), "weight_decay"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "beta1"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "beta2"),
    (optim.Adam, dict(betas=(0.9,)), "betas"),
    (optim.Adam, dict(eps=-1e-8), "eps"),
    (optim.AdamW, dict(lr=-1e-3), "lr"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.AdamW, dict(betas=(0.9, 1.0)), "beta2"),
]


@pytest.mark.parametrize(("cls", "kwargs", "name"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_value_error_naming_them(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls([nn.Parameter(torch.zeros(3))], **kwargs)


def test_bad_hyperparameter_in_a_parameter_group_is_caught():
    good, bad = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([{"params": [good]}, {"params": [bad], "lr": -1.0}], lr=0.1)
    optimizer = optim.Adam([good])
    with pytest.raises(ValueError, match="beta1"):
        optimizer.add_param_group({"params": [bad], "betas": (1.2, 0.9)})


def test_wrong_hyperparameter_type_raises_type_error():
    with pytest.raises(TypeError, match="lr"):
        optim.SGD([nn.Parameter(torch.zeros(2))], lr="0.1")
    with pytest.raises(TypeError, match="nesterov"):
        optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9, nesterov="yes")


# ---------------------------------------------------------------------------------------------
# Test surfaces and trajectories
# ---------------------------------------------------------------------------------------------
def test_surfaces_values_and_shapes():
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    values = optim.quadratic(points)  # 0.5 * (x^2 + 10 y^2)
    assert values.shape == (3,)
    torch.testing.assert_close(values, points.new_tensor([0.0, 5.5, 7.0]))
    torch.testing.assert_close(optim.quadratic(points, a=2.0, b=4.0)[1], points.new_tensor(3.0))
    torch.testing.assert_close(optim.rosenbrock(points), points.new_tensor([1.0, 0.0, 2501.0]))
    grid = torch.zeros(5, 7, 2)
    assert optim.rosenbrock(grid).shape == (5, 7)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        optim.quadratic(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="p must be"):
        optim.rosenbrock([1.0, 1.0])


def test_trajectory_shape_start_and_torch_optimizers_give_the_same_path():
    path = optim.run_trajectory(optim.quadratic, (-4.0, 1.0), optim.SGD, 50, lr=0.05, momentum=0.9)
    assert path.shape == (51, 2) and path.dtype == torch.float64
    torch.testing.assert_close(path[0], torch.tensor([-4.0, 1.0], dtype=torch.float64))
    twin = optim.run_trajectory(
        optim.quadratic, (-4.0, 1.0), torch.optim.SGD, 50, lr=0.05, momentum=0.9
    )
    torch.testing.assert_close(path, twin, rtol=0, atol=1e-12)
    path_adam = optim.run_trajectory(optim.rosenbrock, (-1.0, 2.0), optim.Adam, 30, lr=0.1)
    twin_adam = optim.run_trajectory(optim.rosenbrock, (-1.0, 2.0), torch.optim.Adam, 30, lr=0.1)
    torch.testing.assert_close(path_adam, twin_adam, rtol=0, atol=1e-12)
    assert optim.run_trajectory(optim.quadratic, (1.0, 1.0), optim.SGD, 0).shape == (1, 2)


def test_trajectory_validates_its_arguments():
    with pytest.raises(ValueError, match="start"):
        optim.run_trajectory(optim.quadratic, (1.0, 2.0, 3.0), optim.SGD, 5)
    with pytest.raises(ValueError, match="steps"):
        optim.run_trajectory(optim.quadratic, (1.0, 2.0), optim.SGD, -1)
    with pytest.raises(ValueError, match="scalar"):
        optim.run_trajectory(lambda p: p**2, (1.0, 2.0), optim.SGD, 3)


def test_plain_sgd_on_quadratic_follows_the_closed_form():
    # f = 0.5 (a x^2 + b y^2): each gradient step multiplies x by (1 - lr a), y by (1 - lr b).
    lr, steps = 0.05, 20
    path = optim.run_trajectory(optim.quadratic, (-4.0, 1.0), optim.SGD, steps, lr=lr)
    expected = torch.tensor(
        [-4.0 * (1 - lr) ** steps, (1 - lr * 10.0) ** steps], dtype=torch.float64
    )
    torch.testing.assert_close(path[-1], expected)


def test_momentum_reaches_the_quadratic_minimum_faster_than_plain_sgd():
    lr, steps, start = 0.02, 100, (-4.0, 1.0)
    sgd = optim.run_trajectory(optim.quadratic, start, optim.SGD, steps, lr=lr)
    momentum = optim.run_trajectory(optim.quadratic, start, optim.SGD, steps, lr=lr, momentum=0.9)
    nesterov = optim.run_trajectory(
        optim.quadratic, start, optim.SGD, steps, lr=lr, momentum=0.9, nesterov=True
    )
    distance_sgd = sgd[-1].norm().item()  # the minimum is at (0, 0)
    distance_momentum = momentum[-1].norm().item()
    # Plain SGD crawls along the flat x direction: x_100 = -4 * 0.98^100 = -0.53.
    assert distance_sgd == pytest.approx(4.0 * 0.98**100, rel=1e-6)
    assert distance_momentum < 0.1 * distance_sgd, (distance_momentum, distance_sgd)
    assert nesterov[-1].norm().item() < 0.1 * distance_sgd


def test_adam_first_step_is_lr_and_the_slide_formula_overshoots():
    lr, start = 0.01, (-4.0, 1.0)
    corrected = optim.run_trajectory(optim.quadratic, start, optim.Adam, 1, lr=lr)
    slide = optim.run_trajectory(
        optim.quadratic, start, optim.Adam, 1, lr=lr, bias_correction=False, eps=0.0
    )
    first_step = (corrected[1] - corrected[0]).abs()
    slide_step = (slide[1] - slide[0]).abs()
    # Bias-corrected: m_hat = g, v_hat = g^2, so every coordinate moves by lr (up to eps).
    torch.testing.assert_close(first_step, torch.full((2,), lr, dtype=torch.float64))
    # Slide (no correction): (1 - beta1) g / sqrt((1 - beta2) g^2) = 0.1 / sqrt(0.001) = 3.16 lr.
    factor = 0.1 / math.sqrt(0.001)
    torch.testing.assert_close(slide_step, torch.full((2,), factor * lr, dtype=torch.float64))
    # The uncorrected ratio keeps growing for the first steps (peak ~6.6x near t = 12).
    ten_steps = optim.run_trajectory(
        lambda p: p.sum(), (0.0, 0.0), optim.Adam, 10, lr=lr, bias_correction=False, eps=0.0
    )
    tenth_step = (ten_steps[10] - ten_steps[9]).abs()
    expected = (1 - 0.9**10) / math.sqrt(1 - 0.999**10) * lr
    torch.testing.assert_close(tenth_step, torch.full((2,), expected, dtype=torch.float64))


def test_adam_and_adagrad_steps_ignore_the_gradient_scale():
    start = (-4.0, 1.0)
    for cls in (optim.Adam, optim.AdaGrad):
        small = optim.run_trajectory(optim.quadratic, start, cls, 5, lr=0.1)
        large = optim.run_trajectory(lambda p: 1000.0 * optim.quadratic(p), start, cls, 5, lr=0.1)
        torch.testing.assert_close(small, large, rtol=1e-6, atol=1e-7)
        sgd_large = optim.run_trajectory(
            lambda p: 1000.0 * optim.quadratic(p), start, optim.SGD, 1, lr=0.1
        )
        assert not torch.allclose(sgd_large[1], small[1])


def test_adamw_decouples_weight_decay_from_the_adaptive_step():
    # A weight with no loss gradient: only weight decay acts on it.
    def no_gradient(p: torch.Tensor) -> torch.Tensor:
        return 0.0 * p.sum()

    lr, decay, start = 0.1, 0.01, (5.0, -2.0)
    adam_l2 = optim.run_trajectory(no_gradient, start, optim.Adam, 1, lr=lr, weight_decay=decay)
    adamw = optim.run_trajectory(no_gradient, start, optim.AdamW, 1, lr=lr, weight_decay=decay)
    # Adam + L2: the decay gradient lambda*theta is normalized away -> a full lr step to zero.
    torch.testing.assert_close(adam_l2[1], torch.tensor([4.9, -1.9], dtype=torch.float64))
    # AdamW: theta shrinks by the factor (1 - lr * lambda) = 0.999, whatever its gradients.
    torch.testing.assert_close(adamw[1], torch.tensor([4.995, -1.998], dtype=torch.float64))


def test_adam_minimizes_rosenbrock():
    path = optim.run_trajectory(optim.rosenbrock, (-1.5, 2.0), optim.Adam, 1500, lr=0.05)
    final = path[-1]
    assert optim.rosenbrock(final).item() < 1e-3
    assert (final - torch.tensor([1.0, 1.0], dtype=torch.float64)).norm() < 0.1
