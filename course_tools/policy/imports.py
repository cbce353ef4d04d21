"""The import rules: what student code may import, and which modules and functions an
attribute chain may reach (``torch.sys``, ``torch.load``, ``np.lib.stride_tricks`` are refused
however they are written)."""

from __future__ import annotations

import ast
import types

from course_tools.policy.objects import MISSING, Objects, object_module


class ImportRules:
    """Mixed into the student code checker: imports and attribute chains."""

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self.objects.module_allowed(alias.name):
                self.report(node, "forbidden-import", import_message(alias.name, self.objects))

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
            self.report(node, "forbidden-import", import_message(module, self.objects))
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
                self.report(node, "forbidden-import", import_message(obj.__name__, self.objects))
            elif (module_of := object_module(obj)) and self.objects.module_forbidden_everywhere(
                module_of
            ):
                self.report(node, "forbidden-module", module_message(dotted, module_of))

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
                    self.report(node, "forbidden-module", module_message(text, obj.__name__))
                    return
                module = object_module(obj)
                if module and self.objects.module_forbidden_everywhere(module):
                    self.report(node, "forbidden-module", module_message(text, module))
                    return


def import_message(module: str, objects: Objects) -> str:
    allowed = ", ".join(objects.policy.allowed_for(objects.assignment))
    return (
        f"`{module}` may not be imported in this problem set. Allowed: {allowed} (without their "
        f"private modules and without: {', '.join(objects.policy.denied_for(objects.assignment))})."
    )


def module_message(text: str, module: str) -> str:
    return (
        f"`{text}` reaches the module `{module}`, which submitted code may not use (it reaches "
        "outside the notebook: files, processes, the interpreter or the grader)."
    )
