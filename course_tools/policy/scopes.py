"""Python's scoping rules for the policy: which names a block of code binds, and what each
name that a piece of code reads refers to (a local of some function, or a global of the notebook).

`ScopedVisitor` walks a cell's syntax tree the way Python executes it: decorators, default
values, base classes and the first iterator of a comprehension belong to the enclosing scope;
function, lambda, class and comprehension bodies open their own. Subclasses call
:meth:`ScopedVisitor.resolve` to learn whether a name is local or global at that point.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
COMPREHENSION_NODES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def import_bindings(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str]]:
    """``(bound name, dotted target)`` for each alias: ``import a.b`` binds ``a`` to ``a``,
    ``import a.b as c`` binds ``c`` to ``a.b``, ``from a import b as c`` binds ``c`` to ``a.b``.
    Star imports and relative imports give nothing (the policy rejects them)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                yield alias.asname, alias.name
            else:
                top = alias.name.split(".")[0]
                yield top, top
        return
    if node.level or node.module is None:
        return
    for alias in node.names:
        if alias.name != "*":
            yield alias.asname or alias.name, f"{node.module}.{alias.name}"


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


@dataclass
class Scope:
    """One Python scope: what it binds (``bound``), which of those come from imports, and the
    names it declares ``global`` / ``nonlocal``."""

    node: ast.AST
    kind: str  # "module" | "function" | "class" | "comprehension"
    parent: Scope | None
    bound: set[str] = field(default_factory=set)
    imports: dict[str, set[str]] = field(default_factory=dict)
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)
    # For a method of a class: the name of its first parameter (self, cls).
    self_name: str | None = None
    class_scope: Scope | None = None  # the class a method belongs to

    def function_scope(self) -> Scope:
        """The nearest enclosing scope that is not a comprehension (walrus targets go there)."""
        scope = self
        while scope.kind == "comprehension" and scope.parent is not None:
            scope = scope.parent
        return scope


class _BindingCollector(ast.NodeVisitor):
    """The names a scope binds, without descending into the scopes nested in it."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def bind(self, name: str) -> None:
        self.scope.bound.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.bind(node.id)

    def _visit_outer_parts(self, node: ast.AST) -> None:
        """Parts of a nested def/class/lambda evaluated in *this* scope."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for decorator in node.decorator_list:
                self.visit(decorator)
        if isinstance(node, FUNCTION_NODES):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    self.visit(default)
        if isinstance(node, ast.ClassDef):
            for base in [*node.bases, *node.keywords]:
                self.visit(base)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bind(node.name)
        self._visit_outer_parts(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bind(node.name)
        self._visit_outer_parts(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_outer_parts(node)

    def _visit_comprehension(self, node: ast.AST) -> None:
        # The first iterator runs here; walrus targets anywhere inside bind here too.
        self.visit(node.generators[0].iter)
        for inner in ast.walk(node):
            if isinstance(inner, ast.NamedExpr) and isinstance(inner.target, ast.Name):
                self.bind(inner.target.id)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _visit_comprehension

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for name, target in import_bindings(node):
            self.bind(name)
            self.scope.imports.setdefault(name, set()).add(target)

    visit_ImportFrom = visit_Import

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.declared_global.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.declared_nonlocal.update(node.names)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest)
        self.generic_visit(node)


def _parameters(args: ast.arguments) -> list[ast.arg]:
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    params += [arg for arg in (args.vararg, args.kwarg) if arg is not None]
    return params


def new_scope(node: ast.AST, parent: Scope | None) -> Scope:
    """A scope for ``node`` (Module, function, lambda, class or comprehension) with its bindings."""
    if isinstance(node, ast.Module):
        kind = "module"
    elif isinstance(node, FUNCTION_NODES):
        kind = "function"
    elif isinstance(node, ast.ClassDef):
        kind = "class"
    else:
        kind = "comprehension"
    scope = Scope(node=node, kind=kind, parent=parent)
    collector = _BindingCollector(scope)
    if kind == "comprehension":
        for generator in node.generators:
            collector.visit(generator.target)
    else:
        if kind == "function":
            scope.bound.update(param.arg for param in _parameters(node.args))
        body = node.body if isinstance(node.body, list) else [node.body]
        for statement in body:
            collector.visit(statement)
    scope.bound -= scope.declared_global
    return scope


class ScopedVisitor(ast.NodeVisitor):
    """Visit a module's tree with ``self.scope`` set to the scope each node runs in."""

    def __init__(self) -> None:
        self.scope: Scope | None = None

    # -- scopes ---------------------------------------------------------------------------------
    def visit_Module(self, node: ast.Module) -> None:
        self.scope = new_scope(node, None)
        for statement in node.body:
            self.visit(statement)

    def _enter(self, node: ast.AST) -> Scope:
        scope = new_scope(node, self.scope)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and self.scope.kind == "class":
            decorators = {_decorator_name(d) for d in node.decorator_list}
            params = [*node.args.posonlyargs, *node.args.args]
            if params and "staticmethod" not in decorators:
                scope.self_name = params[0].arg
                scope.class_scope = self.scope
        elif self.scope is not None and self.scope.kind in ("function", "comprehension"):
            # A nested function or comprehension inside a method sees the method's self.
            scope.self_name = self.scope.self_name
            scope.class_scope = self.scope.class_scope
            if scope.self_name in scope.bound:  # rebound / shadowed: no longer self
                scope.self_name = None
        return scope

    def visit_function_outer_parts(self, node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                self.visit(decorator)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for param in _parameters(node.args):
                if param.annotation is not None:
                    self.visit(param.annotation)
            if node.returns is not None:
                self.visit(node.returns)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.visit_function_outer_parts(node)
        outer, self.scope = self.scope, self._enter(node)
        for statement in node.body:
            self.visit(statement)
        self.scope = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit_function_outer_parts(node)
        outer, self.scope = self.scope, self._enter(node)
        self.visit(node.body)
        self.scope = outer

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for part in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(part)
        outer, self.scope = self.scope, self._enter(node)
        for statement in node.body:
            self.visit(statement)
        self.scope = outer

    def _visit_comprehension(self, node: ast.AST) -> None:
        self.visit(node.generators[0].iter)
        outer, self.scope = self.scope, self._enter(node)
        for index, generator in enumerate(node.generators):
            self.visit(generator.target)
            if index:
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
        for part in ("elt", "key", "value"):
            if hasattr(node, part):
                self.visit(getattr(node, part))
        self.scope = outer

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _visit_comprehension

    # -- names ----------------------------------------------------------------------------------
    def resolve(self, name: str, scope: Scope | None = None) -> Scope:
        """The scope ``name`` refers to from ``scope`` (default: the current one): the scope
        that binds it, or the module scope for a global (or builtin) name."""
        scope = scope or self.scope
        innermost = True
        while scope.parent is not None:
            if scope.kind == "class" and not innermost:
                scope = scope.parent  # a class body is not visible from its methods
                continue
            if name in scope.declared_global:
                break
            if name in scope.bound or name in scope.declared_nonlocal:
                return scope
            innermost = False
            scope = scope.parent
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def is_global(self, name: str) -> bool:
        return self.resolve(name).kind == "module"

    def in_function(self) -> bool:
        """Does the current code run when some function is called, or when a generator
        expression is consumed (not when the cell runs)?"""
        scope = self.scope
        while scope is not None:
            if scope.kind == "function" or isinstance(scope.node, ast.GeneratorExp):
                return True
            scope = scope.parent
        return False

    def store_scope(self, name: str) -> Scope:
        """The scope a store to ``name`` at this point binds in (walrus: see NamedExpr)."""
        scope = self.scope
        if name in scope.declared_global:
            return self.resolve(name)
        if name in scope.declared_nonlocal:
            return self.resolve(name, scope.parent)
        return scope


def _decorator_name(node: ast.expr) -> str:
    while isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""
