"""What leaves the gradebook: `nbgrader export` (grades.csv), feedback pages, plain-text tables.

`CourseCsvExportPlugin` (``c.ExportApp.plugin_class`` in nbgrader_config.py) writes nbgrader's
CSV columns plus ``status``, ``held_score`` and ``review_note``: points held for review after a
policy violation are neither given (``raw_score`` leaves them out until a person confirms them in
the formgrader) nor zeroed (``held_score`` keeps them), and a submission whose autograding never
finished says so instead of showing 0.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from nbgrader.api import MissingEntry
from nbgrader.plugins import CsvExportPlugin

from course_tools.grading.course import run_nbgrader
from course_tools.grading.gradebook import SubmissionScore, is_held, review_note

CSV_COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
    "status",
    "held_score",
    "review_note",
]


class CourseCsvExportPlugin(CsvExportPlugin):
    """nbgrader's CSV export with the review status of each submission (properly quoted)."""

    def export(self, gradebook) -> None:
        dest = self.to or "grades.csv"
        students = {str(s) for s in self.student}
        assignments = {str(a) for a in self.assignment}
        self.log.info("Exporting grades to %s", dest)
        with open(dest, "w", newline="") as fh:
            writer = csv.DictWriter(fh, CSV_COLUMNS)
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    writer.writerow(self._row(gradebook, assignment, student))

    @staticmethod
    def _row(gradebook, assignment, student) -> dict:
        row = {
            "assignment": assignment.name,
            "duedate": assignment.duedate or "",
            "student_id": student.id,
            "last_name": student.last_name or "",
            "first_name": student.first_name or "",
            "email": student.email or "",
            "max_score": assignment.max_score,
        }
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            zero = {"raw_score": 0.0, "late_submission_penalty": 0.0, "score": 0.0}
            return {**row, **zero, "timestamp": "", "status": "not submitted", "held_score": 0.0}
        grades = [g for nb in submission.notebooks for g in nb.grades]
        held = sum(g.auto_score or 0.0 for g in grades if is_held(g))
        under_review = any(is_held(g) for g in grades)
        incomplete = any(g.cell.cell_type == "code" and g.auto_score is None for g in grades)
        pending = any(g.cell.cell_type != "code" and g.needs_manual_grade for g in grades)
        raw = submission.score - held
        penalty = submission.late_submission_penalty or 0.0
        if incomplete:
            status = "not graded (autograding incomplete or failed)"
        elif under_review:
            status = "held for review"
        elif pending:
            status = "manual grading pending"
        else:
            status = "graded"
        return {
            **row,
            "timestamp": submission.timestamp or "",
            "raw_score": "" if incomplete else raw,
            "late_submission_penalty": penalty,
            "score": "" if incomplete else max(0.0, raw - penalty),
            "status": status,
            "held_score": held,
            "review_note": review_note(submission) if under_review else "",
        }


def generate_feedback(course_dir: Path, assignment: str) -> None:
    """``nbgrader generate_feedback``: HTML in ``feedback/<student>/<ps>/<ps>.html``."""
    run_nbgrader(course_dir, "generate_feedback", assignment)


def export_grades(course_dir: Path, csv_path: Path) -> Path:
    """``nbgrader export``: one CSV row per student and assignment."""
    run_nbgrader(course_dir, "export", f"--to={Path(csv_path).resolve()}")
    return Path(csv_path)


def read_grades_csv(csv_path: Path) -> list[dict[str, str]]:
    """The rows of an ``nbgrader export`` CSV."""
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def format_table(header: Sequence[str], rows: dict[str, dict[str, str]]) -> str:
    """Plain-text columns: ``rows[label][column]``, "-" where a value is missing."""
    lines = [list(header)] + [
        [label] + [values.get(column, "-") for column in header[1:]]
        for label, values in rows.items()
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in text)


def grade_table(scores: dict[tuple[str, str], SubmissionScore], assignments: Sequence[str]) -> str:
    """A plain-text table: one row per student, one column per assignment."""
    rows: dict[str, dict[str, str]] = {}
    for (student, assignment), score in sorted(scores.items()):
        rows.setdefault(student, {})[assignment] = score.summary()
    return format_table(["student", *assignments], rows)
