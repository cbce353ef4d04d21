"""The gradebook: registering assignments and students, reading scores, manual grades, backups.

Scores are always read from the gradebook (never from exit codes: `nbgrader validate` exits 0
even when tests fail).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from course_tools.grading.course import COURSE_ID, venv_bin_on_path
from course_tools.grading.database import (
    copy_gradebook,
    gradebook_url,
    is_sqlite,
    sqlite_path,
    with_busy_timeout,
)

HELD_PREFIX = "Held for review"

BACKUP_DIR = "gradebook_backups"


def gradebook(course_dir: Path):
    """An ``nbgrader.api.Gradebook`` on the course's gradebook; use it in a ``with``.

    That is ``course_dir/gradebook.db``, or the database ``c.CourseDirectory.db_url`` names in
    the course's nbgrader_config.py (e.g. PostgreSQL, see `database`).
    """
    from nbgrader.api import Gradebook

    venv_bin_on_path()  # creating a gradebook runs `alembic` from PATH
    return Gradebook(with_busy_timeout(gradebook_url(course_dir)), COURSE_ID)


def register(course_dir: Path, assignments: Iterable[str], students: Iterable[str] = ()) -> None:
    """List the assignments and students in the gradebook (created if missing)."""
    with gradebook(course_dir) as gb:
        for assignment in assignments:
            gb.update_or_create_assignment(assignment)
        for student in students:
            gb.update_or_create_student(student)


def backup_gradebook(course_dir: Path, label: str = "autograde") -> Path | None:
    """Copy ``gradebook.db`` to ``gradebook_backups/gradebook-<time>-<label>.db``; return the copy.

    SQLite's online backup API gives a consistent copy even while another process writes.
    A gradebook on a database server (``db_url``) is copied table by table into the same kind
    of SQLite file (`database.copy_gradebook`). Returns None when there is no SQLite gradebook
    yet (nothing to lose).
    """
    course_dir = Path(course_dir)
    url = gradebook_url(course_dir)
    db = sqlite_path(url)
    if is_sqlite(url) and (db is None or not db.is_file()):
        return None
    folder = course_dir / BACKUP_DIR
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"gradebook-{stamp}-{label}.db"
    suffix = 1
    while target.exists():
        target = folder / f"gradebook-{stamp}-{label}-{suffix}.db"
        suffix += 1
    if db is None:
        return copy_gradebook(url, target)
    with sqlite3.connect(db) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return target


def move_aside(path: Path) -> Path | None:
    """Rename an existing ``path`` to ``<path>.bak-<timestamp>`` (never delete it)."""
    path = Path(path)
    if not path.exists():
        return None
    backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    suffix = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}")
        suffix += 1
    path.rename(backup)
    return backup


@dataclass(frozen=True)
class SubmissionScore:
    """Autograded and manual points of one submission, read from the gradebook."""

    student: str
    assignment: str
    auto_score: float
    auto_max: float
    manual_score: float  # points given by a human so far
    manual_max: float
    manual_pending: float  # points of manual cells nobody has graded yet
    held: float = 0.0  # autograded points held for review (policy violation), within auto_score
    incomplete: bool = False  # some test has no autograded score yet (grading never finished)
    flagged: bool = False  # some test waits for review (policy violation), even one worth 0 now
    note: str = ""  # why points are held

    @property
    def counted_score(self) -> float:
        """The points that count now: autograded minus held, plus manual."""
        return self.auto_score - self.held + self.manual_score

    @property
    def status(self) -> str:
        if self.incomplete:
            return "not graded (autograding incomplete or failed)"
        if self.flagged:
            return "held for review"
        if self.manual_pending:
            return "manual grading pending"
        return "graded"

    def summary(self) -> str:
        if self.incomplete:
            return "NOT GRADED (incomplete)"
        text = f"{self.auto_score:g}/{self.auto_max:g}"
        if self.flagged:
            text += " HELD for review"
        if self.manual_max:
            if self.manual_pending:
                text += f" +{self.manual_pending:g} manual pending"
            else:
                text += f" +{self.manual_score:g}/{self.manual_max:g} manual"
        return text


def read_scores(course_dir: Path) -> dict[tuple[str, str], SubmissionScore]:
    """``(student, assignment) -> SubmissionScore`` for every graded submission.

    Code grade cells are the autograded tests; markdown grade cells are the written answers graded
    by hand (pending while ``needs_manual_grade`` is set).
    """
    scores = {}
    with gradebook(course_dir) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                auto = auto_max = manual = manual_max = pending = held = 0.0
                incomplete = flagged = False
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        if grade.cell.cell_type == "code":
                            auto += grade.auto_score or 0.0
                            auto_max += grade.max_score
                            incomplete |= grade.auto_score is None
                            if is_held(grade):
                                held += grade.auto_score or 0.0
                                flagged = True
                        else:
                            manual_max += grade.max_score
                            if grade.manual_score is not None:
                                manual += grade.manual_score
                            elif grade.needs_manual_grade:
                                pending += grade.max_score
                            else:  # nbgrader gave an unchanged answer 0 automatically
                                manual += grade.auto_score or 0.0
                key = (submission.student.id, assignment.name)
                scores[key] = SubmissionScore(
                    *key,
                    auto,
                    auto_max,
                    manual,
                    manual_max,
                    pending,
                    held=held,
                    incomplete=incomplete,
                    flagged=flagged,
                    note=review_note(submission) if flagged else "",
                )
    return scores


def is_held(grade) -> bool:
    """An autograded test whose points wait for review (set by `ReportGrading`): a code cell
    marked ``needs_manual_grade`` that no person has scored yet."""
    return (
        grade.cell.cell_type == "code" and grade.needs_manual_grade and grade.manual_score is None
    )


def review_note(submission) -> str:
    """The reason a submission's points are held (the comment `ReportGrading` wrote), or ""."""
    for notebook in submission.notebooks:
        for comment in notebook.comments:
            if comment.auto_comment and comment.auto_comment.startswith(HELD_PREFIX):
                return comment.auto_comment
    return ""


def set_manual_grade(
    course_dir: Path, assignment: str, student: str, grade_id: str, points: float
) -> None:
    """Record a human grade for a manually graded cell (what the formgrader does)."""
    with gradebook(course_dir) as gb:
        grade = gb.find_grade(grade_id, assignment, assignment, student)
        grade.manual_score = points
        grade.needs_manual_grade = False
        gb.db.commit()
