"""How names flow between the cells of a notebook: the rules no single cell can decide.

All cells share one global namespace, so a student's cell can change what a later test reads
(``assert_close = lambda *a, **k: None``, ``zip = ...``, ``held_out_accuracy = 1.0`` between two
test cells) and a student's function can read what a test computed (``return expected``, the
held-out images). Two rules follow, decided over the whole notebook in execution order:

- **protected-name**: a name a test or read-only cell reads without binding it first (or that a
  function of theirs reads when it runs) may not be rebound by the student, except to the same
  import (``import torch`` again) and except the names the solution cells are meant to define.
- **test-variable**: student code may not read a variable a test cell binds (imports aside):
  never from inside a function (it runs when a test calls it, after the test bound its data),
  and at the top level of a cell only where the value in use comes from a test cell.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from course_tools.policy.cells import STUDENT, TEST, Cell
from course_tools.policy.scopes import ScopedVisitor, import_bindings

Position = tuple[int, int]


@dataclass(frozen=True)
class Binding:
    name: str
    position: Position  # where the binding takes effect
    line: int
    import_target: str | None  # "torch.nn.functional" for `import torch.nn.functional as F`


@dataclass(frozen=True)
class Read:
    name: str
    position: Position
    line: int


@dataclass
class CellNames:
    """Global names one cell binds and reads."""

    cell: Cell
    bindings: list[Binding] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)  # while the cell runs
    deferred_reads: list[Read] = field(default_factory=list)  # inside functions, when called
    function_bindings: list[Binding] = field(default_factory=list)  # `global x; x = ...`


def _end(node: ast.AST) -> Position:
    return (node.end_lineno or node.lineno, node.end_col_offset or 0)


def _start(node: ast.AST) -> Position:
    return (node.lineno, node.col_offset)


class _NameFlow(ScopedVisitor):
    """Collect a cell's global bindings and reads with the position each takes effect at."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.names = CellNames(cell)
        self._binding_at: list[Position] = []  # where stores of the statement take effect

    def _bind(self, name: str, line: int, target: str | None = None) -> None:
        scope = self.store_scope(name)
        if scope.kind != "module":
            return
        position = self._binding_at[-1] if self._binding_at else (line, 0)
        binding = Binding(name, position, line, target)
        (self.names.function_bindings if self.in_function() else self.names.bindings).append(
            binding
        )

    def visit(self, node: ast.AST) -> None:
        # A statement's name stores take effect after its right-hand side: `x = x + 1` reads
        # the old x. For loops and with bind before their body, function and class
        # definitions after their decorators.
        if isinstance(node, ast.For | ast.AsyncFor):
            self._binding_at.append(_end(node.iter))
        elif isinstance(node, ast.With | ast.AsyncWith):
            self._binding_at.append(_end(node.items[-1].context_expr))
        elif isinstance(node, ast.ExceptHandler):
            self._binding_at.append(_start(node.body[0]) if node.body else _start(node))
        elif isinstance(node, ast.stmt):
            self._binding_at.append(_end(node))
        else:
            return super().visit(node)
        try:
            super().visit(node)
        finally:
            self._binding_at.pop()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if self.is_global(node.id):
                read = Read(node.id, _start(node), node.lineno)
                (self.names.deferred_reads if self.in_function() else self.names.reads).append(read)
        else:
            self._bind(node.id, node.lineno)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        target_scope = self.scope.function_scope()
        if target_scope.kind == "module":
            self._binding_at.append(_end(node))
            binding = Binding(node.target.id, _end(node), node.lineno, None)
            self.names.bindings.append(binding)
            self._binding_at.pop()

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for name, target in import_bindings(node):
            self._bind(name, node.lineno, target)

    visit_ImportFrom = visit_Import

    def _visit_definition(self, node: ast.AST) -> None:
        getattr(super(), f"visit_{type(node).__name__}")(node)
        self._bind(node.name, node.lineno)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_definition

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name, node.lineno)
        for statement in node.body:
            self.visit(statement)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.generic_visit(node)
        if node.name:
            self._bind(node.name, node.lineno)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name, node.lineno)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._bind(node.rest, node.lineno)


def cell_names(cell: Cell) -> CellNames:
    flow = _NameFlow(cell)
    flow.visit(cell.tree)
    return flow.names


@dataclass(frozen=True)
class FlowFinding:
    cell: Cell
    line: int
    rule: str
    message: str


def _protected_message(name: str, reader: str) -> str:
    return (
        f"`{name}` is used by {reader}: rebinding it in your code changes what the tests "
        f"check. Give your variable, function or import another name (only the functions and "
        f"classes the exercises ask for may be defined under the names the tests use)."
    )


def _test_variable_message(name: str, where: str) -> str:
    return (
        f"{where} reads `{name}`, a variable of the notebook's test cells (hidden tests bind it "
        f"too). Use your function's parameters and your own variables instead."
    )


def name_flow(infos: list[CellNames], solution_names: set[str]) -> list[FlowFinding]:
    """The protected-name and test-variable findings for the cells' names (in execution order)."""
    findings: list[FlowFinding] = []

    instructor_imports: dict[str, set[str | None]] = {}
    test_data: set[str] = set()  # names a test cell binds to something other than an import
    called_later: set[str] = set()  # names the instructor's functions read when they run
    for info in infos:
        if info.cell.kind == STUDENT:
            continue
        for binding in info.bindings:
            instructor_imports.setdefault(binding.name, set()).add(binding.import_target)
            if info.cell.kind == TEST and binding.import_target is None:
                test_data.add(binding.name)
        called_later.update(read.name for read in info.deferred_reads)

    def same_import(binding: Binding) -> bool:
        """The student imports exactly what the instructor's cells bind under this name."""
        targets = instructor_imports.get(binding.name)
        return binding.import_target is not None and targets == {binding.import_target}

    last_binder: dict[str, tuple[CellNames, Binding]] = {}
    read_by_instructor: set[str] = set(called_later)  # read without binding it first
    readers: dict[tuple[int, Binding], list[str]] = {}  # student binding -> cells it misleads
    for info in infos:
        student = info.cell.kind == STUDENT
        events = [(read.position, 1, read) for read in info.reads]
        events += [(binding.position, 0, binding) for binding in info.bindings]
        bound_here: set[str] = set()
        for _, _, event in sorted(events, key=lambda item: (item[0], item[1])):
            if isinstance(event, Binding):
                bound_here.add(event.name)
                if not (student and same_import(event)):
                    last_binder[event.name] = (info, event)
                continue
            if event.name in bound_here:
                continue
            if not student:
                read_by_instructor.add(event.name)
            if event.name not in last_binder:
                continue
            binder_info, binding = last_binder[event.name]
            if not student and binder_info.cell.kind == STUDENT:
                if event.name not in solution_names:
                    key = (binder_info.cell.index, binding)
                    if info.cell.label not in readers.setdefault(key, []):
                        readers[key].append(info.cell.label)
            elif student and binder_info.cell.kind == TEST and binding.import_target is None:
                findings.append(
                    FlowFinding(
                        info.cell,
                        event.line,
                        "test-variable",
                        _test_variable_message(event.name, "This cell"),
                    )
                )
    cells_by_index = {info.cell.index: info.cell for info in infos}
    reported = {(index, binding) for index, binding in readers}
    for (index, binding), labels in readers.items():
        reader = (
            "the cell"
            + ("s " if len(labels) > 1 else " ")
            + ", ".join(f"`{label}`" for label in labels)
        )
        findings.append(
            FlowFinding(
                cells_by_index[index],
                binding.line,
                "protected-name",
                _protected_message(binding.name, reader),
            )
        )

    for info in infos:
        if info.cell.kind != STUDENT:
            continue
        for binding in info.bindings:
            if (
                binding.name in called_later
                and binding.name not in solution_names
                and not same_import(binding)
                and (info.cell.index, binding) not in reported
            ):
                findings.append(
                    FlowFinding(
                        info.cell,
                        binding.line,
                        "protected-name",
                        _protected_message(binding.name, "functions of the test cells"),
                    )
                )
        for binding in info.function_bindings:  # `global name` inside a function
            if binding.name in read_by_instructor and binding.name not in solution_names:
                findings.append(
                    FlowFinding(
                        info.cell,
                        binding.line,
                        "global-statement",
                        f"A function assigns `global {binding.name}`, a name the tests "
                        "read: when a test calls the function, it would change what the test "
                        "checks. Return the value instead, or use another name.",
                    )
                )
        for read in info.deferred_reads:
            if read.name in test_data:
                findings.append(
                    FlowFinding(
                        info.cell,
                        read.line,
                        "test-variable",
                        _test_variable_message(read.name, "A function"),
                    )
                )
    return findings
