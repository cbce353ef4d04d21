"""Devices, seeding and the training loop every notebook uses.

    DEVICE = get_device()          # COURSE_DEVICE, else cuda, mps, cpu
    FULL = full_run()              # COURSE_FULL=1: the full-size runs meant for a GPU
    seed_everything(0)
    history = fit(model, train_loader, val_loader, optimizer, epochs=10, patience=3)

Progress bars come from ``tqdm.auto`` (a widget in Jupyter, text on a terminal). tqdm writes
to stderr, and nbgrader scores a test cell 0 if it writes to stderr, so every bar here is
switched off while nbgrader runs a notebook (it sets ``NBGRADER_EXECUTION``).

**Keeping a GPU busy.** A GPU runs work queued by the CPU; the CPU only waits when it needs
a number back (``loss.item()``, ``float(t)``, printing a tensor). One such "host sync" per
batch makes the CPU wait for every batch to finish before it queues the next one, so the GPU
idles while Python prepares the next step. The loops here therefore add up each batch's loss
and correct predictions *on the device* and read them back once per epoch. Batches come from
pinned (page-locked) host memory when ``course_lib.data.make_loader`` sees a CUDA GPU, which
lets ``tensor.to("cuda", non_blocking=True)`` copy in the background. ``fit(amp=True)`` runs
the forward pass in bfloat16 (float16 with loss scaling where bfloat16 is missing) and
``fit(channels_last=True)`` stores images as ``(N, H, W, C)`` in memory, the layout GPU
convolution kernels prefer.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from course_lib._validate import check_int

if TYPE_CHECKING:
    from tqdm.auto import tqdm
EpochCallback = Callable[[int, "History"], None]

_DEVICE_TYPES = ("cpu", "cuda", "mps")


# ---------------------------------------------------------------------------------------------
# Environment: device, run size, seeds
# ---------------------------------------------------------------------------------------------
def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def _parse_device(name: str, source: str) -> torch.device:
    """Turn "cpu" / "cuda" / "cuda:1" / "mps" into a device that exists on this machine.

    ``source`` says where the name came from (for the error message). Unknown names raise
    ValueError, known devices this machine does not have raise RuntimeError.
    """
    expected = "expected 'cpu', 'cuda', 'cuda:<index>', 'mps' or 'auto'"
    try:
        device = torch.device(name.strip().lower())
    except (RuntimeError, ValueError):
        raise ValueError(f"{source}={name!r} is not a device name; {expected}") from None
    if device.type not in _DEVICE_TYPES:
        raise ValueError(f"{source}={name!r} is not a supported device; {expected}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RuntimeError(f"{source}={name!r} but PyTorch sees no CUDA GPU on this machine")
        if device.index is not None and device.index >= count:
            raise RuntimeError(f"{source}={name!r} but this machine has only {count} CUDA GPU(s)")
    if device.type == "mps" and not _mps_available():
        raise RuntimeError(f"{source}={name!r} but MPS (Apple GPU) is not available here")
    return device


def get_device(preferred: str | None = None) -> torch.device:
    """Pick the device to train on.

    Order: the ``COURSE_DEVICE`` environment variable (so an instructor or CI can force e.g.
    ``cpu`` without editing notebooks), else ``preferred``, else the best available of
    ``cuda``, ``mps``, ``cpu``. ``"auto"`` (or an empty variable) means "choose for me".

    Raises:
        ValueError: the name is not a device (``COURSE_DEVICE=gpu``).
        RuntimeError: the device is known but this machine does not have it.
    """
    from_env = os.environ.get("COURSE_DEVICE", "").strip()
    for name, source in ((from_env, "COURSE_DEVICE"), (preferred, "preferred")):
        if name is None:
            continue
        if not isinstance(name, str):
            raise TypeError(f"{source} must be a str such as 'cuda'; got {type(name).__name__}")
        if name.strip() and name.strip().lower() != "auto":
            return _parse_device(name, source)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def full_run() -> bool:
    """True when ``COURSE_FULL=1``: run the full-size experiments meant for a GPU.

    Unset, empty or ``0`` give the small default runs that finish on a laptop CPU in minutes.
    ``true``/``yes`` and ``false``/``no`` are accepted too; anything else raises ValueError
    rather than silently choosing one.
    """
    value = os.environ.get("COURSE_FULL", "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("", "0", "false", "no"):
        return False
    raise ValueError(f"COURSE_FULL must be 1 or 0; got {value!r}")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``.

    Two runs seeded alike draw the same initial weights, the same shuffles and the same
    dropout masks on the CPU. Some GPU kernels are nondeterministic even then (see
    ``torch.use_deterministic_algorithms``).
    """
    check_int(seed, "seed", 0)
    random.seed(seed)
    # The legacy global generator on purpose: it is the one np.random.rand / shuffle use.
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# ---------------------------------------------------------------------------------------------
# Metrics and history
# ---------------------------------------------------------------------------------------------
def _count_correct(logits: Tensor, targets: Tensor) -> int:
    return int((logits.argmax(dim=1) == targets).sum().item())


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Fraction of rows whose largest logit is at the target class.

    ``logits: (N, K)`` scores (or probabilities), ``targets: (N,)`` class indices in
    ``[0, K)``. Returns a Python float in [0, 1]; ties go to the first maximal class.
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("logits and targets must be torch.Tensors")
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, K); got shape {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be 1-D (N,) with N = {logits.shape[0]} to match logits "
            f"{tuple(logits.shape)}; got shape {tuple(targets.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("accuracy of an empty batch (N = 0) is undefined")
    if targets.is_floating_point():
        raise TypeError(f"targets must hold integer class indices; got {targets.dtype}")
    return _count_correct(logits, targets) / logits.shape[0]


@dataclass
class History:
    """Per-epoch averages recorded by :func:`fit`; entry ``i`` belongs to epoch ``i``.

    ``val_loss`` / ``val_acc`` stay empty when ``fit`` ran without a validation loader.
    ``best_epoch`` is the 0-based index of the lowest validation loss (None without one),
    so ``history.val_acc[history.best_epoch]`` is the accuracy of the weights that early
    stopping (``fit(..., patience=k)``) restores.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    best_epoch: int | None = None

    def __len__(self) -> int:
        """Number of epochs recorded."""
        return len(self.train_loss)


# ---------------------------------------------------------------------------------------------
# Progress bars
# ---------------------------------------------------------------------------------------------
def bars_enabled(progress: bool | None = True) -> bool:
    """True if progress bars should be drawn: ``progress`` is set and nbgrader is not running.

    nbgrader sets ``NBGRADER_EXECUTION`` while it executes notebooks; tqdm writes to stderr
    and a graded cell that writes to stderr scores 0, so the bars switch off by themselves.
    """
    return bool(progress) and not os.environ.get("NBGRADER_EXECUTION")


def progress_bar(iterable: Iterable, enabled: bool = True, **tqdm_kwargs: Any) -> tqdm:
    """``tqdm.auto.tqdm(iterable, ...)``, silent under nbgrader or when ``enabled`` is False.

    Returns the tqdm object (iterate over it; ``.set_postfix`` works even when disabled).
    """
    from tqdm.auto import tqdm  # imported here so that `import course_lib.train` stays cheap

    return tqdm(iterable, disable=not bars_enabled(enabled), **tqdm_kwargs)


# ---------------------------------------------------------------------------------------------
# One pass over the data
# ---------------------------------------------------------------------------------------------
def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _to_device(
    batch: object, device: torch.device, channels_last: bool = False
) -> tuple[Tensor, Tensor]:
    """Split a loader batch into ``(inputs, targets)`` on ``device``."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            "each batch must be a pair (inputs, targets) as a TensorDataset / image dataset "
            f"gives; got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    inputs, targets = batch
    # Host-to-GPU copies may overlap with compute (pinned memory); copies *to* the CPU must
    # not be asynchronous, or the CPU could read the tensor before it has arrived.
    non_blocking = device.type == "cuda"
    inputs = inputs.to(device, non_blocking=non_blocking)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets.to(device, non_blocking=non_blocking)


def _amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 (float32's exponent range: no loss scaling needed) unless the GPU lacks it."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    """``torch.autocast`` for ``device`` (a no-op context when ``amp`` is False)."""
    return torch.autocast(device.type, dtype=_amp_dtype(device), enabled=amp)


def _grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling, needed only for float16 (small gradients would round to zero)."""
    enabled = amp and _amp_dtype(device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)


class _Totals:
    """Sums of loss and correct predictions kept on the device: no host sync per batch."""

    def __init__(self, device: torch.device) -> None:
        # float64 where the device has it, so the sum matches adding Python floats
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss = torch.zeros((), dtype=dtype, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0  # a shape, known on the host

    def add(self, loss: Tensor, logits: Tensor, targets: Tensor) -> None:
        batch_size = targets.shape[0]
        self.loss += loss.detach().to(self.loss.dtype) * batch_size
        self.correct += (logits.detach().argmax(dim=1) == targets).sum()
        self.seen += batch_size

    def means(self) -> tuple[float, float]:
        """``(mean loss, accuracy)``: the one place the numbers come back to the host."""
        if self.seen == 0:
            raise ValueError("loader is empty: it yielded no samples")
        return self.loss.item() / self.seen, self.correct.item() / self.seen


def _check_loader(loader: object, name: str) -> None:
    if not isinstance(loader, Iterable):
        raise TypeError(
            f"{name} must be an iterable of (inputs, targets) batches, e.g. a DataLoader"
        )
    try:
        size = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return  # an iterable-style loader has no length; an empty one is caught after the pass
    if size == 0:
        raise ValueError(f"{name} is empty: it yields no batches (is the dataset empty?)")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device | str,
    progress: bool | None = None,
    amp: bool = False,
    channels_last: bool = False,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[float, float]:
    """One pass over ``loader`` in training mode: forward, loss, backward, optimizer step.

    Each batch ``(inputs, targets)`` is moved to ``device`` (the model must already be
    there). ``loss_fn`` must average over the batch, as ``nn.CrossEntropyLoss()`` does.
    ``progress=True`` shows a temporary (``leave=False``) bar over the batches. ``amp`` and
    ``channels_last`` are explained in :func:`fit`; ``scaler`` is the ``GradScaler`` that
    float16 training keeps from epoch to epoch (made here when None).

    Returns:
        ``(mean loss, accuracy)`` over all samples of the epoch, each batch weighted by its
        size (the last batch may be smaller). The sums stay on the device until the end.
    """
    _check_loader(loader, "loader")
    device = torch.device(device)
    scaler = _grad_scaler(device, amp) if scaler is None else scaler
    model.train()
    totals = _Totals(device)
    # (tqdm.auto starts an extra pass over the loader; without a bar, iterate it directly)
    batches = progress_bar(loader, leave=False, desc="batches") if progress else loader
    for batch in batches:
        inputs, targets = _to_device(batch, device, channels_last)
        optimizer.zero_grad()
        with _autocast(device, amp):
            logits = model(inputs)
            loss = loss_fn(logits, targets)
        scaler.scale(loss).backward()  # without float16, scale() and step() change nothing
        scaler.step(optimizer)
        scaler.update()
        totals.add(loss, logits, targets)
    return totals.means()


def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device | str,
    amp: bool = False,
    channels_last: bool = False,
) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``model`` on ``loader``, without gradients.

    Runs in eval mode (dropout off, batch norm uses its running statistics) and puts the
    model back into the mode it was in. Batches are weighted by their size; the sums stay on
    the device until the end (one host sync per call).
    """
    _check_loader(loader, "loader")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    totals = _Totals(device)
    with torch.no_grad():
        for batch in loader:
            inputs, targets = _to_device(batch, device, channels_last)
            with _autocast(device, amp):
                logits = model(inputs)
                loss = loss_fn(logits, targets)
            totals.add(loss, logits, targets)
    model.train(was_training)
    return totals.means()


# ---------------------------------------------------------------------------------------------
# The whole loop
# ---------------------------------------------------------------------------------------------
def _step_scheduler(scheduler: Any, monitored_loss: float) -> None:
    # ReduceLROnPlateau needs the metric it watches; every other scheduler steps blind.
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored_loss)
    else:
        scheduler.step()


def _copy_weights(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the state dict (on the model's device) to restore later."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _epoch_summary(history: History) -> dict[str, str]:
    summary = {"loss": f"{history.train_loss[-1]:.4f}", "acc": f"{history.train_acc[-1]:.3f}"}
    if history.val_loss:
        summary |= {
            "val_loss": f"{history.val_loss[-1]:.4f}",
            "val_acc": f"{history.val_acc[-1]:.3f}",
        }
    return summary


def _check_fit_arguments(
    train_loader: object, val_loader: object, epochs: object, patience: object
) -> None:
    check_int(epochs, "epochs", 1)
    if patience is not None:
        check_int(patience, "patience", 1)
        if val_loader is None:
            raise ValueError("patience (early stopping) needs a val_loader to watch")
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device | str | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    scheduler: Any = None,
    patience: int | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    batch_progress: bool = False,
    amp: bool = False,
    channels_last: bool = False,
) -> History:
    """Train for up to ``epochs`` epochs, evaluating on ``val_loader`` after each one.

    Per epoch: :func:`train_one_epoch`, then :func:`evaluate` on ``val_loader`` (skipped when
    it is None), then ``scheduler.step()`` (``step(val_loss)`` for ``ReduceLROnPlateau``), then
    ``on_epoch_end(epoch, history)`` with the 0-based epoch (e.g. to redraw a live plot),
    then the early-stopping check.

    Early stopping: with ``patience=k``, training stops once the validation loss has not
    improved on its best value for ``k`` epochs in a row, and the weights of the best epoch
    (lowest validation loss) are loaded back into ``model``. ``history.best_epoch`` is
    recorded whenever there is a validation loader.

    Args:
        model: any ``nn.Module`` that maps an input batch to logits ``(N, K)``.
        train_loader, val_loader: iterables of ``(inputs, targets)`` batches (DataLoaders).
        optimizer: built on ``model.parameters()``.
        epochs: maximum number of epochs, >= 1.
        device: where to train; the model is moved there. None: wherever the model is.
        loss_fn: defaults to ``nn.CrossEntropyLoss()``.
        scheduler: a learning-rate scheduler stepped once per epoch, or None.
        patience: early-stopping patience in epochs (>= 1), or None for no early stopping.
        progress: one ``tqdm.auto`` bar over the epochs, its postfix showing loss and
            accuracy. Off when False or while nbgrader runs (``NBGRADER_EXECUTION`` set).
        on_epoch_end: ``callback(epoch, history)`` after every epoch.
        batch_progress: also show a temporary bar over the batches of each epoch.
        amp: automatic mixed precision: the forward pass (and the loss) run under
            ``torch.autocast``, so matrix products and convolutions compute in bfloat16
            (half the memory traffic, and the GPU's tensor cores) while the weights, the
            optimizer and reductions stay in float32. A GPU without bfloat16 uses float16
            with a ``torch.amp.GradScaler`` (the loss is multiplied before ``backward`` so
            that small gradients survive float16, and divided back before the step).
        channels_last: store the model's 4-D weights and every 4-D input batch in the
            channels-last memory layout ``(N, H, W, C)`` (same shapes, other strides), which
            cuDNN's and the Triton kernels' convolutions read fastest on a GPU.

    Returns:
        The :class:`History` of per-epoch losses and accuracies.
    """
    _check_fit_arguments(train_loader, val_loader, epochs, patience)
    if device is None:
        device = _model_device(model)
    else:
        device = torch.device(device)
        model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    scaler = _grad_scaler(device, amp)  # one for the whole run: it adapts its scale

    history = History()
    best_val_loss, best_weights, epochs_without_improvement = math.inf, None, 0
    epoch_bar = progress_bar(range(epochs), enabled=progress, desc="epochs")
    for epoch in epoch_bar:
        train_loss, train_acc = train_one_epoch(
            model,
            train_loader,
            optimizer,
            loss_fn,
            device,
            progress=progress and batch_progress,
            amp=amp,
            channels_last=channels_last,
            scaler=scaler,
        )
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        if val_loader is not None:
            val_loss, val_acc = evaluate(model, val_loader, loss_fn, device, amp, channels_last)
            history.val_loss.append(val_loss)
            history.val_acc.append(val_acc)
            if val_loss < best_val_loss:  # a NaN loss never counts as an improvement
                best_val_loss, history.best_epoch, epochs_without_improvement = val_loss, epoch, 0
                if patience is not None:
                    best_weights = _copy_weights(model)
            else:
                epochs_without_improvement += 1
        if scheduler is not None:
            _step_scheduler(scheduler, history.val_loss[-1] if history.val_loss else train_loss)
        epoch_bar.set_postfix(_epoch_summary(history))
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
        if patience is not None and epochs_without_improvement >= patience:
            break
    epoch_bar.close()
    if best_weights is not None:
        model.load_state_dict(best_weights)
    return history
