"""Helpers for autograded tests: clear failure messages and forbidden calls.

Students read what these functions print when a graded cell fails, so every message says
what was checked, what was expected and what the code produced.

    assert_close      compare a result with the expected tensor (shapes, dtypes, largest difference)
    forbid            context manager: calling e.g. ``torch.nn.functional.conv2d`` inside it fails
    calls_in_source   the dotted names a function's source calls or references (AST)
    uses_any          which of some names a function's source uses (matched by suffix)
    refers_to_any     which of some objects a function's source refers to, aliases included
    own_code_uses     forbidden names or objects reached by a function or the notebook code it calls
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import importlib
import inspect
import numbers
import textwrap
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import torch

__all__ = [
    "ForbiddenCallError",
    "assert_close",
    "forbid",
    "calls_in_source",
    "uses_any",
    "refers_to_any",
]


# ----------------------------------------------------------------------------------------------
# assert_close
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# forbid
# ----------------------------------------------------------------------------------------------


class ForbiddenCallError(AssertionError):
    """A forbidden function or class was used; an ``AssertionError`` so a graded cell fails."""


_MISSING = object()


def _resolve_owner(target: str) -> tuple[object, str]:
    """Split ``"pkg.module.Owner.attr"`` into the object that holds ``attr`` and ``attr``.

    The longest importable prefix is the module; the rest is followed with ``getattr``
    (so ``"torch.Tensor.unfold"`` gives ``(torch.Tensor, "unfold")``).
    """
    parts = target.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"forbid() needs a dotted name like 'torch.conv2d'; got {target!r}")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for part in parts[split:-1]:
            if not hasattr(owner, part):
                raise ValueError(f"cannot forbid {target!r}: {owner!r} has no attribute {part!r}")
            owner = getattr(owner, part)
        if not hasattr(owner, parts[-1]):
            raise ValueError(f"cannot forbid {target!r}: it does not exist")
        return owner, parts[-1]
    raise ValueError(f"cannot forbid {target!r}: no importable module in that name")


def _forbidden_message(target: str) -> str:
    return (
        f"{target} is not allowed in this exercise: the exercise asks you to write it yourself "
        "from basic tensor operations."
    )


def _blocked_replacement(target: str, original: object) -> object:
    """A function (or, for a class, a subclass) that raises ``ForbiddenCallError`` when used."""
    message = _forbidden_message(target)

    if isinstance(original, type):
        # A subclass keeps `class X(Forbidden)` and type hints importable; creating one raises.
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
            raise ForbiddenCallError(message)

        try:
            return type(original.__name__, (original,), {"__new__": __new__, "__doc__": message})
        except TypeError:  # a final class (e.g. bool) cannot be subclassed: fall through
            pass

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise ForbiddenCallError(message)

    blocked.__name__ = getattr(original, "__name__", target.rsplit(".", 1)[-1])
    blocked.__qualname__ = blocked.__name__
    blocked.__doc__ = message
    return blocked


def _replace(owner: object, attr: str, value: object) -> None:
    if value is _MISSING:
        delattr(owner, attr)  # the attribute was inherited (Tensor.unfold lives on TensorBase)
    else:
        setattr(owner, attr, value)


@contextlib.contextmanager
def forbid(*targets: str) -> Iterator[None]:
    """Inside the ``with`` block, using any of ``targets`` raises ``ForbiddenCallError``.

    Each target is a dotted name: a function (``"torch.nn.functional.conv2d"``,
    ``"torch.conv2d"``, ``"course_lib.conv.conv2d"``), a tensor method
    (``"torch.Tensor.unfold"``: ``x.unfold(...)`` fails too) or a class (``"torch.optim.Adam"``:
    ``torch.optim.Adam(...)`` fails). The attribute is replaced on its owner (module or class)
    and every original is restored on exit, also when the block raises.

        with forbid("torch.nn.functional.conv2d", "torch.conv2d"):
            out = student_conv2d(x, w)

    What it cannot catch: names bound *before* the block, e.g. ``from torch.nn.functional
    import conv2d`` at the top of the notebook or ``my_conv = F.conv2d`` (the alias still points
    to the original), and C++ code calling the operator directly. ``torch.conv2d`` and
    ``F.conv2d`` are separate module attributes: forbid both. Check aliases statically with
    :func:`calls_in_source` / :func:`uses_any`. Forbid only what the exercise asks students to
    write: PyTorch's own code that uses a forbidden name fails as well (``nn.Conv2d`` calls
    ``F.conv2d``).
    """
    saved: list[tuple[object, str, object]] = []
    try:
        for target in targets:
            owner, attr = _resolve_owner(target)
            # Save the raw entry (not getattr): staticmethods, and "not defined here" for methods
            # inherited from a base class, come back exactly as they were.
            namespace = vars(owner) if isinstance(owner, (type, ModuleType)) else {}
            original_entry = namespace.get(attr, _MISSING)
            setattr(owner, attr, _blocked_replacement(target, getattr(owner, attr)))
            saved.append((owner, attr, original_entry))
        yield
    finally:
        for owner, attr, original_entry in reversed(saved):
            _replace(owner, attr, original_entry)


# ----------------------------------------------------------------------------------------------
# calls_in_source
# ----------------------------------------------------------------------------------------------


def _dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain; for ``expr.b.c`` (e.g. ``x.pad(1).unfold``) ``b.c``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts)) or None


def _source_of(obj: Callable | type) -> str:
    """Dedented source of a function or class; for a class, falls back to its methods' sources.

    Classes defined in a notebook cell have no source file (``inspect.getsource`` raises), but
    their methods do: IPython keeps each cell's code in ``linecache``.
    """
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        if not isinstance(obj, type):
            raise
    pieces = []
    for member in vars(obj).values():
        member = getattr(member, "__func__", member)  # staticmethod / classmethod
        if isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            pieces.append(textwrap.dedent(inspect.getsource(member)))
    if not pieces:
        raise OSError(f"could not find the source code of {obj!r}")
    return "\n".join(pieces)


class _NameCollector(ast.NodeVisitor):
    """Collect called names, referenced attribute chains and imported names."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted_name(node.func)
        if name:
            self.names.add(name)
        # getattr(F, "conv2d") is a call of F.conv2d in disguise.
        if (
            name == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            owner = _dotted_name(node.args[0])
            self.names.add(f"{owner}.{node.args[1].value}" if owner else node.args[1].value)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # Only the outermost chain: `torch.nn.functional.conv2d`, not also `torch.nn`.
        name = _dotted_name(node)
        if name and "." in name:
            self.names.add(name)
        inner = node.value
        while isinstance(inner, ast.Attribute):
            inner = inner.value
        self.visit(inner)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        self.names.update(f"{module}.{alias.name}".lstrip(".") for alias in node.names)


def calls_in_source(func: Callable | type) -> set[str]:
    """The dotted names that ``func``'s source code calls or references, found with ``ast``.

    Parses ``inspect.getsource(func)`` (dedented) and returns, e.g. for

        def my_conv(x, w):
            conv = F.conv2d                # an alias: caught as the reference "F.conv2d"
            return conv(x, w) + torch.zeros(1)

    ``{"F.conv2d", "conv", "torch.zeros"}``. Included are the names of all calls (``x.unfold``
    for a method call on ``x``; ``unfold`` alone when the object is an expression, as in
    ``x.pad(1).unfold(...)``), every dotted attribute chain referenced anywhere, names imported
    inside the function (``from torch.nn.functional import conv2d`` gives
    ``"torch.nn.functional.conv2d"``) and ``getattr(F, "conv2d")`` as ``"F.conv2d"``. Nested
    functions, lambdas and, for a class, all its methods are included. Works for functions
    defined in a notebook cell (IPython stores cell sources in ``linecache``).
    """
    tree = ast.parse(_source_of(func))
    collector = _NameCollector()
    collector.visit(tree)
    return collector.names


def _matches_suffix(found: str, wanted: str) -> bool:
    found_parts, wanted_parts = found.split("."), wanted.split(".")
    return found_parts[-len(wanted_parts) :] == wanted_parts


def uses_any(func: Callable | type, names: Iterable[str]) -> list[str]:
    """Which of ``names`` appear in ``calls_in_source(func)``, matched on whole dotted suffixes.

    ``"conv2d"`` matches ``"F.conv2d"``, ``"torch.conv2d"`` and ``"torch.nn.functional.conv2d"``
    (but not ``"my_conv2d"``); ``"functional.conv2d"`` matches only the last one. Returns the
    matching entries of ``names`` in their given order (empty list: none used). Typical use:

        assert not uses_any(conv2d, ["conv2d", "unfold"]), "write the convolution yourself"
    """
    found = calls_in_source(func)
    return [name for name in names if any(_matches_suffix(f, name) for f in found)]


def _namespace_of(obj: Callable | type) -> dict[str, Any]:
    """The global namespace in which ``obj``'s source names are looked up."""
    if isinstance(obj, type):
        # A class from a notebook cell: its methods' globals are the notebook's namespace.
        candidates = [getattr(member, "__func__", member) for member in vars(obj).values()]
    else:
        candidates = [inspect.unwrap(obj)]
    for candidate in candidates:
        if inspect.isfunction(candidate):
            return candidate.__globals__
    module = inspect.getmodule(obj)
    return vars(module) if module is not None else {}


def _lookup(name: str, namespace: dict[str, Any]) -> object:
    """What a dotted name means in ``namespace`` (then builtins), or ``_MISSING``."""
    first, *rest = name.split(".")
    if first in namespace:
        value = namespace[first]
    elif hasattr(builtins, first):
        value = getattr(builtins, first)
    else:
        return _MISSING
    for part in rest:
        try:
            value = inspect.getattr_static(value, part)
        except AttributeError:
            return _MISSING
    return value


def _resolve_targets(targets: Iterable[str]) -> dict[str, object]:
    """Dotted target -> the object it names; targets missing from the installed version are
    left out (nothing to catch)."""
    resolved: dict[str, object] = {}
    for target in targets:
        try:
            owner, attr = _resolve_owner(target)
        except ValueError:
            continue
        resolved[target] = inspect.getattr_static(owner, attr)
    return resolved


def refers_to_any(func: Callable | type, targets: Iterable[str]) -> list[str]:
    """Which of the dotted ``targets`` ``func``'s source refers to, following aliases.

    :func:`uses_any` matches names as written, so ``my_unfold = F.unfold`` (or ``from
    torch.nn.functional import unfold as my_unfold``) in an earlier notebook cell followed by
    ``my_unfold(x)`` inside the function goes unnoticed, and so does the alias at run time:
    :func:`forbid` replaces the module attribute, not the alias. This function looks up every
    name of :func:`calls_in_source` the way Python would when the function runs (first part in
    the function's globals, then builtins; the rest as attributes) and reports each target
    (``"torch.nn.functional.unfold"``, ``"course_lib.resnet.BasicBlock"``) that some name is the
    *same object* as. For a class, its base classes count as well (``class Block(R.BasicBlock)``).
    Names of local variables (``x.unfold``) cannot be resolved statically: combine with
    :func:`uses_any`. Targets that do not exist in the installed version are ignored.
    Returns the matching targets in their given order (empty list: none used).
    """
    targets = list(targets)
    wanted = _resolve_targets(targets)
    namespace = _namespace_of(func)
    referred = [_lookup(name, namespace) for name in calls_in_source(func)]
    if isinstance(func, type):
        referred.extend(func.__mro__[1:])
    used = {
        target
        for target, obj in wanted.items()
        if any(candidate is obj for candidate in referred if candidate is not _MISSING)
    }
    return [target for target in targets if target in used]


def _defined_in_notebook(obj: object) -> bool:
    """True for a function or class written in the notebook itself (module ``__main__``)."""
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == "__main__"


def own_code_uses(
    func: Callable | type, names: Iterable[str], targets: Iterable[str] = ()
) -> list[str]:
    """Forbidden ``names`` and ``targets`` used by ``func`` or by the notebook code it calls.

    A student's helper is *read*, not judged by its name: a helper called ``unfold`` that
    gathers windows by index arithmetic is fine, while ``conv = F.conv2d`` in an earlier cell,
    ``functools.partial(F.conv2d, ...)`` or a helper that calls ``F.conv2d`` are caught. Starting
    from ``func``, every name of :func:`calls_in_source` is looked up in the function's globals;
    functions and classes defined in the notebook are followed transitively, everything else is
    checked against ``names`` (whole dotted suffixes, as :func:`uses_any`) and against the
    objects the dotted ``targets`` resolve to (as :func:`refers_to_any`).

    Returns the sorted offending names (empty list: the code is the student's own). Typical use
    in a hidden test:

        assert not own_code_uses(conv2d_loops, ["conv2d", "unfold"], FORBIDDEN)
    """
    names, targets = list(names), list(targets)
    forbidden_objects = list(_resolve_targets(targets).values())
    found: set[str] = set()
    todo, seen = [func], set()
    while todo:
        code = todo.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        namespace = _namespace_of(code)
        for name in calls_in_source(code):
            obj = _lookup(name, namespace)
            while isinstance(obj, functools.partial):  # partial(F.conv2d, ...) is F.conv2d
                obj = obj.func
            if _defined_in_notebook(obj):
                todo.append(obj)  # the student's own code: read it instead of its name
                continue
            if any(obj is forbidden for forbidden in forbidden_objects):
                found.add(name)
            found.update(wanted for wanted in names if _matches_suffix(name, wanted))
        found.update(refers_to_any(code, targets))
    return sorted(found)
