"""Read a student's function: which names its source uses, and which library objects they are.

These checks give clear messages ("conv2d_loops uses F.conv2d") before a hidden test runs the
code; what actually ran is decided by :func:`course_lib.checks.forbid` at run time.

    calls_in_source   the dotted names a function's source calls or references (AST)
    uses_any          which of some names a function's source uses (matched by suffix)
    refers_to_any     which of some objects a function's source refers to, aliases included
    own_code_uses     forbidden names or objects reached by a function or the notebook code it calls

Names are read with Python's scoping: a name bound inside the function (a parameter, a local
variable, a nested helper function or a lambda) is judged by what it is bound to and by what
the helper's body calls, never by its own name: a nested helper called ``corr2d`` or
``unfold`` that multiplies and sums is fine.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from course_lib.checks.targets import MISSING, import_dotted, resolve_targets

__all__ = ["calls_in_source", "uses_any", "refers_to_any", "own_code_uses"]

GLOBAL, LOCAL, IMPORT = "global", "local", "import"


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


def _bound_names(node: ast.AST) -> set[str]:
    """Names a function, lambda or comprehension binds locally (not its nested scopes')."""
    bound: set[str] = set()
    declared_global: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        bound.update(param.arg for param in params if param is not None)
        body = node.body if isinstance(node.body, list) else [node.body]
    else:  # a comprehension: its targets
        body = [generator.target for generator in node.generators]

    def walk(child: ast.AST) -> None:
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(child.name)
            return
        if isinstance(child, ast.Lambda):
            return
        if isinstance(child, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            for inner in ast.walk(child):  # walrus targets bind in the enclosing function
                if isinstance(inner, ast.NamedExpr):
                    bound.add(inner.target.id)
            return
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            bound.add(child.id)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            for alias in child.names:
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(child, ast.ExceptHandler) and child.name:
            bound.add(child.name)
        elif isinstance(child, ast.Global):
            declared_global.update(child.names)
        for grandchild in ast.iter_child_nodes(child):
            walk(grandchild)

    for statement in body:
        walk(statement)
    return bound - declared_global


class _NameCollector(ast.NodeVisitor):
    """Collect called names, referenced attribute chains and imported names, each with what
    its first part is: a global of the notebook, a local of the function, or an import."""

    def __init__(self) -> None:
        self.found: set[tuple[str, str]] = set()
        self._locals: list[set[str]] = []

    def _add(self, name: str) -> None:
        root = name.split(".")[0]
        local = any(root in scope for scope in self._locals)
        self.found.add((name, LOCAL if local else GLOBAL))

    def _scoped(self, node: ast.AST, parts: Iterable[ast.AST]) -> None:
        self._locals.append(_bound_names(node))
        for part in parts:
            self.visit(part)
        self._locals.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        outer = [*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d)]
        for part in outer:  # evaluated where the function is defined
            self.visit(part)
        self._scoped(node, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for part in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
            self.visit(part)
        self._scoped(node, [node.body])

    def _visit_comprehension(self, node: ast.AST) -> None:
        self.visit(node.generators[0].iter)
        parts: list[ast.AST] = []
        for index, generator in enumerate(node.generators):
            parts += [generator.iter] if index else []
            parts += generator.ifs
        parts += [getattr(node, name) for name in ("elt", "key", "value") if hasattr(node, name)]
        self._scoped(node, parts)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _visit_comprehension

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted_name(node.func)
        if name:
            self._add(name)
        # getattr(F, "conv2d") is a call of F.conv2d in disguise.
        if (
            name == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            owner = _dotted_name(node.args[0])
            self._add(f"{owner}.{node.args[1].value}" if owner else node.args[1].value)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # Only the outermost chain: `torch.nn.functional.conv2d`, not also `torch.nn`.
        name = _dotted_name(node)
        if name and "." in name:
            self._add(name)
        inner = node.value
        while isinstance(inner, ast.Attribute):
            inner = inner.value
        self.visit(inner)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update((alias.name, IMPORT) for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            self.found.add((f"{module}.{alias.name}".lstrip("."), IMPORT))


def _names_with_scope(func: Callable | type) -> set[tuple[str, str]]:
    collector = _NameCollector()
    collector.visit(ast.parse(_source_of(func)))
    return collector.found


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
    return {name for name, _ in _names_with_scope(func)}


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
    """What a dotted name means in ``namespace`` (then builtins), or ``MISSING``."""
    first, *rest = name.split(".")
    if first in namespace:
        value = namespace[first]
    elif hasattr(builtins, first):
        value = getattr(builtins, first)
    else:
        return MISSING
    for part in rest:
        try:
            value = inspect.getattr_static(value, part)
        except AttributeError:
            return MISSING
    return value


def _meaning(name: str, kind: str, namespace: dict[str, Any]) -> object:
    """The object a name found in a source stands for (MISSING: a local, or unknown)."""
    if kind == IMPORT:
        return import_dotted(name)
    if kind == GLOBAL:
        return _lookup(name, namespace)
    return MISSING


def refers_to_any(func: Callable | type, targets: Iterable[str]) -> list[str]:
    """Which of the dotted ``targets`` ``func``'s source refers to, following aliases.

    :func:`uses_any` matches names as written, so ``my_unfold = F.unfold`` (or ``from
    torch.nn.functional import unfold as my_unfold``) in an earlier notebook cell followed by
    ``my_unfold(x)`` inside the function goes unnoticed. This function looks up every global
    name of :func:`calls_in_source` the way Python would when the function runs (first part in
    the function's globals, then builtins; the rest as attributes), resolves names imported
    inside the function, and reports each target (``"torch.nn.functional.unfold"``,
    ``"course_lib.resnet.BasicBlock"``) that some name is the *same object* as. For a class,
    its base classes count as well (``class Block(R.BasicBlock)``). Local variables
    (``x.unfold``) cannot be resolved statically: combine with :func:`uses_any`, and rely on
    :func:`course_lib.checks.forbid` for what actually runs. Targets that do not exist in the
    installed version are ignored. Returns the matching targets in their given order.
    """
    targets = list(targets)
    wanted = resolve_targets(targets)
    namespace = _namespace_of(func)
    referred = [_meaning(name, kind, namespace) for name, kind in _names_with_scope(func)]
    if isinstance(func, type):
        referred.extend(func.__mro__[1:])
    used = {
        target
        for target, obj in wanted.items()
        if any(candidate is obj for candidate in referred if candidate is not MISSING)
    }
    return [target for target in targets if target in used]


def _defined_in_notebook(obj: object) -> bool:
    """True for a function or class written in the notebook itself (module ``__main__``)."""
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == "__main__"


def _own_methods(code: Callable | type) -> set[str]:
    """Methods a notebook class defines (``self.unfold(...)`` then means the student's own)."""
    if not isinstance(code, type):
        return set()
    return {
        name
        for cls in code.__mro__
        if _defined_in_notebook(cls)
        for name, member in vars(cls).items()
        if inspect.isfunction(getattr(member, "__func__", member))
    }


def own_code_uses(
    func: Callable | type, names: Iterable[str], targets: Iterable[str] = ()
) -> list[str]:
    """Forbidden ``names`` and ``targets`` used by ``func`` or by the notebook code it calls.

    A student's helper is *read*, not judged by its name: a helper called ``unfold`` (global,
    nested inside the function, or a lambda) that gathers windows by index arithmetic is fine,
    while ``conv = F.conv2d`` in an earlier cell, ``functools.partial(F.conv2d, ...)``, a helper
    that calls ``F.conv2d`` or ``from torch.nn.functional import conv2d`` inside the function
    are caught. Starting from ``func``, every global name of :func:`calls_in_source` is looked
    up in the function's globals; functions and classes defined in the notebook are followed
    transitively, everything else is checked against ``names`` (whole dotted suffixes, as
    :func:`uses_any`) and against the objects the dotted ``targets`` resolve to (as
    :func:`refers_to_any`). A name local to the function (a parameter, a variable, a nested
    helper) is judged by what it is bound to: only its attributes (``x.unfold``) are matched.

    Returns the sorted offending names (empty list: the code is the student's own). Typical use
    in a hidden test:

        assert not own_code_uses(conv2d_loops, ["conv2d", "unfold"], FORBIDDEN)
    """
    names, targets = list(names), list(targets)
    forbidden_objects = list(resolve_targets(targets).values())
    found: set[str] = set()
    todo, seen = [func], set()
    while todo:
        code = todo.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        namespace = _namespace_of(code)
        own_methods = _own_methods(code)
        for name, kind in _names_with_scope(code):
            if kind == LOCAL:
                root, _, attribute = name.partition(".")
                if not attribute or attribute in own_methods:
                    continue  # a local helper or variable: judged by what it is bound to
                found.update(wanted for wanted in names if _matches_suffix(attribute, wanted))
                continue
            obj = _meaning(name, kind, namespace)
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
