"""What leaves the gradebook: `nbgrader export` (grades.csv), feedback pages, plain-text tables."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from course_tools.grading.course import run_nbgrader
from course_tools.grading.gradebook import SubmissionScore


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
