"""The notebook's global names, over all cells that will run, and how code reaches objects
through them (attribute chains, ``getattr`` with a literal name)."""

from __future__ import annotations

import ast

from course_tools.policy.cells import STUDENT
from course_tools.policy.flow import CellNames
from course_tools.policy.objects import Objects
from course_tools.policy.scopes import is_dunder


class NotebookNames:
    """What the notebook's global names are, over all cells that will run."""

    def __init__(self, infos: list[CellNames], objects: Objects) -> None:
        self.objects = objects
        self.imports: dict[str, set[str]] = {}
        self.student_bound: set[str] = set()
        self.instructor_bound: set[str] = set()
        self.student_classes: dict[str, list[ast.ClassDef]] = {}
        self.student_functions: set[str] = set()
        # name -> (cell index, position) of every module-level binding; names deleted anywhere
        self._bound_at: dict[str, list[tuple[int, tuple[int, int]]]] = {}
        self._deleted: set[str] = set()
        for info in infos:
            student = info.cell.kind == STUDENT
            for binding in info.bindings:
                if binding.import_target is not None:
                    self.imports.setdefault(binding.name, set()).add(binding.import_target)
                (self.student_bound if student else self.instructor_bound).add(binding.name)
                self._bound_at.setdefault(binding.name, []).append(
                    (info.cell.index, binding.position)
                )
            for statement in ast.walk(info.cell.tree) if info.cell.tree is not None else ():
                if isinstance(statement, ast.Delete):
                    self._deleted.update(
                        target.id for target in statement.targets if isinstance(target, ast.Name)
                    )
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

    def shadows_builtin(self, name: str, cell_index: int, position: tuple[int, int]) -> bool:
        """Does a notebook binding of ``name`` (made before this point, never deleted) hide
        the builtin of that name here? (``eval`` defined after its use is still the builtin.)"""
        if name in self._deleted:
            return False
        return any(
            (index, where) < (cell_index, position) for index, where in self._bound_at.get(name, ())
        )

    def objects_of(self, name: str) -> list[object]:
        """The library objects a global name may hold (through its import bindings)."""
        if name not in self._objects_cache:
            self._objects_cache[name] = self.objects.candidates(self.imports.get(name, ()))
        return self._objects_cache[name]


def literal_getattr(node: ast.AST) -> bool:
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
        elif literal_getattr(node):
            attrs.append(node.args[1].value)
            node = node.args[0]
        else:
            return node, attrs[::-1]


def receiver_root(node: ast.AST) -> ast.AST:
    """The name an attribute/subscript target hangs from: ``self.layers[0].weight`` -> self."""
    while isinstance(node, (ast.Attribute, ast.Subscript)) or literal_getattr(node):
        node = node.args[0] if isinstance(node, ast.Call) else node.value
    return node
