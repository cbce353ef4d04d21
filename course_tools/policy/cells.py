"""The cells a grading run will execute, in order, and whose code each one is.

nbgrader's ``OverwriteCells`` (part of ``autograde``) replaces every cell whose ``grade_id``
names a *locked* cell of the source notebook (test cells, read-only setup cells) with the
instructor's version, hidden tests included; every other code cell (solution cells, cells the
student added, cells whose nbgrader metadata the student removed or invented) runs as submitted.
`executed_cells` reproduces that, so the policy sees exactly the code that will run and knows
which of it is the student's.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

STUDENT, TEST, READ_ONLY = "student", "test", "read-only"


class PolicyError(RuntimeError):
    """The policy cannot check this submission (e.g. the source notebook is missing)."""


@dataclass(frozen=True)
class Cell:
    """A code cell as it will run: whose it is, its source and its parsed tree (None when the
    cell does not compile: then IPython runs none of it)."""

    index: int  # position in the submitted notebook
    label: str  # grade_id, or "cell <index>"
    kind: str  # STUDENT | TEST | READ_ONLY
    source: str
    tree: ast.Module | None


def _nbgrader(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


# `%matplotlib inline` (and other backends) only picks a plotting backend: allowed.
_MATPLOTLIB_MAGIC = re.compile(r"^(\s*)%matplotlib(\s+[\w.]+)?\s*$", re.MULTILINE)


@functools.lru_cache(maxsize=1024)
def python_source(source: str) -> str:
    """The Python that IPython runs for a cell: magics and shell escapes become
    ``get_ipython()`` calls (which the policy then rejects), except `%matplotlib <backend>`."""
    from IPython.core.inputtransformer2 import TransformerManager

    source = _MATPLOTLIB_MAGIC.sub(r"\1pass", source)
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 (IPython could not transform it: it will not compile either)
        return source


@functools.lru_cache(maxsize=1)
def _magic_names() -> frozenset[str]:
    """Line magics and shell aliases a kernel knows by default (IPython, ipykernel, storemagic)."""
    from IPython.core import magics
    from IPython.core.alias import default_aliases

    names = set(magics.BUILTIN_LAZY_MAGICS.get("line", {}))
    for attribute in dir(magics):
        table = getattr(getattr(magics, attribute), "magics", None)
        if isinstance(table, dict):
            names |= set(table.get("line", {}))
    try:
        from ipykernel.zmqshell import KernelMagics

        names |= set(KernelMagics.magics["line"])
    except ImportError:
        pass
    names |= {name for name, _ in default_aliases()} | {"store"}
    return frozenset(names)


def automagic_command(source: str) -> str | None:
    """The magic a one-line cell runs without a ``%`` (IPython's automagic: ``ls``, ``cd ..``,
    ``run file.py``), unless the line assigns to that name; None for any other cell. Whether a
    variable of that name shadows the magic is the caller's to decide."""
    from IPython.core.splitinput import LineInfo

    lines = python_source(source).splitlines()
    if len(lines) != 1:
        return None
    info = LineInfo(lines[0])
    assigns = info.the_rest.lstrip().startswith("=") and not info.the_rest.lstrip().startswith("==")
    return info.ifun if info.ifun in _magic_names() and not info.pre and not assigns else None


@functools.lru_cache(maxsize=1024)
def parse(source: str) -> ast.Module | None:
    """The cell's syntax tree (shared between calls: the policy never changes a tree)."""
    try:
        return ast.parse(python_source(source))
    except (SyntaxError, ValueError):
        return None


def read_sources(paths: Iterable[str | Path]) -> list[NotebookNode]:
    return [nbformat.read(str(path), as_version=4) for path in paths]


def source_notebook_paths(assignment: str, config=None) -> list[Path]:
    """``<course root>/<source_directory>/<assignment>/*.ipynb`` as nbgrader's CourseDirectory
    in ``config`` (default: the current directory and nbgrader's defaults) names them."""
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=config) if config is not None else CourseDirectory()
    folder = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
    return sorted(folder.glob("*.ipynb"))


class SourceCells:
    """The instructor's cells of an assignment's source notebook(s), by ``grade_id``."""

    def __init__(self, sources: Iterable[NotebookNode]) -> None:
        self.locked: dict[str, NotebookNode] = {}
        self.solution_names: set[str] = set()
        for notebook in sources:
            for cell in notebook.cells:
                meta = _nbgrader(cell)
                if meta.get("locked") and meta.get("grade_id"):
                    self.locked.setdefault(meta["grade_id"], cell)
                if meta.get("solution") and cell.cell_type == "code":
                    tree = parse(cell.source)
                    if tree is not None:
                        self.solution_names |= module_level_names(tree)
        if not self.locked:
            raise PolicyError(
                "the source notebook has no locked cells (tests or read-only cells): is it the "
                "instructor's source notebook with nbgrader metadata?"
            )


def module_level_names(tree: ast.Module) -> set[str]:
    """The names a cell binds in the notebook's global namespace (functions, classes, ...)."""
    from course_tools.policy.scopes import new_scope

    scope = new_scope(tree, None)
    return set(scope.bound)


def executed_cells(nb: NotebookNode, source: SourceCells) -> list[Cell]:
    """The code cells of submission ``nb`` as autograding will run them, in order."""
    cells = []
    for index, cell in enumerate(nb.cells):
        grade_id = _nbgrader(cell).get("grade_id")
        instructor = source.locked.get(grade_id) if grade_id else None
        if instructor is not None:
            if instructor.cell_type != "code":
                continue  # nbgrader turns it back into the instructor's markdown
            meta = _nbgrader(instructor)
            kind = TEST if meta.get("grade") and not meta.get("solution") else READ_ONLY
            text = instructor.source
        elif cell.cell_type == "code":
            kind, text = STUDENT, cell.source
        else:
            continue
        cells.append(Cell(index, grade_id or f"cell {index}", kind, text, parse(text)))
    return cells
