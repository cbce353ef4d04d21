"""The rules each student code cell must follow, checked on its syntax tree.

Every rule protects one invariant of the threat model (docs/grading-policy.md):

- the code stays in Python and the libraries the course allows: imports from the allow-list
  only, no IPython internals (magics, ``!`` shell, ``get_ipython``, ``In``/``Out`` history), no
  ``eval``/``exec``/``compile``/``open``/``globals``/``vars``/``type``/``setattr``/``delattr``,
  no chain of attributes that reaches a forbidden module (``torch.sys``), no denied function;
- it cannot see or touch Python's machinery: no dunder names or attributes (``__class__``,
  ``__globals__``, ``__builtins__``), no private attributes of other objects (``torch._C``),
  no computed attribute names (``getattr(obj, name)`` with a name built at run time,
  ``"{0.__globals__}".format(f)``);
- it cannot change code the tests run: modules and library classes are never values (so they
  cannot reach a variable, an argument or a container), attributes of modules, classes and of
  the notebook's instructor objects are never assigned, library data is never mutated;
- its own classes cannot lie to the tests: bases from an allow-list (``nn.Module``,
  ``torch.optim.Optimizer``, ...), no metaclass, only harmless dunder methods, and no override
  of a library method the tests use to inspect an object (``parameters``, ``state_dict``).

The import and class rules live in ``imports.py`` and ``classes.py`` (mixed into
:class:`StudentCodeChecker`), the lists and messages in ``lists.py``; the rules that depend on
the order of cells (protected names, test variables) in ``flow.py``.
"""

from __future__ import annotations

import ast
import builtins
import re
import string
import types
from dataclasses import dataclass

from course_tools.policy.cells import Cell
from course_tools.policy.classes import ClassRules
from course_tools.policy.imports import ImportRules
from course_tools.policy.lists import (
    ALLOWED_DUNDER_READS,
    DENIED_ATTRIBUTES,
    FORBIDDEN_BUILTINS,
    HOOK,
    IPYTHON_HISTORY,
    IPYTHON_NAMES,
    MUTABLE_LIBRARY_PACKAGES,
    computed_attribute_message,
    ipython_message,
    mutating,
)
from course_tools.policy.namespace import (
    NotebookNames,
    attribute_chain,
    literal_getattr,
    receiver_root,
)
from course_tools.policy.objects import MISSING, is_mutable_class, object_module
from course_tools.policy.scopes import ScopedVisitor, is_dunder, new_scope


@dataclass(frozen=True)
class Finding:
    line: int
    rule: str
    message: str


class StudentCodeChecker(ClassRules, ImportRules, ScopedVisitor):
    """Apply the rules to one student cell; ``findings`` holds what it broke."""

    def __init__(self, cell: Cell, names: NotebookNames) -> None:
        super().__init__()
        self.cell = cell
        self.names = names
        self.objects = names.objects
        self.findings: list[Finding] = []
        self._reference_ok: set[int] = set()  # nodes where a module or class is fine
        self._chain_inner: set[int] = set()  # inner parts of an attribute chain
        self._class_library_bases: dict[int, list[type]] = {}
        # `.__init__` of super().__init__(...) and Base.__init__(self)
        self._init_calls: set[int] = set()
        # type(x) / x.__class__ only to print a type: print(type(x)), f"{type(x)}", .__name__
        self._type_for_display: set[int] = set()
        self._cell_binds_underscore = "_" in _module_bound(cell.tree)
        policy, assignment = names.objects.policy, names.objects.assignment
        self.cell_assignment_denies_hooks = assignment not in policy.hooks_allowed_in

    def report(self, node: ast.AST, rule: str, message: str) -> None:
        self.findings.append(Finding(getattr(node, "lineno", 1), rule, message))

    def check(self) -> list[Finding]:
        self.visit(self.cell.tree)
        unique = {(f.line, f.rule, f.message): f for f in self.findings}
        return sorted(unique.values(), key=lambda f: (f.line, f.rule, f.message))

    # -- what names stand for -------------------------------------------------------------------
    def _root_objects(self, node: ast.AST) -> list[object]:
        if not isinstance(node, ast.Name):
            return []
        scope = self.resolve(node.id)
        if scope.kind == "module":
            return self.names.objects_of(node.id)
        return self.objects.candidates(scope.imports.get(node.id, ()))

    def _chain_objects(self, node: ast.AST) -> list[list[object]]:
        """For each object the root may be, the objects along the chain (root first)."""
        root, attrs = attribute_chain(node)
        paths = []
        for obj in self._root_objects(root):
            path = [obj]
            for attr in attrs:
                obj = self.objects.attribute(obj, attr)
                if obj is MISSING:
                    break
                path.append(obj)
            paths.append(path)
        return paths

    def _is_student_class(self, node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Name)
            and node.id in self.names.student_classes
            and self.is_global(node.id)
        )

    # -- names ----------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if is_dunder(name) and not (name == "__name__" and isinstance(node.ctx, ast.Load)):
            self.report(
                node,
                "dunder-name",
                f"`{name}` is one of Python's internal names; submitted code may not use "
                "names of the form __name__ (define and call ordinary functions instead).",
            )
            return
        if not isinstance(node.ctx, ast.Load):
            return
        is_global = self.is_global(name)
        position = (node.lineno, node.col_offset)
        unbound = is_global and not self.names.shadows_builtin(name, self.cell.index, position)
        if unbound and name in FORBIDDEN_BUILTINS and id(node) not in self._type_for_display:
            self.report(
                node,
                "forbidden-builtin",
                f"`{name}` is not allowed in submitted code ({FORBIDDEN_BUILTINS[name]}).",
            )
        elif unbound and name == "getattr" and id(node) not in self._reference_ok:
            self.report(node, "computed-attribute", computed_attribute_message())
        elif unbound and (name in IPYTHON_NAMES or IPYTHON_HISTORY.fullmatch(name)):
            self.report(node, "ipython", ipython_message(name))
        elif name == "_" and is_global and (self.in_function() or not self._cell_binds_underscore):
            self.report(
                node,
                "ipython",
                "`_` read as a global is IPython's last output (it can be a test's): bind "
                "your own variable and read that.",
            )
        if id(node) not in self._reference_ok and id(node) not in self._chain_inner:
            self._check_value(node)

    def _check_value(self, node: ast.AST) -> None:
        """Modules and library classes are not values: they cannot be stored or passed on."""
        for path in self._chain_objects(node):
            if len(path) != len(attribute_chain(node)[1]) + 1:
                continue
            obj = path[-1]
            if isinstance(obj, types.ModuleType):
                self.report(
                    node,
                    "module-value",
                    f"The module `{ast.unparse(node)}` is used as a value (stored, passed or "
                    "returned). Use a module only to reach its functions and classes, e.g. "
                    "`torch.nn.functional.relu(x)`.",
                )
                return
            if is_mutable_class(obj):
                self.report(
                    node,
                    "class-value",
                    f"The library class `{ast.unparse(node)}` is used as a value (stored, "
                    "passed or returned). Library classes may be called, subclassed, used in "
                    "isinstance() and in annotations; create instances instead.",
                )
                return

    # -- attributes -----------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._chain_inner.add(id(node.value))
        self._check_attribute_name(node, node.value, node.attr, node.ctx)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._check_attribute_store(node)
        elif id(node) not in self._chain_inner:
            self._check_chain(node)
            if id(node) not in self._reference_ok:
                self._check_value(node)
        self.visit(node.value)

    def _check_attribute_name(self, node: ast.AST, value: ast.AST, attr: str, ctx) -> None:
        own = isinstance(value, ast.Name) and value.id == self.scope.self_name
        if is_dunder(attr):
            if isinstance(ctx, ast.Load) and attr in ALLOWED_DUNDER_READS:
                self._display_type(value)  # type(x).__name__, x.__class__.__name__
                return
            if attr == "__class__" and id(node) in self._type_for_display:
                return
            if attr == "__init__" and id(node) in self._init_calls:
                return
            self.report(
                node,
                "dunder-attribute",
                f"`.{attr}` is one of Python's internal attributes; submitted code may read "
                "only .__name__ / .__doc__, and call super().__init__(...).",
            )
        elif attr.startswith("_") and not (own and attr in self._own_private_names()):
            self.report(
                node,
                "private-attribute",
                f"`.{attr}` is a private attribute (leading underscore) of an object that is "
                "not yours; use the public API (private attributes are allowed only on self).",
            )
        elif attr in DENIED_ATTRIBUTES or attr.startswith("register_module_"):
            reason = DENIED_ATTRIBUTES.get(attr, "installs a hook on every module")
            self.report(node, "denied-name", f"`.{attr}` is not allowed ({reason}).")
        elif HOOK.fullmatch(attr) and self.cell_assignment_denies_hooks:
            self.report(
                node,
                "hook",
                f"`.{attr}` is not allowed in this problem set: a hook on a tensor or module a "
                "test passes to your code changes what the test computes afterwards.",
            )

    def _own_private_names(self) -> set[str]:
        """Private attributes the student's class (and its student bases) define themselves."""
        class_scope = self.scope.class_scope
        if class_scope is None:
            return set()
        return self.names.private_names_of(class_scope.node.name)

    def _check_attribute_store(self, node: ast.Attribute) -> None:
        root = receiver_root(node.value)
        if not isinstance(root, ast.Name):
            self.report(
                node,
                "assign-attribute",
                f"`{ast.unparse(node)}` sets an attribute of an object a call or an expression "
                "returned; set attributes only through your own variables (self.x = ..., "
                "layer.weight = ...), so the check can see whose object it is.",
            )
            return
        scope = self.resolve(root.id)
        if scope.kind != "module":
            if root.id == self.scope.self_name and node.value is root:
                self._check_override(node, node.attr, self.scope.class_scope)
            return
        if root.id in self.names.imports or root.id in self.names.instructor_bound:
            owner = (
                "a module or library object"
                if root.id in self.names.imports
                else ("an object of the notebook's instructor cells")
            )
            self.report(
                node,
                "assign-attribute",
                f"`{ast.unparse(node)}` changes an attribute of `{root.id}`, {owner}. "
                "Submitted code may set attributes only on objects it created "
                "(self.x = ..., p.data = ... for a parameter it was given, ...).",
            )
        elif not self.names.bound(root.id) and hasattr(builtins, root.id):
            self.report(node, "assign-attribute", f"`{ast.unparse(node)}`: builtins are read-only.")

    # -- calls ----------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        self._reference_ok.add(id(func))
        if (
            isinstance(func, ast.Name)
            and func.id in ("isinstance", "issubclass")
            and len(node.args) == 2
        ):
            classes = node.args[1]
            self._reference_ok.add(id(classes))
            if isinstance(classes, ast.Tuple):
                self._reference_ok.update(id(element) for element in classes.elts)
        if _is_name(func, "print"):
            for arg in node.args:
                self._display_type(arg)
        if isinstance(func, ast.Name) and func.id == "super":
            self._reference_ok.update(id(arg) for arg in node.args)
        if isinstance(func, ast.Attribute) and func.attr == "__init__":
            first = node.args[0] if node.args else None
            if (isinstance(func.value, ast.Call) and _is_name(func.value.func, "super")) or (
                isinstance(first, ast.Name) and first.id == self.scope.self_name
            ):
                self._init_calls.add(id(func))
        if _is_name(func, "getattr") and self.is_global("getattr"):
            if literal_getattr(node):
                self._visit_literal_getattr(node)
                return
            self.report(node, "computed-attribute", computed_attribute_message())
        if isinstance(func, ast.Attribute):
            if func.attr in ("format", "format_map"):
                self._check_format(node)
            if mutating(func.attr):
                self._check_mutation(node, func)
        self.generic_visit(node)

    def _display_type(self, node: ast.AST) -> None:
        """``node`` only shows a type (printed, formatted, its name read): type(x) is fine."""
        if isinstance(node, ast.Call) and _is_name(node.func, "type") and len(node.args) == 1:
            self._type_for_display.add(id(node.func))
        elif isinstance(node, ast.Attribute) and node.attr == "__class__":
            self._type_for_display.add(id(node))

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        self._display_type(node.value)
        self.generic_visit(node)

    def _visit_literal_getattr(self, node: ast.Call) -> None:
        self._reference_ok.add(id(node.func))
        self._chain_inner.add(id(node.args[0]))
        self._check_attribute_name(node, node.args[0], node.args[1].value, ast.Load())
        if id(node) not in self._chain_inner:
            self._check_chain(node)
            if id(node) not in self._reference_ok:
                self._check_value(node)
        for part in [node.args[0], *node.args[2:]]:
            self.visit(part)

    def _check_format(self, node: ast.Call) -> None:
        receiver = node.func.value
        if not (isinstance(receiver, ast.Constant) and isinstance(receiver.value, str)):
            self.report(
                node,
                "format-string",
                "`.format(...)` on a string that is not written out in the code can read any "
                "attribute ({0.__globals__}); use an f-string or a literal format string.",
            )
            return
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(receiver.value)]
        except ValueError:
            return
        for field in fields:
            if field and any(part.startswith("_") for part in re.split(r"[.\[]", field)[1:]):
                self.report(
                    node,
                    "format-string",
                    f"The format field {{{field}}} reads a private or internal attribute.",
                )

    def _check_mutation(self, node: ast.Call, func: ast.Attribute) -> None:
        """In-place changes of the instructor's data or of library module data."""
        root = receiver_root(func.value)
        if not isinstance(root, ast.Name) or not self.is_global(root.id):
            return
        if root.id in self.names.imports:
            paths = self._chain_objects(func.value)
            receivers = [
                path[-1] for path in paths if len(path) == len(attribute_chain(func.value)[1]) + 1
            ]
            if not receivers or any(isinstance(obj, (types.ModuleType, type)) for obj in receivers):
                return  # a function of a module or class, not data
            if all(
                (object_module(obj) or "").startswith(MUTABLE_LIBRARY_PACKAGES)
                or type(obj).__module__.startswith(MUTABLE_LIBRARY_PACKAGES)
                for obj in receivers
            ):
                return
            owner = "library data"
        elif root.id in self.names.instructor_bound and root.id not in self.names.student_bound:
            owner = "data of the notebook's instructor cells"
        else:
            return
        self.report(
            node,
            "mutate-data",
            f"`{ast.unparse(func)}(...)` changes {owner} in place; the tests rely on it. "
            "Work on your own copy (e.g. x.clone(), list(x)).",
        )

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = receiver_root(node.value)
            if isinstance(root, ast.Name) and self.is_global(root.id):
                library = root.id in self.names.imports and root is not node.value
                instructor = (
                    root.id in self.names.instructor_bound
                    and root.id not in self.names.student_bound
                )
                if (library and not _package(root.id, self.names)) or instructor:
                    self.report(
                        node,
                        "mutate-data",
                        f"`{ast.unparse(node)} = ...` changes data the tests rely on; work on "
                        "your own copy.",
                    )
        self.generic_visit(node)

    # -- statements -----------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if is_dunder(node.name) and self.scope.kind != "class":
            self.report(
                node,
                "dunder-name",
                f"`def {node.name}` outside a class: names of the form __name__ are Python's.",
            )
        self._check_generator_cleanup(node)
        self._reference_ok.update(id(decorator) for decorator in node.decorator_list)
        params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        params += [arg for arg in (node.args.vararg, node.args.kwarg) if arg is not None]
        for annotation in [*(arg.annotation for arg in params), node.returns]:
            self._annotation(annotation)
        super().visit_FunctionDef(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def _check_generator_cleanup(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """Code that a generator runs when Python frees it runs at a moment nobody chooses:
        in the middle of a test, after the operator checks ended."""
        for block in _own_statements(node):
            if not isinstance(block, (ast.Try, ast.TryStar, ast.With, ast.AsyncWith)):
                continue
            for inner in _own_statements(block, include_self=False):
                if isinstance(inner, (ast.Yield, ast.YieldFrom)):
                    self.report(
                        inner,
                        "generator-cleanup",
                        "`yield` inside try/with: the finally/except/with-exit code would run "
                        "whenever Python frees the generator, possibly in the middle of a test. "
                        "Move the yield out of the try/with block.",
                    )
                    return

    def _annotation(self, annotation: ast.expr | None) -> None:
        """Type hints name classes (`torch.Tensor | None`, `tuple[nn.Module, int]`)."""
        if annotation is not None:
            self._reference_ok.update(id(part) for part in ast.walk(annotation))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self._reference_ok.add(id(node.type))
            if isinstance(node.type, ast.Tuple):
                self._reference_ok.update(id(element) for element in node.type.elts)
        self.generic_visit(node)


def _own_statements(node: ast.AST, include_self: bool = True):
    """Nodes of a function body, not descending into nested functions, lambdas or classes."""
    if include_self:
        yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield from _own_statements(child)


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _package(name: str, names: NotebookNames) -> bool:
    """Does a global import alias point into a package whose data may be changed (matplotlib)?"""
    return any(
        target.startswith(MUTABLE_LIBRARY_PACKAGES) for target in names.imports.get(name, ())
    )


def _module_bound(tree: ast.Module) -> set[str]:
    return new_scope(tree, None).bound
