"""course_lib.train: devices, seeding, accuracy, and the fit loop on tiny problems."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib import optim, train


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    # The tests set these themselves; the machine running them must not leak its own.
    for name in ("COURSE_DEVICE", "COURSE_FULL", "NBGRADER_EXECUTION"):
        monkeypatch.delenv(name, raising=False)


def blobs(n_per_class: int = 64, separation: float = 3.0, seed: int = 0) -> TensorDataset:
    """Two Gaussian blobs in 2-D centred at (+-separation, 0): linearly separable."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-separation, 0.0], [separation, 0.0]])
    labels = torch.arange(2).repeat_interleave(n_per_class)
    points = centres[labels] + 0.5 * torch.randn(2 * n_per_class, 2, generator=generator)
    return TensorDataset(points, labels)


def loaders(shuffle: bool = False, flip_val_labels: bool = False, batch_size: int = 16):
    train_set, val_set = blobs(seed=0), blobs(n_per_class=32, seed=1)
    if flip_val_labels:  # what the model learns makes the validation loss worse
        val_set = TensorDataset(val_set.tensors[0], 1 - val_set.tensors[1])
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=shuffle)
    return train_loader, DataLoader(val_set, batch_size=batch_size)


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))


# ---------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------
def test_accuracy_on_a_hand_made_example():
    logits = torch.tensor(
        [
            [2.0, 1.0, 0.0],  # predicts 0, target 0: right
            [0.0, 3.0, 1.0],  # predicts 1, target 1: right
            [1.0, 0.0, 0.5],  # predicts 0, target 2: wrong
            [0.0, 0.0, 1.0],  # predicts 2, target 2: right
        ]
    )
    targets = torch.tensor([0, 1, 2, 2])
    assert train.accuracy(logits, targets) == 0.75
    assert train.accuracy(logits, torch.tensor([1, 0, 1, 0])) == 0.0
    assert isinstance(train.accuracy(logits, targets), float)


def test_accuracy_rejects_bad_shapes():
    with pytest.raises(ValueError, match="targets"):
        train.accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        train.accuracy(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        train.accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        train.accuracy(torch.zeros(2, 3), torch.zeros(2))


# ---------------------------------------------------------------------------------------------
# get_device, full_run, seed_everything
# ---------------------------------------------------------------------------------------------
def test_get_device_picks_the_best_available_without_override():
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert train.get_device().type == expected
    assert train.get_device("auto").type == expected
    assert train.get_device("cpu") == torch.device("cpu")


def test_get_device_honours_course_device(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert train.get_device() == torch.device("cpu")
    # The environment variable overrides what the notebook asked for.
    assert train.get_device("cuda") == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", " CPU ")
    assert train.get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "")
    assert train.get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("garbage", ["gpu", "banana", "cuda:x", "meta", "xla"])
def test_get_device_rejects_garbage(monkeypatch, garbage):
    monkeypatch.setenv("COURSE_DEVICE", garbage)
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        train.get_device()


def test_get_device_rejects_a_device_this_machine_lacks(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda:99")
    with pytest.raises(RuntimeError, match="cuda:99"):
        train.get_device()
    monkeypatch.delenv("COURSE_DEVICE")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            train.get_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(RuntimeError, match="MPS"):
            train.get_device("mps")


def test_full_run(monkeypatch):
    assert train.full_run() is False
    for value, expected in [("1", True), ("true", True), ("0", False), ("", False)]:
        monkeypatch.setenv("COURSE_FULL", value)
        assert train.full_run() is expected, value
    monkeypatch.setenv("COURSE_FULL", "maybe")
    with pytest.raises(ValueError, match="COURSE_FULL"):
        train.full_run()


def test_seed_everything_makes_random_draws_repeat():
    def draws():
        # np.random.rand: the legacy global generator is what seed_everything must seed.
        return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()  # noqa: NPY002

    train.seed_everything(123)
    first = draws()
    train.seed_everything(123)
    assert draws() == first
    train.seed_everything(124)
    assert draws() != first
    with pytest.raises(ValueError, match="seed"):
        train.seed_everything(-1)


def test_seed_everything_makes_two_training_runs_identical():
    def run() -> tuple[train.History, list[torch.Tensor]]:
        train.seed_everything(7)
        model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 2))
        train_loader, val_loader = loaders(shuffle=True)  # shuffling and dropout are random
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        history = train.fit(model, train_loader, val_loader, optimizer, epochs=3, progress=False)
        return history, [p.detach().clone() for p in model.parameters()]

    (history_a, weights_a), (history_b, weights_b) = run(), run()
    assert history_a == history_b
    for a, b in zip(weights_a, weights_b, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# train_one_epoch, evaluate, fit
# ---------------------------------------------------------------------------------------------
def test_fit_reaches_high_accuracy_on_a_separable_problem(device):
    torch.manual_seed(0)
    model = tiny_mlp().to(device)
    train_loader, val_loader = loaders(shuffle=True)  # batches stay on the CPU: fit moves them
    optimizer = optim.Adam(model.parameters(), lr=0.05)
    history = train.fit(model, train_loader, val_loader, optimizer, epochs=8, progress=False)

    assert len(history) == 8
    for values in (history.train_loss, history.train_acc, history.val_loss, history.val_acc):
        assert len(values) == 8 and all(isinstance(v, float) for v in values)
    assert history.val_acc[-1] >= 0.95 and history.train_acc[-1] >= 0.95
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_loss[history.best_epoch] == min(history.val_loss)
    assert next(model.parameters()).device.type == device.type
    # evaluate agrees with the last recorded epoch (no early stopping: weights unchanged).
    loss, acc = train.evaluate(model, val_loader, nn.CrossEntropyLoss(), device)
    assert loss == pytest.approx(history.val_loss[-1]) and acc == history.val_acc[-1]


def test_fit_moves_a_cpu_model_to_the_requested_device(device):
    model = tiny_mlp()
    train_loader, val_loader = loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, train_loader, val_loader, optimizer, epochs=1, device=device, progress=False)
    assert next(model.parameters()).device.type == device.type


def test_train_one_epoch_returns_sample_weighted_averages():
    # 10 samples in batches of 4, 4, 2: the mean must weight the short last batch by its size.
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(10, 2), torch.randint(0, 2, (10,)))
    model = tiny_mlp()
    frozen = optim.SGD(model.parameters(), lr=0.0)  # lr 0: the loss is that of fixed weights
    loss, acc = train.train_one_epoch(
        model, DataLoader(data, batch_size=4), frozen, nn.CrossEntropyLoss(), "cpu"
    )
    with torch.no_grad():
        logits = model(data.tensors[0])
        expected_loss = nn.functional.cross_entropy(logits, data.tensors[1]).item()
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert acc == train.accuracy(logits, data.tensors[1])
    assert model.training


def test_evaluate_restores_mode_and_does_not_touch_weights():
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    before = [p.detach().clone() for p in model.parameters()]
    _, val_loader = loaders()
    model.train()
    first = train.evaluate(model, val_loader, nn.CrossEntropyLoss(), "cpu")
    assert model.training  # back in the mode it was in
    second = train.evaluate(model, val_loader, nn.CrossEntropyLoss(), "cpu")
    assert first == second  # dropout was off: eval mode is deterministic
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_early_stopping_stops_and_restores_the_best_weights():
    torch.manual_seed(0)
    model = tiny_mlp()
    train_loader, val_loader = loaders(flip_val_labels=True)
    optimizer = optim.Adam(model.parameters(), lr=0.02)
    snapshots: list[dict[str, torch.Tensor]] = []
    calls: list[tuple[int, int]] = []

    def remember(epoch: int, history: train.History) -> None:
        calls.append((epoch, len(history.val_loss)))
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    patience, max_epochs = 2, 20
    history = train.fit(
        model,
        train_loader,
        val_loader,
        optimizer,
        epochs=max_epochs,
        patience=patience,
        progress=False,
        on_epoch_end=remember,
    )
    epochs_run = len(history)
    assert epochs_run < max_epochs, "the validation loss only gets worse: training must stop"
    assert epochs_run == history.best_epoch + patience + 1
    assert history.val_loss[history.best_epoch] == min(history.val_loss)
    assert calls == [(epoch, epoch + 1) for epoch in range(epochs_run)]
    # The model holds the weights of the best epoch, not those of the last one.
    best = snapshots[history.best_epoch]
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[name]), name
    assert not torch.equal(snapshots[-1]["0.weight"], best["0.weight"])
    loss, _ = train.evaluate(model, val_loader, nn.CrossEntropyLoss(), "cpu")
    assert loss == pytest.approx(history.val_loss[history.best_epoch])


def test_fit_steps_the_scheduler_once_per_epoch():
    model = tiny_mlp()
    train_loader, val_loader = loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train.fit(model, train_loader, val_loader, optimizer, 3, scheduler=scheduler, progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)

    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.1)
    train_loader, val_loader = loaders(flip_val_labels=True)  # val loss rises: lr must drop
    before = optimizer.param_groups[0]["lr"]
    train.fit(model, train_loader, val_loader, optimizer, 3, scheduler=plateau, progress=False)
    assert optimizer.param_groups[0]["lr"] < before


def test_fit_without_validation_loader():
    model = tiny_mlp()
    train_loader, _ = loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    history = train.fit(model, train_loader, None, optimizer, epochs=2, progress=False)
    assert len(history.train_loss) == 2 and history.val_loss == [] and history.best_epoch is None


# ---------------------------------------------------------------------------------------------
# Progress bars and nbgrader
# ---------------------------------------------------------------------------------------------
def _fit_with_bars() -> None:
    model = tiny_mlp()
    train_loader, val_loader = loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, train_loader, val_loader, optimizer, 2, progress=True, batch_progress=True)


def test_progress_bars_write_to_stderr_normally(capfd):
    _fit_with_bars()
    err = capfd.readouterr().err
    assert "epochs" in err and "val_loss" in err  # the bar and its postfix


def test_progress_bars_are_silent_under_nbgrader(monkeypatch, capfd):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    _fit_with_bars()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_false_is_silent(capfd):
    model = tiny_mlp()
    train_loader, val_loader = loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    train.fit(model, train_loader, val_loader, optimizer, 2, progress=False, batch_progress=True)
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------------------------------------
# GPU-friendly loops: no host sync per batch, mixed precision, channels_last
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def host_reads(monkeypatch):
    """Count every way a tensor's value can come back to Python (each is a GPU sync)."""
    counts = {"calls": 0}
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            counts["calls"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counts


@pytest.mark.parametrize("batch_size", [4, 16])
def test_loops_read_values_back_once_per_epoch_not_per_batch(host_reads, batch_size):
    model = tiny_mlp()
    train_loader, val_loader = loaders(batch_size=batch_size)
    optimizer = optim.SGD(model.parameters(), lr=0.1, foreach=True)
    host_reads["calls"] = 0
    for _ in train_loader:  # the DataLoader itself draws a seed per pass (CPU only)
        pass
    per_pass = host_reads["calls"]
    host_reads["calls"] = 0
    train.train_one_epoch(model, train_loader, optimizer, nn.CrossEntropyLoss(), "cpu")
    assert host_reads["calls"] == per_pass + 2  # the loss sum and the correct count, at the end
    host_reads["calls"] = 0
    train.evaluate(model, val_loader, nn.CrossEntropyLoss(), "cpu")
    assert host_reads["calls"] == per_pass + 2


def conv_net() -> nn.Module:
    from course_lib.conv import Conv2d
    from course_lib.norm import BatchNorm2d

    return nn.Sequential(
        Conv2d(1, 4, 3, padding=1),
        BatchNorm2d(4),
        nn.ReLU(),
        Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 2),
    )


def image_loaders() -> tuple[DataLoader, DataLoader]:
    """Bright-left vs bright-right 4x4 images."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(48)
    images = 0.3 * torch.randn(96, 1, 4, 4, generator=generator)
    images[labels == 0, :, :, :2] += 1.0
    images[labels == 1, :, :, 2:] += 1.0
    data = TensorDataset(images, labels)
    return DataLoader(data, batch_size=16, shuffle=False), DataLoader(data, batch_size=32)


def fit_conv_net(
    optimizer_cls, lr: float, epochs: int, **options
) -> tuple[nn.Module, train.History]:
    torch.manual_seed(0)
    model = conv_net()
    train_loader, val_loader = image_loaders()
    optimizer = optimizer_cls(model.parameters(), lr=lr)
    history = train.fit(
        model, train_loader, val_loader, optimizer, epochs, progress=False, **options
    )
    return model, history


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fit_with_mixed_precision_and_channels_last(amp, channels_last):
    model, history = fit_conv_net(optim.Adam, 0.02, 4, amp=amp, channels_last=channels_last)
    assert history.val_acc[-1] >= 0.95
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    conv_weight = model[3].weight  # (4, 4, 3, 3): the two layouts differ
    assert conv_weight.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_amp_and_channels_last_change_little():
    results = [
        fit_conv_net(optim.SGD, 0.05, 2, amp=amp, channels_last=channels_last)[1].train_loss
        for amp, channels_last in [(False, False), (False, True), (True, False)]
    ]
    reference, same_math, bfloat16 = results
    assert reference == pytest.approx(same_math, rel=1e-5)  # only the memory layout changed
    assert reference == pytest.approx(bfloat16, rel=0.05)  # 8-bit mantissas in the products
    assert reference != bfloat16


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------
def test_fit_validates_its_arguments():
    model = tiny_mlp()
    train_loader, val_loader = loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    empty = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, train_loader, val_loader, optimizer, epochs=0)
    with pytest.raises(TypeError, match="epochs"):
        train.fit(model, train_loader, val_loader, optimizer, epochs=2.5)
    with pytest.raises(ValueError, match="train_loader is empty"):
        train.fit(model, empty, val_loader, optimizer, epochs=1)
    with pytest.raises(ValueError, match="val_loader is empty"):
        train.fit(model, train_loader, empty, optimizer, epochs=1)
    with pytest.raises(ValueError, match="patience"):
        train.fit(model, train_loader, val_loader, optimizer, epochs=3, patience=0)
    with pytest.raises(ValueError, match="patience.*val_loader"):
        train.fit(model, train_loader, None, optimizer, epochs=3, patience=2)
    with pytest.raises(TypeError, match="pair"):
        bad = [(torch.zeros(2, 2),)]  # batches without targets
        train.train_one_epoch(model, bad, optimizer, nn.CrossEntropyLoss(), "cpu")
