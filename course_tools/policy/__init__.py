"""The static submission policy: every student code cell is checked before grading runs it.

    from course_tools.policy import check_notebook
    violations = check_notebook(nb, "ps1_convolution", config)   # [] = the submission may run

Checked are the cells autograding runs as the student wrote them: solution cells, cells the
student added, and any cell whose nbgrader metadata does not name a locked cell of the source
notebook. Test and read-only cells are checked only for what student code may do to them:
their sources (hidden tests included, from the source notebook) tell which names the student may
not rebind or read. The rules and the threat model are in docs/grading-policy.md; each rule has
a short id (``Violation.rule``) and a message that says what is wrong and what is allowed.

Configuration (nbgrader_config.py): ``c.SubmissionPolicy.allowed_imports``,
``denied_imports``, ``assignment_allowed_imports``, ``assignment_denied_imports``,
``denied_names``, ``allowed_bases`` (see :class:`SubmissionPolicy`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nbformat.notebooknode import NotebookNode

from course_tools.policy.cells import (
    STUDENT,
    PolicyError,
    SourceCells,
    automagic_command,
    executed_cells,
    read_sources,
    source_notebook_paths,
)
from course_tools.policy.config import SubmissionPolicy
from course_tools.policy.flow import cell_names, name_flow
from course_tools.policy.objects import Objects
from course_tools.policy.rules import NotebookNames, StudentCodeChecker

__all__ = ["PolicyError", "SubmissionPolicy", "Violation", "check_notebook", "format_violations"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: in which cell (grade_id or "cell <index>"), at which line of it."""

    cell: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.cell}, line {self.line} [{self.rule}]: {self.message}"


def _policy(config) -> SubmissionPolicy:
    if isinstance(config, SubmissionPolicy):
        return config
    return SubmissionPolicy(config=config) if config is not None else SubmissionPolicy()


def _traitlets_config(config):
    if isinstance(config, SubmissionPolicy):
        return config.config
    return config


def check_notebook(
    nb: NotebookNode,
    assignment: str,
    config=None,
    *,
    source: NotebookNode | Iterable[NotebookNode] | str | Path | None = None,
) -> list[Violation]:
    """The policy violations of submission ``nb`` of ``assignment`` (empty: it may run).

    ``config`` is a traitlets ``Config`` (as loaded from nbgrader_config.py), a
    :class:`SubmissionPolicy`, or None for the defaults. ``source`` is the instructor's source
    notebook (a node, several, or a path); by default ``<CourseDirectory.root>/<source_directory>/
    <assignment>/*.ipynb`` from ``config``. Raises :class:`PolicyError` when there is none:
    without the hidden tests the policy cannot tell which names the tests use.
    """
    policy = _policy(config)
    if not policy.enabled:
        return []
    if source is None:
        paths = source_notebook_paths(assignment, _traitlets_config(config))
        if not paths:
            raise PolicyError(
                f"no source notebook for assignment {assignment!r} (looked in the nbgrader "
                "source directory): the policy needs the instructor's notebook, hidden tests "
                "included, to check a submission"
            )
        sources = read_sources(paths)
    elif isinstance(source, (str, Path)):
        sources = read_sources([source])
    elif isinstance(source, NotebookNode) and "cells" in source:
        sources = [source]
    else:
        sources = list(source)
    source_cells = SourceCells(sources)
    cells = executed_cells(nb, source_cells)
    infos = [cell_names(cell) for cell in cells if cell.tree is not None]
    names = NotebookNames(infos, Objects(policy, assignment))

    violations = [
        Violation(finding.cell.label, finding.line, finding.rule, finding.message)
        for finding in name_flow(infos, source_cells.solution_names)
    ]
    bound_before: set[str] = set()
    infos_by_index = {info.cell.index: info for info in infos}
    for cell in cells:
        command = automagic_command(cell.source) if cell.kind == STUDENT else None
        if command and command.split(".")[0] not in bound_before | set(dir(builtins)):
            violations.append(
                Violation(
                    cell.label,
                    1,
                    "ipython",
                    f"This one-line cell runs IPython's %{command} magic (automagic: no % "
                    "needed). Magics and shell commands are not allowed in submitted cells.",
                )
            )
        if cell.index in infos_by_index:
            bound_before |= {binding.name for binding in infos_by_index[cell.index].bindings}
        if cell.kind == STUDENT and cell.tree is not None:
            for finding in StudentCodeChecker(cell, names).check():
                violations.append(
                    Violation(cell.label, finding.line, finding.rule, finding.message)
                )
    order = {cell.label: position for position, cell in enumerate(cells)}
    unique = {(v.cell, v.line, v.rule, v.message): v for v in violations}
    return sorted(unique.values(), key=lambda v: (order.get(v.cell, 0), v.line, v.rule))


def format_violations(violations: Iterable[Violation]) -> str:
    """A readable report (one line per violation) for logs, the demo table and feedback."""
    return "\n".join(str(violation) for violation in violations)
