"""nbgrader preprocessors of the course's autograde pipeline (configured in nbgrader_config.py).

Before execution (``c.Autograde.sanitize_preprocessors``), in the grader's own process:

- `LimitCellSources`: cut huge markdown / code cells (a 200 MB markdown cell would make a 200 MB
  feedback page), with a visible note;
- `RepairDuplicateCells`: a pasted copy of a test cell (same ``grade_id``) is kept as an ordinary,
  ungraded cell and the copy in the release's place is graded; nbgrader's own ``DeduplicateIds``
  would blank the metadata and fail the whole notebook;
- `CheckSubmissionPolicy`: the static policy check (`course_tools.policy.check_notebook`) of every
  code cell the student wrote. A submission that breaks it is still executed, in the sandbox,
  but its autograded points are held for review (see `ReportGrading`).

After execution (``c.Autograde.autograde_preprocessors``, after ``SaveAutoGrades``):

- `ReportGrading`: a "Grading notes" cell at the top of the graded notebook (so the formgrader
  and the student's feedback show what happened), and, for a policy violation, the points held:
  every autograded test cell is marked ``needs_manual_grade`` and the notebook ``flagged``, with
  the reason as the comment of the first answer cell.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import asdict, is_dataclass

from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_markdown_cell
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode

from course_tools import notebooks as nbtools
from course_tools.grading.execute import add_note, cell_label, grading_metadata
from course_tools.grading.gradebook import HELD_PREFIX

NOTES_CELL_TAG = "course-grading-notes"


def source_notebook_path(config, assignment: str, notebook: str) -> str:
    """``solutions/<ps>/<notebook>.ipynb`` of the course nbgrader is running in."""
    coursedir = CourseDirectory(config=config)
    folder = coursedir.format_path(coursedir.source_directory, ".", assignment)
    return os.path.join(folder, f"{notebook}.ipynb")


class LimitCellSources(NbGraderPreprocessor):
    """Cut the source of huge cells (and drop huge attachments), with a note in the cell."""

    max_markdown_bytes = Integer(
        100_000, help="Characters kept of a markdown or raw cell (attachments included)"
    ).tag(config=True)
    max_code_bytes = Integer(1_000_000, help="Characters kept of a code cell").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        limit = self.max_code_bytes if cell.cell_type == "code" else self.max_markdown_bytes
        attachments = cell.get("attachments") or {}
        attached = sum(len(str(a)) for a in attachments.values())
        if len(cell.source) + attached <= limit:
            return cell, resources
        if attachments and attached > limit // 2:
            cell.pop("attachments")
        note = f"grading note: this cell was cut at {limit:,} characters"
        cell.source = cell.source[:limit]
        if cell.cell_type == "code":
            cell.source += f"\n# [{note}]"
        else:
            cell.source += f"\n\n**[{note}]**"
        self._note = f"{cell_label(cell, index)}: {note[14:]}"
        return cell, resources

    def preprocess(self, nb, resources):
        notes = []
        for index, cell in enumerate(nb.cells):
            self._note = None
            nb.cells[index], resources = self.preprocess_cell(cell, resources, index)
            if self._note:
                notes.append(self._note)
        for note in notes:
            add_note(nb, note)
        return nb, resources


class RepairDuplicateCells(NbGraderPreprocessor):
    """Keep one cell per ``grade_id``; the other copies become ordinary cells, with a note.

    Of several copies of a test cell, the one that follows the same graded cell as in the
    source notebook is graded (a test pasted further down to re-run it leaves the original in
    place); failing that, the first. Of several copies of an answer cell, the last is kept
    (nbgrader's choice: the copy the student worked on last).
    """

    def preprocess(self, nb, resources):
        positions: dict[str, list[int]] = {}
        for index, cell in enumerate(nb.cells):
            grade_id = nbtools.nbgrader_meta(cell).get("grade_id")
            if grade_id is not None:
                positions.setdefault(grade_id, []).append(index)
        duplicated = {gid: where for gid, where in positions.items() if len(where) > 1}
        if not duplicated:
            return nb, resources
        before = self._source_predecessors(resources)
        for grade_id, where in duplicated.items():
            keep = self._choose(nb, grade_id, where, before)
            for index in where:
                if index != keep:
                    cell = nb.cells[index]
                    del cell.metadata["nbgrader"]
                    if cell.cell_type == "code":
                        cell.source = f"# [grading note: copy of {grade_id!r}, not graded]\n" + (
                            cell.source
                        )
            add_note(
                nb,
                f"cell {grade_id!r} appeared {len(where)} times (a pasted copy?): cell "
                f"{keep + 1} was graded, the other copies ran as ordinary cells",
            )
        return nb, resources

    def _source_predecessors(self, resources) -> dict[str, str | None]:
        """grade_id -> the grade_id of the graded cell before it in the source notebook."""
        meta = resources.get("nbgrader", {})
        path = source_notebook_path(self.config, meta.get("assignment", ""), meta.get("notebook"))
        if not os.path.isfile(path):
            return {}
        before, previous = {}, None
        for cell in nbtools.read_notebook(path).cells:
            grade_id = nbtools.nbgrader_meta(cell).get("grade_id")
            if grade_id is not None:
                before[grade_id] = previous
                previous = grade_id
        return before

    @staticmethod
    def _choose(nb, grade_id: str, where: list[int], before: dict[str, str | None]) -> int:
        if not nbtools.is_test_cell(nb.cells[where[0]]):
            return where[-1]
        expected = before.get(grade_id, "?")
        for index in where:
            previous = None
            for cell in reversed(nb.cells[:index]):
                other = nbtools.nbgrader_meta(cell).get("grade_id")
                if other is not None and other != grade_id:
                    previous = other
                    break
            if previous == expected:
                return index
        return where[0]


class CheckSubmissionPolicy(NbGraderPreprocessor):
    """Run the course's static submission policy on the notebook, before it is executed.

    ``checker`` names the function (``module.function``) called as
    ``checker(nb, assignment, config)`` and returning a list of violations (objects with
    ``cell``, ``line``, ``rule``, ``message``). The violations are stored in the notebook's
    ``course_grading`` metadata for `ReportGrading`.
    """

    checker = Unicode(
        "course_tools.policy.check_notebook", help="The policy check, as module.function"
    ).tag(config=True)

    def preprocess(self, nb, resources):
        module_name, _, function_name = self.checker.rpartition(".")
        check = getattr(importlib.import_module(module_name), function_name)
        assignment = resources.get("nbgrader", {}).get("assignment", "")
        violations = check(nb, assignment, self.config)
        found = [asdict(v) if is_dataclass(v) else dict(v) for v in violations]
        grading_metadata(nb)["policy"] = found
        if found:
            self.log.warning("%d policy violation(s): submission held for review", len(found))
        return nb, resources


def policy_summary(violations: list[dict], most: int = 5) -> str:
    """One line per violation: ``<cell> line <n>: <message> (<rule>)``."""
    lines = [
        f"{v['cell']} line {v['line']}: {v['message']} ({v['rule']})" for v in violations[:most]
    ]
    if len(violations) > most:
        lines.append(f"... and {len(violations) - most} more")
    return "\n".join(lines)


class ReportGrading(NbGraderPreprocessor):
    """Show the grading notes in the graded notebook; hold the points of a policy violation."""

    def preprocess(self, nb, resources):
        record = grading_metadata(nb)
        violations = record.get("policy", [])
        notes = list(record.get("notes", []))
        if violations:
            answers = [
                nbtools.nbgrader_meta(c)["grade_id"]
                for c in nb.cells
                if nbtools.is_solution_cell(c)
            ]
            self._hold(resources, violations, answers[0] if answers else None)
        if violations or notes:
            nb.cells.insert(0, self._notes_cell(violations, notes))
        return nb, resources

    @staticmethod
    def _notes_cell(violations: list[dict], notes: list[str]) -> NotebookNode:
        lines = ["### Grading notes", ""]
        if violations:
            lines += [
                f"**{HELD_PREFIX}.** This notebook uses code the course's submission policy does "
                "not allow, so its autograded points are held until your instructor has "
                "reviewed it:",
                "",
                *[f"- {line}" for line in policy_summary(violations, most=20).splitlines()],
                "",
            ]
        lines += [f"- {note}" for note in notes]
        cell = new_markdown_cell("\n".join(lines))
        cell.metadata["tags"] = [NOTES_CELL_TAG]
        return cell

    def _hold(self, resources, violations: list[dict], first_answer: str | None) -> None:
        meta = resources["nbgrader"]
        notebook, assignment, student = meta["notebook"], meta["assignment"], meta["student"]
        reason = f"{HELD_PREFIX}: {policy_summary(violations)}"
        with Gradebook(meta["db_url"]) as gb:
            submitted = gb.find_submission_notebook(notebook, assignment, student)
            submitted.flagged = True
            for grade in submitted.grades:
                if grade.cell.cell_type == "code" and grade.manual_score is None:
                    grade.needs_manual_grade = True
            for comment in submitted.comments:
                if comment.cell.name == first_answer:
                    comment.auto_comment = reason
            gb.db.commit()
