"""assert_close: compare a student's result with the expected tensor, with a message that says
what was checked, what was expected and what the code produced (shapes, dtypes, the largest
difference and where it is)."""

from __future__ import annotations

import numbers

import torch

__all__ = ["assert_close"]


def _describe(value: object) -> str:
    """A short description of a value for error messages: type, and shape for array-likes."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    shape = getattr(value, "shape", None)
    kind = f"{type(value).__module__}.{type(value).__name__}".removeprefix("builtins.")
    if shape is not None:
        return f"a {kind} of shape {tuple(shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {kind} of length {len(value)}"
    return f"a {kind} ({value!r})" if isinstance(value, numbers.Number) else f"a {kind}"


def _non_tensor_message(actual: object, expected: torch.Tensor, name: str) -> str:
    wanted = f"a torch.Tensor of shape {tuple(expected.shape)} and dtype {expected.dtype}"
    if actual is None:
        return (
            f"{name} is None, but {wanted} was expected. "
            "Did the function forget to `return` its result?"
        )
    hint = ""
    if type(actual).__module__ == "numpy":
        hint = " Stay in PyTorch (torch operations instead of numpy), or use torch.from_numpy."
    elif isinstance(actual, (list, tuple)):
        hint = " Build the result as a tensor (torch.stack / torch.cat / a preallocated tensor)."
    return f"{name} is {_describe(actual)}, but {wanted} was expected.{hint}"


def _as_expected_tensor(expected: object) -> torch.Tensor:
    if isinstance(expected, torch.Tensor):
        return expected
    return torch.as_tensor(expected)


def _worst_difference(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, tuple, int]:
    """Largest |actual - expected| (NaN where only one side is NaN), its index, #NaN mismatches."""
    a = actual.detach().cpu().to(torch.float64)
    e = expected.detach().cpu().to(torch.float64)
    diff = (a - e).abs()
    both_nan = a.isnan() & e.isnan()
    same_inf = torch.isinf(a) & (a == e)
    diff = torch.where(both_nan | same_inf, torch.zeros_like(diff), diff)
    nan_mismatch = diff.isnan()
    # A NaN on one side only is the worst possible difference: point at it first.
    ranked = torch.where(nan_mismatch, torch.full_like(diff, float("inf")), diff)
    flat_index = int(ranked.flatten().argmax()) if ranked.numel() else 0
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), diff.shape))
    worst = float(diff.flatten()[flat_index]) if diff.numel() else 0.0
    return worst, index, int(nan_mismatch.sum())


def assert_close(
    actual: object,
    expected: object,
    name: str = "result",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    check_dtype: bool = True,
) -> None:
    """Raise ``AssertionError`` with a helpful message unless ``actual`` matches ``expected``.

    Element-wise test, as ``torch.isclose``:  ``|actual - expected| <= atol + rtol * |expected|``
    (NaN equals NaN). Before the values, the check compares in order: is ``actual`` a tensor at
    all (``None`` usually means a missing ``return``), the shapes, the dtypes (float64 inputs
    should give float64 results, so ``check_dtype=True`` by default) and the devices.
    A plain number ``expected`` (e.g. an accuracy) also accepts a plain number ``actual``.

    The message names the result, expected vs got shapes and dtypes, how many elements differ,
    and the largest absolute difference with its index and the two values there.
    """
    expected_is_number = isinstance(expected, numbers.Number)
    expected_t = _as_expected_tensor(expected)
    if isinstance(actual, numbers.Number) and expected_is_number:
        actual = torch.as_tensor(actual, dtype=torch.float64)
        expected_t = expected_t.to(torch.float64)
        check_dtype = False
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(_non_tensor_message(actual, expected_t, name))

    got_shape, want_shape = tuple(actual.shape), tuple(expected_t.shape)
    if got_shape != want_shape:
        raise AssertionError(
            f"{name} has the wrong shape: expected {want_shape}, got {got_shape} "
            f"(dtype: expected {expected_t.dtype}, got {actual.dtype})."
        )
    if check_dtype and not expected_is_number and actual.dtype != expected_t.dtype:
        raise AssertionError(
            f"{name} has the wrong dtype: expected {expected_t.dtype}, got {actual.dtype} "
            f"(shape {got_shape}). Create new tensors with the input's dtype, "
            "e.g. x.new_zeros(...) or torch.zeros(..., dtype=x.dtype)."
        )
    if not expected_is_number and actual.device != expected_t.device:
        raise AssertionError(
            f"{name} is on device {actual.device} but the expected result is on "
            f"{expected_t.device}. Create new tensors on the input's device (device=x.device)."
        )

    a = actual.detach().to(torch.float64) if actual.dtype != torch.float64 else actual.detach()
    e = expected_t.detach().to(device=a.device, dtype=torch.float64)
    close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return
    if expected_is_number:
        raise AssertionError(
            f"{name} is {float(a):.6g}, expected {float(e):.6g} "
            f"(difference {abs(float(a) - float(e)):.3g}; atol={atol:g}, rtol={rtol:g})."
        )
    worst, index, nan_count = _worst_difference(a, e)
    where = f" at index {index}" if index else ""
    got_value, want_value = float(a[index]), float(e[index])
    nan_note = f" ({nan_count} NaN where a number was expected or vice versa)" if nan_count else ""
    raise AssertionError(
        f"{name} does not match the expected values: {int((~close).sum())} of {close.numel()} "
        f"elements differ (atol={atol:g}, rtol={rtol:g}){nan_note}.\n"
        f"  largest absolute difference: {worst:.6g}{where}: "
        f"got {got_value:.6g}, expected {want_value:.6g}\n"
        f"  shape {got_shape}; dtype: expected {expected_t.dtype}, got {actual.dtype}"
    )
