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
"""

from __future__ import annotations

import ast
import builtins
import re
import string
import types
from dataclasses import dataclass

from course_tools.policy.cells import STUDENT, Cell
from course_tools.policy.flow import CellNames
from course_tools.policy.objects import MISSING, Objects, is_mutable_class, object_module
from course_tools.policy.scopes import ScopedVisitor, is_dunder

FORBIDDEN_BUILTINS = {
    "eval": "runs code from a string",
    "exec": "runs code from a string",
    "compile": "turns a string into code",
    "open": "opens files",
    "input": "waits for keyboard input",
    "breakpoint": "starts a debugger",
    "globals": "exposes the notebook's namespace",
    "locals": "exposes the notebook's namespace",
    "vars": "exposes an object's namespace",
    "setattr": "sets an attribute by a computed name",
    "delattr": "deletes an attribute by a computed name",
    "type": "reaches classes as values (use isinstance(x, cls) to test a type)",
}
IPYTHON_NAMES = {
    "get_ipython",
    "display",
    "In",
    "Out",
    "_ih",
    "_oh",
    "_dh",
    "_i",
    "_ii",
    "_iii",
    "__",
    "___",
}
_IPYTHON_HISTORY = re.compile(r"_i?\d+")
ALLOWED_DUNDER_READS = {"__name__", "__qualname__", "__doc__", "__version__"}
ALLOWED_DUNDER_METHODS = {
    "__init__",
    "__post_init__",
    "__call__",
    "__len__",
    "__getitem__",
    "__iter__",
    "__next__",
    "__repr__",
    "__str__",
    "__enter__",
    "__exit__",
}
# The methods a subclass of each allowed library base is meant to write; every other attribute
# of the base (parameters, modules, state_dict, zero_grad, ...) is the library's.
OVERRIDE_HOOKS = {
    "torch.nn.Module": {"__init__", "forward", "extra_repr", "reset_parameters"},
    "torch.optim.Optimizer": {"__init__", "step", "zero_grad"},
    "torch.optim.lr_scheduler.LRScheduler": {"__init__", "get_lr"},
    "torch.autograd.Function": {"forward", "backward", "setup_context", "jvp", "vmap"},
    "torch.utils.data.Dataset": {"__init__", "__len__", "__getitem__"},
    "torch.utils.data.Sampler": {"__init__", "__len__", "__iter__"},
    "Exception": {"__init__", "__str__"},
}
MUTATING_METHODS = {
    "append",
    "extend",
    "insert",
    "remove",
    "pop",
    "popitem",
    "clear",
    "update",
    "setdefault",
    "add",
    "discard",
    "sort",
    "reverse",
    "difference_update",
    "intersection_update",
    "symmetric_difference_update",
}
_FRAMES = "reaches the interpreter's frames and code objects"
DENIED_ATTRIBUTES = {
    "mro": "lists classes as values",
    **dict.fromkeys(
        ["gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await"], _FRAMES
    ),
    **dict.fromkeys(["ag_frame", "ag_code", "ag_await", "tb_frame", "tb_next"], _FRAMES),
    **dict.fromkeys(["f_globals", "f_locals", "f_builtins", "f_back", "f_code"], _FRAMES),
    **dict.fromkeys(["co_consts", "co_code", "co_names", "func_globals"], _FRAMES),
}
_HOOK = re.compile(
    r"register(_\w+)?_(pre)?hook|register_parametrization|(remove_)?(weight|spectral)_norm"
)
# Notebook rich output: raw HTML / JavaScript a student object would put into the feedback page.
RICH_OUTPUT_METHODS = {
    "_repr_html_",
    "_repr_javascript_",
    "_repr_markdown_",
    "_repr_svg_",
    "_repr_latex_",
    "_repr_json_",
    "_repr_pdf_",
    "_repr_mimebundle_",
    "_ipython_display_",
}
# Library state that honest notebooks change: matplotlib's rcParams.
MUTABLE_LIBRARY_PACKAGES = ("matplotlib",)


@dataclass(frozen=True)
class Finding:
    line: int
    rule: str
    message: str


class NotebookNames:
    """What the notebook's global names are, over all cells that will run."""

    def __init__(self, infos: list[CellNames], objects: Objects) -> None:
        self.objects = objects
        self.imports: dict[str, set[str]] = {}
        self.student_bound: set[str] = set()
        self.instructor_bound: set[str] = set()
        self.student_classes: dict[str, list[ast.ClassDef]] = {}
        self.student_functions: set[str] = set()
        for info in infos:
            student = info.cell.kind == STUDENT
            for binding in info.bindings:
                if binding.import_target is not None:
                    self.imports.setdefault(binding.name, set()).add(binding.import_target)
                (self.student_bound if student else self.instructor_bound).add(binding.name)
            if student and info.cell.tree is not None:
                for statement in ast.walk(info.cell.tree):
                    if isinstance(statement, ast.ClassDef):
                        self.student_classes.setdefault(statement.name, []).append(statement)
                    elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self.student_functions.add(statement.name)
        self._objects_cache: dict[str, list[object]] = {}

    def private_names_of(self, class_name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """``_x`` names a student class sets on self or in its body (and its student bases)."""
        if class_name in seen:
            return set()
        names: set[str] = set()
        for definition in self.student_classes.get(class_name, []):
            for node in ast.walk(definition):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                ) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = node.attr if isinstance(node, ast.Attribute) else node.name
                    if name.startswith("_") and not is_dunder(name):
                        names.add(name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    if node.id.startswith("_") and not is_dunder(node.id):
                        names.add(node.id)
            for base in definition.bases:
                if isinstance(base, ast.Name) and base.id in self.student_classes:
                    names |= self.private_names_of(base.id, seen | {class_name})
        return names

    def bound(self, name: str) -> bool:
        return name in self.student_bound or name in self.instructor_bound

    def objects_of(self, name: str) -> list[object]:
        """The library objects a global name may hold (through its import bindings)."""
        if name not in self._objects_cache:
            self._objects_cache[name] = self.objects.candidates(self.imports.get(name, ()))
        return self._objects_cache[name]


def _literal_getattr(node: ast.AST) -> bool:
    """``getattr(obj, "name")`` / ``getattr(obj, "name", default)``: plain attribute access."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) in (2, 3)
        and not node.keywords
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    )


def attribute_chain(node: ast.AST) -> tuple[ast.AST, list[str]]:
    """``a.b.c`` (also through literal getattr) -> (the node ``a``, ["b", "c"])."""
    attrs = []
    while True:
        if isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        elif _literal_getattr(node):
            attrs.append(node.args[1].value)
            node = node.args[0]
        else:
            return node, attrs[::-1]


def _receiver_root(node: ast.AST) -> ast.AST:
    """The name an attribute/subscript target hangs from: ``self.layers[0].weight`` -> self."""
    while isinstance(node, (ast.Attribute, ast.Subscript)) or _literal_getattr(node):
        node = node.args[0] if isinstance(node, ast.Call) else node.value
    return node


class StudentCodeChecker(ScopedVisitor):
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
        unbound = is_global and not self.names.bound(name)
        if unbound and name in FORBIDDEN_BUILTINS and id(node) not in self._type_for_display:
            self.report(
                node,
                "forbidden-builtin",
                f"`{name}` is not allowed in submitted code ({FORBIDDEN_BUILTINS[name]}).",
            )
        elif unbound and name == "getattr" and id(node) not in self._reference_ok:
            self.report(node, "computed-attribute", _computed_attribute_message())
        elif unbound and (name in IPYTHON_NAMES or _IPYTHON_HISTORY.fullmatch(name)):
            self.report(node, "ipython", _ipython_message(name))
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
        elif _HOOK.fullmatch(attr) and self.cell_assignment_denies_hooks:
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

    def _check_chain(self, node: ast.AST) -> None:
        """Every module a chain passes through is allowed; the object it ends at is not denied."""
        text = ast.unparse(node)
        for path in self._chain_objects(node):
            for obj in path:
                denied = self.objects.denied_name(obj)
                if denied:
                    self.report(
                        node,
                        "denied-name",
                        f"`{text}` ({denied}) is not allowed in submitted code: it changes "
                        "state the tests rely on, reads files, or does the exercise's work "
                        "where the grader cannot see it.",
                    )
                    return
                if isinstance(obj, types.ModuleType) and not self.objects.module_allowed(
                    obj.__name__
                ):
                    self.report(node, "forbidden-module", _module_message(text, obj.__name__))
                    return
                module = object_module(obj)
                if module and self.objects.module_forbidden_everywhere(module):
                    self.report(node, "forbidden-module", _module_message(text, module))
                    return

    def _check_attribute_store(self, node: ast.Attribute) -> None:
        root = _receiver_root(node.value)
        if not isinstance(root, ast.Name):
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
            if _literal_getattr(node):
                self._visit_literal_getattr(node)
                return
            self.report(node, "computed-attribute", _computed_attribute_message())
        if isinstance(func, ast.Attribute):
            if func.attr in ("format", "format_map"):
                self._check_format(node)
            if _mutating(func.attr):
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
        root = _receiver_root(func.value)
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
            root = _receiver_root(node.value)
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
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self.objects.module_allowed(alias.name):
                self.report(node, "forbidden-import", _import_message(alias.name, self.objects))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.report(
                node,
                "forbidden-import",
                "Relative imports (`from . import x`) are not allowed: import installed "
                "packages by their full name.",
            )
            return
        module = node.module or ""
        if not self.objects.module_allowed(module):
            self.report(node, "forbidden-import", _import_message(module, self.objects))
            return
        for alias in node.names:
            if alias.name == "*":
                self.report(
                    node,
                    "star-import",
                    f"`from {module} import *` may rebind names the tests use; import the "
                    "names you need one by one.",
                )
                continue
            dotted = f"{module}.{alias.name}"
            if alias.name.startswith("_"):
                self.report(
                    node,
                    "private-attribute",
                    f"`{dotted}` is private (leading underscore); import public names only.",
                )
                continue
            obj = self.objects.lookup(dotted)
            denied = self.objects.denied_name(obj) if obj is not MISSING else None
            if denied:
                self.report(node, "denied-name", f"`{dotted}` is not allowed in submitted code.")
            elif isinstance(obj, types.ModuleType) and not self.objects.module_allowed(
                obj.__name__
            ):
                self.report(node, "forbidden-import", _import_message(obj.__name__, self.objects))
            elif (module_of := object_module(obj)) and self.objects.module_forbidden_everywhere(
                module_of
            ):
                self.report(node, "forbidden-module", _module_message(dotted, module_of))

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

    # -- classes --------------------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for keyword in node.keywords:
            self.report(
                node,
                "class-keyword",
                f"`class {node.name}(..., {keyword.arg}=...)`: metaclasses and class keywords "
                "are not allowed.",
            )
        for decorator in node.decorator_list:
            self._check_class_decorator(node, decorator)
        self._reference_ok.update(id(base) for base in node.bases)
        library_bases = []
        for base in node.bases:
            library_bases += self._check_base(node, base)
        self._class_library_bases[id(node)] = library_bases
        hooks = self._hooks(library_bases)
        for statement in node.body:
            self._check_class_member(node, statement, library_bases, hooks)
        super().visit_ClassDef(node)

    def _check_class_decorator(self, node: ast.ClassDef, decorator: ast.expr) -> None:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        self._reference_ok.add(id(decorator))
        if isinstance(target, ast.Name) and target.id in self.names.student_functions:
            return
        dataclass_objects = [path[-1] for path in self._chain_objects(target)]
        import dataclasses

        if dataclass_objects and all(obj is dataclasses.dataclass for obj in dataclass_objects):
            return
        self.report(
            node,
            "class-decorator",
            f"`@{ast.unparse(decorator)}` on class {node.name}: a class may only be decorated "
            "with @dataclass or with your own functions.",
        )

    def _allowed_bases(self) -> list[type]:
        found = []
        for dotted in self.objects.policy.allowed_bases:
            obj = self.objects.lookup(dotted, trusted=True)
            if isinstance(obj, type):
                found.append(obj)
        return found

    def _library_bases_of_student_class(self, name: str, seen: set[str]) -> list[type]:
        if name in seen:
            return []
        seen.add(name)
        bases = []
        for definition in self.names.student_classes.get(name, []):
            for base in definition.bases:
                if isinstance(base, ast.Name) and base.id in self.names.student_classes:
                    bases += self._library_bases_of_student_class(base.id, seen)
                else:
                    bases += [
                        obj
                        for obj in (p[-1] for p in self._chain_objects(base))
                        if isinstance(obj, type)
                    ]
        return bases

    def _check_base(self, node: ast.ClassDef, base: ast.expr) -> list[type]:
        if self._is_student_class(base):
            return self._library_bases_of_student_class(base.id, set())
        paths = self._chain_objects(base)
        objects = [path[-1] for path in paths if len(path) == len(attribute_chain(base)[1]) + 1]
        if not objects and isinstance(base, ast.Name) and base.id in ("object", "Exception"):
            objects = [getattr(builtins, base.id)]
        allowed = self._allowed_bases()
        good = [
            obj
            for obj in objects
            if isinstance(obj, type)
            and (obj is object or any(issubclass(obj, allowed_base) for allowed_base in allowed))
        ]
        if not objects or len(good) != len(objects):
            names = ", ".join(self.objects.policy.allowed_bases)
            self.report(
                node,
                "class-base",
                f"class {node.name} derives from `{ast.unparse(base)}`: a class may derive "
                f"only from your own classes, object, or these library classes (and their "
                f"subclasses): {names}.",
            )
            return []
        return [obj for obj in good if obj is not object]

    def _hooks(self, library_bases: list[type]) -> set[str]:
        hooks: set[str] = set()
        for dotted, names in OVERRIDE_HOOKS.items():
            family = self.objects.lookup(dotted, trusted=True)
            if isinstance(family, type) and any(issubclass(b, family) for b in library_bases):
                hooks |= names
        return hooks

    def _check_class_member(
        self, node: ast.ClassDef, statement: ast.stmt, library_bases: list[type], hooks: set[str]
    ) -> None:
        names: list[tuple[ast.AST, str]] = []
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if statement.name in RICH_OUTPUT_METHODS:
                self.report(
                    statement,
                    "rich-output",
                    f"`def {statement.name}` makes objects of class {node.name} display raw "
                    "HTML / JavaScript in the notebook and its feedback page; print text instead.",
                )
                return
            if is_dunder(statement.name) and statement.name not in ALLOWED_DUNDER_METHODS:
                self.report(
                    statement,
                    "dunder-method",
                    f"`def {statement.name}` in class {node.name}: of Python's special methods a "
                    f"class may define only {', '.join(sorted(ALLOWED_DUNDER_METHODS))}.",
                )
                return
            names.append((statement, statement.name))
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                names += [(n, n.id) for n in ast.walk(target) if isinstance(n, ast.Name)]
        for where, name in names:
            self._check_override(where, name, None, library_bases, hooks, node.name)

    def _check_override(
        self,
        node: ast.AST,
        name: str,
        class_scope,
        library_bases: list[type] | None = None,
        hooks: set[str] | None = None,
        class_name: str | None = None,
    ) -> None:
        if library_bases is None:
            if class_scope is None:
                return
            library_bases = self._class_library_bases.get(id(class_scope.node), [])
            hooks = self._hooks(library_bases)
            class_name = class_scope.node.name
        if name in hooks or is_dunder(name):
            return
        owners = [base for base in library_bases if _has_attribute(base, name)]
        if owners:
            owner = f"{owners[0].__module__}.{owners[0].__qualname__}"
            self.report(
                node,
                "override",
                f"class {class_name} replaces `{name}` of {owner}; the tests use the library's "
                f"`{name}` to inspect your object. Subclasses of it may define "
                f"{', '.join(sorted(hooks)) or 'nothing of it'} and new names of their own.",
            )


def _own_statements(node: ast.AST, include_self: bool = True):
    """Nodes of a function body, not descending into nested functions, lambdas or classes."""
    if include_self:
        yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield from _own_statements(child)


def _has_attribute(cls: type, name: str) -> bool:
    import inspect

    try:
        inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    return True


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _mutating(method: str) -> bool:
    return method in MUTATING_METHODS or (
        method.endswith("_") and not method.startswith("_") and len(method) > 1
    )


def _package(name: str, names: NotebookNames) -> bool:
    """Does a global import alias point into a package whose data may be changed (matplotlib)?"""
    return any(
        target.startswith(MUTABLE_LIBRARY_PACKAGES) for target in names.imports.get(name, ())
    )


def _module_bound(tree: ast.Module) -> set[str]:
    from course_tools.policy.scopes import new_scope

    return new_scope(tree, None).bound


def _computed_attribute_message() -> str:
    return (
        "`getattr` with a name computed at run time can reach any attribute; write the "
        "attribute out (obj.name) or use getattr(obj, 'name') with the name as a string literal."
    )


def _ipython_message(name: str) -> str:
    if name == "get_ipython":
        return (
            "IPython internals are not allowed: magics (%timeit, %%time, ...), shell commands "
            "(!ls) and get_ipython(). Time code with time.perf_counter() instead."
        )
    return (
        f"`{name}` is IPython's input/output history (it holds the test cells); submitted code "
        "may not read it."
    )


def _import_message(module: str, objects: Objects) -> str:
    allowed = ", ".join(objects.policy.allowed_for(objects.assignment))
    return (
        f"`{module}` may not be imported in this problem set. Allowed: {allowed} (without their "
        f"private modules and without: {', '.join(objects.policy.denied_for(objects.assignment))})."
    )


def _module_message(text: str, module: str) -> str:
    return (
        f"`{text}` reaches the module `{module}`, which submitted code may not use (it reaches "
        "outside the notebook: files, processes, the interpreter or the grader)."
    )
