"""The class rules: what a student's class may derive from, define and override.

A student's object must answer the tests truthfully: bases only from the student's classes,
``object`` and allowed library classes (no ``torch.Tensor`` or ``dict`` subclass), no metaclass,
special methods that cannot change comparisons, truth values or attribute lookup, and no
replacement of the library methods tests use to inspect an object (``parameters``,
``state_dict``): only the methods each base is meant to have written (``forward``, ``step``).
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect

from course_tools.policy.lists import ALLOWED_DUNDER_METHODS, OVERRIDE_HOOKS, RICH_OUTPUT_METHODS
from course_tools.policy.namespace import attribute_chain
from course_tools.policy.scopes import is_dunder


class ClassRules:
    """Mixed into the student code checker: visit_ClassDef and the override check."""

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


def _has_attribute(cls: type, name: str) -> bool:
    try:
        inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    return True
