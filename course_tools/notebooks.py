"""Notebook surgery for the grading tools: nbgrader metadata, solution / hidden-test regions,
and the example submissions built from a release notebook.

An example submission is what a student would hand in: the release notebook with some solution
cells filled in. `complete` fills every solution cell with the reference solution from the source
notebook (the cell with the same ``grade_id``); `partial` then overwrites a few cells with the
plausible mistakes listed in ``examples/partial/<ps>.json`` (likewise `cheat` and `alternative`
from ``examples/cheat/`` and ``examples/alternative/``); `blank` is the release unchanged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
# A grading rubric sits in the locked question cell above a written answer, between the lines
# `=== BEGIN MARK SCHEME ===` and `=== END MARK SCHEME ===` (nbgrader's ClearMarkScheme looks
# for these words): cut from the release, restored for the grader by autograde
# (course_tools.hidden_regions).
BEGIN_MARK_SCHEME = "BEGIN MARK SCHEME"
END_MARK_SCHEME = "END MARK SCHEME"

# Lines shorter than this (`return out`, `)`, `else:`) say nothing about a solution or a test.
MIN_DISTINCTIVE_LENGTH = 16


def read_notebook(path: str | Path) -> NotebookNode:
    """Read an nbformat-4 notebook."""
    return nbformat.read(str(path), as_version=4)


def write_notebook(nb: NotebookNode, path: str | Path) -> None:
    """Write ``nb`` (creating parent folders); nbformat's writer is deterministic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def new_nbgrader_metadata(grade_id: str, **flags) -> dict:
    """A new cell's metadata for nbgrader (schema 3): ``grade_id`` and the flags given
    (``grade``, ``solution``, ``locked``, ``task``: False unless given; ``points``)."""
    meta = {"grade": False, "solution": False, "locked": False, "task": False}
    meta.update(flags, grade_id=grade_id, schema_version=3)
    return {"nbgrader": meta}


def nbgrader_meta(cell: NotebookNode) -> dict:
    """The cell's ``metadata.nbgrader`` dict ({} for ordinary cells)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution_cell(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("solution", False))


def is_test_cell(cell: NotebookNode) -> bool:
    """An autograded test: a graded code cell that is not a solution cell."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def cells_by_grade_id(nb: NotebookNode) -> dict[str, NotebookNode]:
    """Map ``grade_id -> cell`` for every nbgrader cell; duplicate ids are an error."""
    cells: dict[str, NotebookNode] = {}
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id is None:
            continue
        if grade_id in cells:
            raise ValueError(f"grade_id {grade_id!r} appears twice in the notebook")
        cells[grade_id] = cell
    return cells


def strip_outputs(nb: NotebookNode) -> NotebookNode:
    """Remove outputs and execution counts in place (submissions are stored unexecuted)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def split_regions(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """Split a cell's lines into (outside, inside) the ``begin`` ... ``end`` regions.

    The marker lines themselves belong to neither list. Raises ValueError for an unclosed region.
    """
    outside: list[str] = []
    inside: list[str] = []
    in_region = False
    for line in source.splitlines():
        if begin in line:
            in_region = True
        elif end in line:
            in_region = False
        else:
            (inside if in_region else outside).append(line)
    if in_region:
        raise ValueError(f"{begin!r} without a matching {end!r}")
    return outside, inside


def without_solution_markers(source: str) -> str:
    """The reference solution as a student would type it: the marker lines removed."""
    lines = [
        line
        for line in source.splitlines()
        if BEGIN_SOLUTION not in line and END_SOLUTION not in line
    ]
    return "\n".join(lines)


def secret_lines(nb: NotebookNode, begin: str, end: str) -> set[str]:
    """Distinctive lines that occur only inside ``begin``/``end`` regions of a source notebook.

    Lines that also appear in the public part of the notebook (a signature repeated in a
    docstring, a visible assert also used hidden) are not secret and are left out, as are short
    lines, comments and imports (a student may well type `import functools` too); what remains
    must never show up in a release or a feedback page.
    """
    public: set[str] = set()
    secret: set[str] = set()
    for cell in nb.cells:
        outside, inside = split_regions(cell.source, begin, end)
        public.update(line.strip() for line in outside)
        secret.update(line.strip() for line in inside)
    return {
        line
        for line in secret - public
        if len(line) >= MIN_DISTINCTIVE_LENGTH and not line.startswith(("#", "import ", "from "))
    }


def hidden_test_lines(source_nb: NotebookNode) -> set[str]:
    """Distinctive lines of the hidden tests of a source notebook."""
    return secret_lines(source_nb, BEGIN_HIDDEN, END_HIDDEN)


def solution_lines(source_nb: NotebookNode) -> set[str]:
    """Distinctive lines of the reference solutions of a source notebook.

    Markdown answers are not delimited by markers (nbgrader replaces the whole cell), so only the
    delimited code regions count here.
    """
    return secret_lines(source_nb, BEGIN_SOLUTION, END_SOLUTION)


def rubric_lines(source_nb: NotebookNode) -> set[str]:
    """Distinctive lines of the grading rubrics (mark schemes) of a source notebook."""
    return secret_lines(source_nb, BEGIN_MARK_SCHEME, END_MARK_SCHEME)


def is_written_answer(cell: NotebookNode) -> bool:
    """A manually graded answer: a markdown cell that is both a grade and a solution cell."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "markdown" and meta.get("grade", False) and meta.get("solution", False)


def rubric_of(nb: NotebookNode, answer_index: int) -> str | None:
    """The mark-scheme text of the locked cell right above the written answer at ``answer_index``
    (None when that cell has no rubric)."""
    if answer_index == 0:
        return None
    question = nb.cells[answer_index - 1]
    _, inside = split_regions(question.source, BEGIN_MARK_SCHEME, END_MARK_SCHEME)
    return "\n".join(inside).strip() or None


def written_answer(source_cell: NotebookNode) -> str:
    """The reference text of a manually graded markdown cell, markers removed."""
    return without_solution_markers(source_cell.source).strip()


def complete_submission(release_nb: NotebookNode, source_nb: NotebookNode) -> NotebookNode:
    """The release notebook with every solution cell filled in from the source notebook."""
    submission = strip_outputs(copy.deepcopy(release_nb))
    reference = cells_by_grade_id(source_nb)
    for cell in submission.cells:
        if not is_solution_cell(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        if grade_id not in reference:
            raise KeyError(f"solution cell {grade_id!r} of the release is not in the source")
        source_cell = reference[grade_id]
        if cell.cell_type == "markdown":
            cell.source = written_answer(source_cell)
        else:
            cell.source = without_solution_markers(source_cell.source)
    return submission


def apply_replacements(nb: NotebookNode, replace: Mapping[str, str]) -> NotebookNode:
    """A copy of ``nb`` whose solution cells named in ``replace`` get the given sources."""
    result = copy.deepcopy(nb)
    cells = cells_by_grade_id(result)
    for grade_id, new_source in replace.items():
        cell = cells.get(grade_id)
        if cell is None or not is_solution_cell(cell):
            raise KeyError(f"{grade_id!r} is not a solution cell of the notebook")
        cell.source = new_source
    return result


def load_partial_spec(path: str | Path) -> dict:
    """Read ``examples/<kind>/<ps>.json`` (partial, cheat, alternative) and check its keys."""
    spec = json.loads(Path(path).read_text())
    missing = {"assignment", "replace", "expected_score", "max_score"} - spec.keys()
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)}")
    return spec


def grade_ids(nb: NotebookNode, kinds: Iterable[str] = ("test",)) -> list[str]:
    """grade_ids of the test cells (``"test"``) and/or solution cells (``"solution"``)."""
    wanted = set(kinds)
    ids = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if ("test" in wanted and is_test_cell(cell)) or (
            "solution" in wanted and meta.get("solution", False)
        ):
            ids.append(meta["grade_id"])
    return ids
