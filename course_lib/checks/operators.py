"""forbid: did the graded call run the library's convolution, unfold, pooling, batch norm or
optimizer? Decided from what actually ran, so that no alias, dict or private entry point escapes.

Two recorders watch the ``with forbid(...)`` block:

- **operators**, at PyTorch's dispatcher: a ``TorchDispatchMode`` sees every ATen operator that
  runs on a tensor, whatever Python name led to it (``F.conv2d``, ``torch.conv3d``,
  ``torch._C._nn.im2col``, ``torch.ops.aten.convolution``, a function stored in a dict before
  the block, ``nn.Conv2d``, a ``grad_fn`` called by hand);
- **Python code**, with ``sys.setprofile``: a call event for every Python function that starts,
  matched by its code object (``torch.optim``'s functional ``adam`` and its private
  ``_single_tensor_adam``, ``course_lib.conv.conv2d``, ``torch.autograd.grad``), however the
  function object was reached.

Each target names what it stands for: ``"torch.nn.functional.conv2d"`` every convolution
operator (conv1d/2d/3d, transposed, the backends'), ``"torch.nn.functional.conv_transpose2d"``
the transposed convolutions and the convolution backward operators only (an ordinary
convolution, which a convolution's backward pass may use, stays allowed),
``"torch.Tensor.unfold"`` ``aten::unfold``,
``"torch.nn.functional.unfold"`` ``aten::im2col``, a max-pooling name every max-pooling operator,
a batch-norm name every normalization operator (batch, instance, layer, group norm), a
``torch.optim`` name the whole optimizer module (class, functional form, single-tensor / foreach
/ fused kernels), a ``course_lib`` or other Python name the code of that function (or class).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

from course_lib.checks.targets import resolve_target

__all__ = ["ForbiddenCallError", "forbid"]


class ForbiddenCallError(AssertionError):
    """A forbidden function or class was used; an ``AssertionError`` so a graded cell fails."""


# ATen operator families, by the operator's name (any namespace: aten, quantized, mkldnn, ...).
_OPERATOR_FAMILIES = {
    "convolution": re.compile(r"^(?!.*convert).*conv(?!ert)"),
    "im2col": re.compile(r"^im2col"),
    "col2im": re.compile(r"^col2im"),
    "unfold": re.compile(r"^unfold(_copy)?$"),
    "max pooling": re.compile(r"max_pool|max_unpool|adaptive_max_pool|fractional_max_pool"),
    "average pooling": re.compile(r"avg_pool"),
    "normalization": re.compile(r"batch_norm|instance_norm|layer_norm|group_norm"),
    # the operators that are a transposed convolution or a convolution's backward pass by name
    "transposed convolution": re.compile(
        r"^(?!.*convert).*(conv(?!ert).*(transpose|backward)|transpose.*conv(?!ert))"
    ),
}
# Operators that belong to a family only when an argument says so: `aten::convolution` (where
# F.conv2d and F.conv_transpose2d both end up) is a transposed convolution when `transposed` is
# true. family -> (operator names, the boolean argument).
_CONDITIONAL_FAMILIES = {
    "transposed convolution": (re.compile(r"^_?convolution(_overrideable)?$"), "transposed"),
}
# Which family a torch target stands for, by its (lower-case) last name; the first match wins.
_TARGET_FAMILIES = [
    (re.compile(r"conv_?transpose\d?d$"), "transposed convolution"),
    (re.compile(r"conv(olution|\d?d|_tbc)?$"), "convolution"),
    (re.compile(r"im2col$"), "im2col"),
    (re.compile(r"fold$"), "col2im"),
    (re.compile(r"(max_?pool|max_?unpool|maxunpool|fractional_?max_?pool)"), "max pooling"),
    (re.compile(r"(avg_?pool|lp_?pool)"), "average pooling"),
    (re.compile(r"(batch_?norm|instance_?norm|layer_?norm|group_?norm)"), "normalization"),
]


@dataclass(frozen=True)
class _Plan:
    """What the targets stand for: operator name -> target, code object -> target."""

    operators: types.MappingProxyType  # "aten::convolution" -> the targets standing for it
    # "aten::convolution" -> ((argument name, targets), ...): forbidden when that argument is true
    conditional: types.MappingProxyType
    code: types.MappingProxyType  # code object -> targets
    builtins: types.MappingProxyType  # id(builtin function) -> (targets, the builtin)


@functools.lru_cache(maxsize=1)
def _all_operator_names() -> tuple[str, ...]:
    import torch

    return tuple(sorted(torch._C._dispatch_get_all_op_names()))


def _families_of(target: str, owner: object, obj: object) -> set[str]:
    """The operator families a torch target stands for (none for course_lib or own code)."""
    if not target.startswith("torch."):
        return set()
    name = target.rsplit(".", 1)[-1].lower()
    if name == "unfold":
        import torch

        tensor_method = isinstance(owner, type) and issubclass(owner, torch.Tensor)
        return {"unfold" if tensor_method else "im2col"}
    return next(({family} for pattern, family in _TARGET_FAMILIES if pattern.search(name)), set())


def _operators(families: set[str]) -> set[str]:
    found = set()
    for qualified in _all_operator_names():
        base = qualified.split("::", 1)[-1].split(".")[0]
        if any(_OPERATOR_FAMILIES[family].search(base) for family in families):
            found.add(qualified.split(".")[0])
    return found


def _conditional_operators(families: set[str]) -> dict[str, str]:
    """Operator name -> the boolean argument that makes it one of ``families``."""
    found = {}
    for family in families & _CONDITIONAL_FAMILIES.keys():
        pattern, argument = _CONDITIONAL_FAMILIES[family]
        for qualified in _all_operator_names():
            if pattern.search(qualified.split("::", 1)[-1].split(".")[0]):
                found[qualified.split(".")[0]] = argument
    return found


def _unwrap_once(obj: object) -> object | None:
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    if isinstance(obj, property):
        return obj.fget
    if isinstance(obj, functools.partial):
        return obj.func
    if not isinstance(obj, type) and hasattr(obj, "__wrapped__"):
        return obj.__wrapped__
    return None


def _unwrap(obj: object) -> object:
    for _ in range(32):
        inner = _unwrap_once(obj)
        if inner is None:
            break
        obj = inner
    return obj


def _callers_in_module(module_name: str, helper: str) -> set[str]:
    """Qualified names of the functions and methods of a module whose code names ``helper``."""
    module = sys.modules.get(module_name)
    callers = set()
    for name, value in vars(module).items() if module else ():
        members = vars(value).items() if isinstance(value, type) else [(name, value)]
        for member_name, member in members:
            member = _unwrap(member)
            if (
                isinstance(member, types.FunctionType)
                and getattr(member, "__module__", None) == module_name
                and member_name != helper
                and helper in member.__code__.co_names
            ):
                callers.add(member.__code__.co_qualname)
    return callers


def _function_code(func: types.FunctionType, seen: set[int]) -> set[types.CodeType]:
    """The code of a Python function and of the private helpers only it calls.

    A function made by a factory (``boolean_dispatch``) shares its code with its siblings: its
    own code is left out and the functions in its closure stand for it. A private helper that
    other functions of the module call too (an argument check) is left out: running it does
    not mean running the target.
    """
    if id(func) in seen:
        return set()
    seen.add(id(func))
    codes: set[types.CodeType] = set()
    code = func.__code__
    if "<locals>" in code.co_qualname:
        for cell in func.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, types.FunctionType):
                codes |= _function_code(_unwrap(value), seen)
        return codes
    codes.add(code)
    for name in code.co_names:
        helper = func.__globals__.get(name)
        if (
            name.startswith("_")
            and isinstance(helper, types.FunctionType)
            and helper.__module__ == func.__module__
            and _callers_in_module(func.__module__, name) <= {code.co_qualname}
        ):
            codes |= _function_code(_unwrap(helper), seen)
    return codes


def _unwrap_chain(obj: object) -> list[object]:
    """``obj`` and every object it wraps (decorators' ``__wrapped__``, partials, descriptors)."""
    chain = [obj]
    while (inner := _unwrap_once(chain[-1])) is not None and len(chain) < 32:
        chain.append(inner)
    return chain


def _code_objects(obj: object) -> set[types.CodeType]:
    seen: set[int] = set()
    functions = [f for f in _unwrap_chain(obj) if isinstance(f, types.FunctionType)]
    if functions:
        # Every function of the chain counts (not only the innermost): a `__wrapped__` set on
        # a library function by someone else cannot lead the check away from its own code.
        return set().union(*(_function_code(function, seen) for function in functions))
    obj = _unwrap(obj)
    if isinstance(obj, type):
        codes = set()
        for member in vars(obj).values():
            member = _unwrap(member)
            if isinstance(member, types.FunctionType):
                codes |= _function_code(member, seen)
        return codes
    return set()


def _method_code(owner: object, attr: str, obj: object) -> set[types.CodeType]:
    """The code a target stands for. An inherited method (course_lib's ``Adam.step`` is the
    shared ``step`` of its base class) stands for the class's own methods too (Adam's update
    rule), and for the inherited code only when a base of the same module defines it (never
    for ``torch.optim.Optimizer`` or ``nn.Module`` code every subclass runs)."""
    if not (isinstance(owner, type) and isinstance(_unwrap(obj), types.FunctionType)):
        return _code_objects(obj)
    if attr in vars(owner):
        return _code_objects(obj)
    defining = next(cls for cls in owner.__mro__ if attr in vars(cls))
    codes = _code_objects(owner)
    if defining.__module__ == owner.__module__:
        codes |= _code_objects(obj)
    return codes


def _module_code(module_name: str) -> set[types.CodeType]:
    """Every function and method defined in a module (torch.optim.adam: Adam, adam, the
    single-tensor, foreach and fused kernels)."""
    module = sys.modules.get(module_name)
    codes: set[types.CodeType] = set()
    for value in vars(module).values() if module else ():
        if getattr(value, "__module__", None) == module_name:
            codes |= _code_objects(value)
    return codes


_OPTIMIZER_MODULE = re.compile(r"torch\.optim\.(?!optimizer$|lr_scheduler$)\w+")


def _module_name(obj: object) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    return module if isinstance(module, str) else None


def _optimizer_modules(owner: object, obj: object) -> set[str]:
    """The torch.optim modules an optimizer target stands for: its own, and those of the
    optimizers it builds on (AdamW runs Adam's step and functional adam)."""
    todo = [m for m in (_module_name(_unwrap(obj)), _module_name(owner)) if m]
    todo = [m for m in todo if _OPTIMIZER_MODULE.fullmatch(m)][:1]
    found: set[str] = set()
    while todo:
        module_name = todo.pop()
        if module_name in found or module_name not in sys.modules:
            continue
        found.add(module_name)
        for value in vars(sys.modules[module_name]).values():
            related = [value, *(value.__mro__[1:] if isinstance(value, type) else ())]
            for item in related:
                name = _module_name(item)
                if name and _OPTIMIZER_MODULE.fullmatch(name) and name not in found:
                    todo.append(name)
    return found


@functools.lru_cache(maxsize=64)
def _plan(targets: tuple[str, ...]) -> _Plan:
    operators: dict[str, tuple[str, ...]] = {}
    conditional: dict[str, dict[str, tuple[str, ...]]] = {}
    code: dict[types.CodeType, tuple[str, ...]] = {}
    builtin: dict[int, tuple[tuple[str, ...], object]] = {}

    def add(table: dict, key, target: str) -> None:
        if target not in table.get(key, ()):
            table[key] = (*table.get(key, ()), target)

    for target in targets:
        owner, attr, obj = resolve_target(target)
        families = _families_of(target, owner, obj)
        for name in _operators(families):
            add(operators, name, target)
        for name, argument in _conditional_operators(families).items():
            add(conditional.setdefault(name, {}), argument, target)
        codes = _method_code(owner, attr, obj)
        for optimizer_module in _optimizer_modules(owner, obj):
            codes |= _module_code(optimizer_module)
            algorithm = optimizer_module.rsplit(".", 1)[-1]
            for name in _all_operator_names():
                if re.fullmatch(rf"aten::_fused_{algorithm}_?", name.split(".")[0]):
                    add(operators, name.split(".")[0], target)
        for item in codes:
            add(code, item, target)
        plain = _unwrap(obj)
        if isinstance(plain, (types.BuiltinFunctionType, types.MethodDescriptorType)):
            previous = builtin.get(id(plain), ((), plain))[0]
            builtin[id(plain)] = (
                (*previous, target) if target not in previous else previous,
                plain,
            )
    return _Plan(
        types.MappingProxyType(operators),
        types.MappingProxyType(
            {name: tuple(by_argument.items()) for name, by_argument in conditional.items()}
        ),
        types.MappingProxyType(code),
        types.MappingProxyType(builtin),
    )


def _message(targets: tuple[str, ...], how: str) -> str:
    names = " / ".join(targets)
    return (
        f"{names} is not allowed in this exercise: the exercise asks you to write it yourself "
        f"from basic tensor operations (your code ran {how})."
    )


class _Hits:
    """What the block ran that it must not; the first one is the error message."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def record(self, targets: tuple[str, ...], how: str) -> ForbiddenCallError:
        message = _message(targets, how)
        if message not in self.messages:
            self.messages.append(message)
        return ForbiddenCallError(message)


@functools.lru_cache(maxsize=1)
def _operator_mode_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    class ForbiddenOperators(TorchDispatchMode):
        """Raise when an operator of the plan reaches the dispatcher; run all others."""

        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False  # no torch.compile wrapper around every operator call: 5x faster

        def __init__(self, plan: _Plan, hits: _Hits) -> None:
            super().__init__()
            self.plan, self.hits = plan, hits

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name
            targets = self.plan.operators.get(name)
            if targets is not None:
                raise self.hits.record(targets, f"the operator {name}")
            for argument, targets in self.plan.conditional.get(name, ()):
                if _argument(func, args, kwargs, argument) is True:
                    raise self.hits.record(targets, f"the operator {name} with {argument}=True")
            return func(*args, **(kwargs or {}))

    return ForbiddenOperators


def _argument(func, args: tuple, kwargs: dict | None, name: str) -> object:
    """The value of the operator argument ``name`` in this call (None when not given)."""
    if kwargs and name in kwargs:
        return kwargs[name]
    for index, argument in enumerate(func._schema.arguments):
        if argument.name == name:
            return args[index] if index < len(args) else None
    return None


def _operator_mode(plan: _Plan, hits: _Hits):
    return _operator_mode_class()(plan, hits)


@contextlib.contextmanager
def _watch_python_calls(plan: _Plan, hits: _Hits) -> Iterator[None]:
    """Report calls of the plan's Python code (and builtins) while the block runs. If the
    block replaced the profile function (a profiler of its own), the check could not see:
    that is reported as well, unless a forbidden call already ended the watch."""
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if event == "call":
            targets = plan.code.get(frame.f_code)
            if targets is not None:
                module = frame.f_globals.get("__name__", "?")
                raise hits.record(targets, f"{module}.{frame.f_code.co_qualname}")
        elif event == "c_call":
            entry = plan.builtins.get(id(arg))
            if entry is not None and entry[1] is arg:
                raise hits.record(entry[0], f"a call of {entry[0][0]}")
        if previous is not None:
            previous(frame, event, arg)

    sys.setprofile(profile)
    try:
        yield
        if sys.getprofile() is not profile and not hits.messages:
            raise ForbiddenCallError(
                "the code turned off the check of forbidden calls (it replaced the "
                "interpreter's profile function, e.g. with a profiler); remove that code"
            )
    finally:
        sys.setprofile(previous)


@contextlib.contextmanager
def forbid(*targets: str) -> Iterator[None]:
    """Inside the ``with`` block, running any of ``targets`` raises ``ForbiddenCallError``.

    Each target is a dotted name: a function (``"torch.nn.functional.conv2d"``,
    ``"torch.conv2d"``, ``"course_lib.conv.conv2d"``), a tensor method (``"torch.Tensor.unfold"``),
    a class (``"torch.optim.Adam"``, ``"torch.nn.Conv2d"``: creating or using one fails) or a
    method (``"torch.optim.Adam.step"``). What counts is what *runs* inside the block, recorded
    at PyTorch's dispatcher (the operator a torch target stands for: every convolution for
    ``F.conv2d``, the transposed convolutions and the convolution backward operators for
    ``F.conv_transpose2d``, ``aten::im2col`` for ``F.unfold``, every max-pooling operator for
    ``F.max_pool2d``, every normalization operator for ``F.batch_norm``) and as Python calls
    (the code of a Python function or class, matched by code object; a ``torch.optim`` name
    stands for its whole module: class, functional form and private kernels). So aliases made
    before the block (``from torch.nn.functional import conv2d as c``, a dict of functions,
    ``functools.partial``), other entry points of the same operator (``torch.conv3d``,
    ``torch._C._nn.im2col``, ``torch.ops.aten.convolution``) and private helpers
    (``_single_tensor_adam``) are all caught:

        with forbid("torch.nn.functional.conv2d", "torch.nn.functional.unfold"):
            out = student_conv2d(x, w)

    The error is raised at the forbidden call, and again when the block ends if the block
    caught it. Nothing is replaced or patched: the library is unchanged inside the block.
    Forbid only what the exercise asks students to write: PyTorch's own code that runs a
    forbidden operator fails as well (``nn.Conv2d`` runs a convolution). Routes that never reach
    PyTorch's dispatcher (numpy, scipy) are the submission policy's to refuse.
    """
    plan = _plan(tuple(targets))
    hits = _Hits()
    with contextlib.ExitStack() as stack:
        if plan.operators or plan.conditional:
            stack.enter_context(_operator_mode(plan, hits))
        if plan.code or plan.builtins:
            stack.enter_context(_watch_python_calls(plan, hits))
        try:
            yield
        except ForbiddenCallError:
            raise
        except BaseException as error:
            if hits.messages:
                raise ForbiddenCallError(hits.messages[0]) from error
            raise
    if hits.messages:
        raise ForbiddenCallError(hits.messages[0])
