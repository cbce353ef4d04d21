"""Grades out of the gradebook for a whole class, fast: per problem, per assignment, for the LMS.

    python -m course_tools.grading export                         # grades.csv, per assignment
    python -m course_tools.grading export --format problems       # one row per test / answer
    python -m course_tools.grading export --format canvas --to canvas.csv
    python -m course_tools.grading export --format moodle --to moodle.csv

``nbgrader export`` walks the ORM: a few queries per student and assignment, minutes for a
large class (nbgrader issue #799). `load_class` reads the gradebook in seven queries (any
database SQLAlchemy knows) and everything else happens in memory, with the same rules as the
course's `export.CourseCsvExportPlugin`:

- a test's score is its manual score if a person gave one, else its autograded score (plus
  extra credit); an answer nobody graded counts 0;
- points held for review (policy violation: a code test marked ``needs_manual_grade`` that no
  person has scored) are not counted in ``raw_score`` but kept in ``held_score``;
- a submission whose autograding never finished (a code test without a score) has an empty
  score, never 0;
- a student who handed nothing in gets 0, "not submitted".

The LMS files (Canvas, Moodle) carry a grade only where it is final (status "graded", or 0
for "not submitted"); held, unfinished and half-graded submissions are left blank, so an
import never posts a number a person still has to look at. `lms_blanks` lists them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from course_tools.grading.export import CSV_COLUMNS
from course_tools.grading.gradebook import HELD_PREFIX

FORMATS = ("assignments", "problems", "canvas", "moodle")


@dataclass
class ProblemGrade:
    """One graded cell of one submission (a test, a written answer, a task)."""

    notebook: str
    problem: str  # the cell's grade_id
    cell_type: str  # "code" (autograded test) or "markdown" (written answer)
    max_score: float
    auto_score: float | None
    manual_score: float | None
    extra_credit: float | None
    needs_manual_grade: bool

    @property
    def score(self) -> float:
        """nbgrader's ``Grade.score``: manual if given, else autograded, plus extra credit."""
        extra = self.extra_credit or 0.0
        if self.manual_score is not None:
            return self.manual_score + extra
        if self.auto_score is not None:
            return self.auto_score + extra
        return 0.0

    @property
    def held(self) -> bool:
        """Autograded points waiting for review (see `gradebook.is_held`)."""
        return self.cell_type == "code" and self.needs_manual_grade and self.manual_score is None

    @property
    def status(self) -> str:
        if self.cell_type == "code" and self.auto_score is None:
            return "not graded (autograding incomplete or failed)"
        if self.held:
            return "held for review"
        if self.cell_type != "code" and self.needs_manual_grade:
            return "manual grading pending"
        return "graded"


@dataclass
class Submission:
    """One student's submission of one assignment, with its grades."""

    timestamp: datetime | None
    late_submission_penalty: float
    grades: list[ProblemGrade] = field(default_factory=list)
    review_note: str = ""

    @property
    def held_score(self) -> float:
        return sum(g.auto_score or 0.0 for g in self.grades if g.held)

    @property
    def incomplete(self) -> bool:
        return any(g.cell_type == "code" and g.auto_score is None for g in self.grades)

    @property
    def status(self) -> str:
        if self.incomplete:
            return "not graded (autograding incomplete or failed)"
        if any(g.held for g in self.grades):
            return "held for review"
        if any(g.cell_type != "code" and g.needs_manual_grade for g in self.grades):
            return "manual grading pending"
        return "graded"

    @property
    def raw_score(self) -> float:
        return sum(g.score for g in self.grades) - self.held_score

    @property
    def score(self) -> float:
        return max(0.0, self.raw_score - self.late_submission_penalty)


@dataclass
class ClassGrades:
    """Everything an export needs, read from the gradebook in one go."""

    assignments: list[dict]  # name, duedate, max_score; in nbgrader's order (due date, name)
    students: list[dict]  # id, first_name, last_name, email, lms_user_id; by name
    submissions: dict[tuple[str, str], Submission]  # (assignment, student id) -> submission

    def select(self, assignments: Sequence[str] = (), students: Sequence[str] = ()):
        """Only these assignments / students (all when empty); unknown names are an error."""
        for wanted, known, what in (
            (assignments, [a["name"] for a in self.assignments], "assignment"),
            (students, [s["id"] for s in self.students], "student"),
        ):
            unknown = sorted(set(wanted) - set(known))
            if unknown:
                raise ValueError(f"no {what} {', '.join(unknown)} in the gradebook")
        return ClassGrades(
            [a for a in self.assignments if not assignments or a["name"] in assignments],
            [s for s in self.students if not students or s["id"] in students],
            self.submissions,
        )


def load_class(db_url: str) -> ClassGrades:
    """Read assignments, students, submissions and every grade of a gradebook (7 queries)."""
    from nbgrader.api import (
        Assignment,
        BaseCell,
        Comment,
        Grade,
        GradeCell,
        Notebook,
        Student,
        SubmittedAssignment,
        SubmittedNotebook,
        TaskCell,
    )
    from sqlalchemy import create_engine, func, select

    a, nb, bc = Assignment.__table__, Notebook.__table__, BaseCell.__table__
    gc, tc, st = GradeCell.__table__, TaskCell.__table__, Student.__table__
    sa, sn, gr, cm = (
        SubmittedAssignment.__table__,
        SubmittedNotebook.__table__,
        Grade.__table__,
        Comment.__table__,
    )
    engine = create_engine(db_url)
    try:
        with engine.connect() as db:
            assignment_rows = db.execute(
                select(a.c.id, a.c.name, a.c.duedate).order_by(a.c.duedate, a.c.name)
            ).all()
            cells = {
                row.id: row
                for row in db.execute(
                    select(
                        bc.c.id,
                        bc.c.name,
                        nb.c.name.label("notebook"),
                        nb.c.assignment_id,
                        func.coalesce(gc.c.max_score, tc.c.max_score).label("max_score"),
                        func.coalesce(gc.c.cell_type, tc.c.cell_type).label("cell_type"),
                    )
                    .join(nb, bc.c.notebook_id == nb.c.id)
                    .outerjoin(gc, gc.c.id == bc.c.id)
                    .outerjoin(tc, tc.c.id == bc.c.id)
                    .where((gc.c.id.is_not(None)) | (tc.c.id.is_not(None)))
                )
            }
            students = [
                dict(row._mapping)
                for row in db.execute(
                    select(
                        st.c.id, st.c.first_name, st.c.last_name, st.c.email, st.c.lms_user_id
                    ).order_by(st.c.last_name, st.c.first_name, st.c.id)
                )
            ]
            submitted = db.execute(
                select(sa.c.id, sa.c.assignment_id, sa.c.student_id, sa.c.timestamp)
            ).all()
            notebooks = db.execute(
                select(sn.c.id, sn.c.assignment_id, sn.c.late_submission_penalty)
            ).all()
            grades = db.execute(
                select(
                    gr.c.notebook_id,
                    gr.c.cell_id,
                    gr.c.auto_score,
                    gr.c.manual_score,
                    gr.c.extra_credit,
                    gr.c.needs_manual_grade,
                )
            ).all()
            notes = db.execute(
                select(cm.c.notebook_id, cm.c.auto_comment).where(
                    cm.c.auto_comment.like(f"{HELD_PREFIX}%")
                )
            ).all()
    finally:
        engine.dispose()

    names = {row.id: row.name for row in assignment_rows}
    max_scores: dict[str, float] = defaultdict(float)
    for cell in cells.values():
        max_scores[cell.assignment_id] += cell.max_score or 0.0
    assignments = [
        {"name": row.name, "duedate": row.duedate, "max_score": max_scores[row.id]}
        for row in assignment_rows
    ]
    by_id: dict[str, Submission] = {}
    submissions: dict[tuple[str, str], Submission] = {}
    for row in submitted:
        submission = Submission(row.timestamp, 0.0)
        by_id[row.id] = submission
        submissions[(names[row.assignment_id], row.student_id)] = submission
    owner: dict[str, Submission] = {}
    for row in notebooks:
        submission = by_id[row.assignment_id]
        submission.late_submission_penalty += row.late_submission_penalty or 0.0
        owner[row.id] = submission
    for row in grades:
        cell = cells.get(row.cell_id)
        if cell is None:  # a grade of a cell that is no longer graded
            continue
        owner[row.notebook_id].grades.append(
            ProblemGrade(
                cell.notebook,
                cell.name,
                cell.cell_type,
                cell.max_score or 0.0,
                row.auto_score,
                row.manual_score,
                row.extra_credit,
                bool(row.needs_manual_grade),
            )
        )
    for row in sorted(notes, key=lambda r: r.notebook_id):
        submission = owner.get(row.notebook_id)
        held = row.auto_comment.startswith(HELD_PREFIX)  # LIKE ignores case in SQLite
        if submission is not None and held and not submission.review_note:
            submission.review_note = row.auto_comment
    for submission in submissions.values():
        submission.grades.sort(key=lambda g: (g.notebook, g.problem))
    return ClassGrades(assignments, students, submissions)


# --- the files -------------------------------------------------------------------------------


def assignment_rows(grades: ClassGrades) -> list[dict]:
    """One row per (assignment, student): the columns of `export.CourseCsvExportPlugin`."""
    rows = []
    for assignment in grades.assignments:
        for student in grades.students:
            row = {
                "assignment": assignment["name"],
                "duedate": assignment["duedate"] or "",
                "student_id": student["id"],
                "last_name": student["last_name"] or "",
                "first_name": student["first_name"] or "",
                "email": student["email"] or "",
                "max_score": assignment["max_score"],
            }
            submission = grades.submissions.get((assignment["name"], student["id"]))
            if submission is None:
                zero = {"raw_score": 0.0, "late_submission_penalty": 0.0, "score": 0.0}
                row |= zero | {"timestamp": "", "status": "not submitted", "held_score": 0.0}
                rows.append(row)
                continue
            status, incomplete = submission.status, submission.incomplete
            row |= {
                "timestamp": submission.timestamp or "",
                "raw_score": "" if incomplete else submission.raw_score,
                "late_submission_penalty": submission.late_submission_penalty,
                "score": "" if incomplete else submission.score,
                "status": status,
                "held_score": submission.held_score,
                "review_note": submission.review_note if status == "held for review" else "",
            }
            rows.append(row)
    return rows


PROBLEM_COLUMNS = [
    "assignment",
    "notebook",
    "problem",
    "cell_type",
    "student_id",
    "auto_score",
    "manual_score",
    "extra_credit",
    "score",
    "max_score",
    "status",
]


def problem_rows(grades: ClassGrades) -> list[dict]:
    """One row per graded cell of every submission (students who handed nothing in: none)."""
    rows = []
    for assignment in grades.assignments:
        for student in grades.students:
            submission = grades.submissions.get((assignment["name"], student["id"]))
            for g in submission.grades if submission else ():
                rows.append(
                    {
                        "assignment": assignment["name"],
                        "notebook": g.notebook,
                        "problem": g.problem,
                        "cell_type": g.cell_type,
                        "student_id": student["id"],
                        "auto_score": "" if g.auto_score is None else g.auto_score,
                        "manual_score": "" if g.manual_score is None else g.manual_score,
                        "extra_credit": "" if g.extra_credit is None else g.extra_credit,
                        "score": "" if g.status.startswith("not graded") else g.score,
                        "max_score": g.max_score,
                        "status": g.status,
                    }
                )
    return rows


def lms_score(submission: Submission | None) -> float | None:
    """The grade an LMS may receive: final scores only (None: leave the cell blank)."""
    if submission is None:
        return 0.0  # nothing handed in: nbgrader's 0
    if submission.status != "graded":
        return None
    return submission.score


def lms_blanks(grades: ClassGrades) -> list[tuple[str, str, str]]:
    """(student, assignment, status) of every grade an LMS file leaves blank."""
    return [
        (student["id"], assignment["name"], grades.submissions[key].status)
        for assignment in grades.assignments
        for student in grades.students
        if lms_score(grades.submissions.get(key := (assignment["name"], student["id"]))) is None
    ]


def _lms_table(grades: ClassGrades, identity_columns: list[str], identity) -> list[list]:
    table = [identity_columns + [a["name"] for a in grades.assignments]]
    for student in grades.students:
        scores = [
            lms_score(grades.submissions.get((a["name"], student["id"])))
            for a in grades.assignments
        ]
        table.append(identity(student) + ["" if s is None else f"{s:g}" for s in scores])
    return table


def canvas_table(grades: ClassGrades) -> list[list]:
    """Canvas's gradebook CSV (Grades > Import): the five identity columns, then one column per
    assignment, and a "Points Possible" row under the header. Canvas matches students by ID,
    SIS User ID or SIS Login ID (here: the LMS user id, -, and the nbgrader student id), and
    makes a new assignment of a column whose name it does not know."""
    columns = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]

    def identity(student: dict) -> list:
        name = ", ".join(p for p in (student["last_name"], student["first_name"]) if p)
        return [name or student["id"], student["lms_user_id"] or "", "", student["id"], ""]

    table = _lms_table(grades, columns, identity)
    maxima = [f"{a['max_score']:g}" for a in grades.assignments]
    points = ["Points Possible", "", "", "", "", *maxima]
    return [table[0], points, *table[1:]]


def moodle_table(grades: ClassGrades) -> list[list]:
    """Moodle's grade import (Grades > Import > CSV file): a user column (map "Username" to
    username, or "Email address" to email) and one column per grade item to map."""
    columns = ["First name", "Last name", "Username", "ID number", "Email address"]

    def identity(student: dict) -> list:
        return [
            student["first_name"] or "",
            student["last_name"] or "",
            student["id"],
            student["lms_user_id"] or "",
            student["email"] or "",
        ]

    return _lms_table(grades, columns, identity)


def write_csv(rows: list[dict] | list[list], path: Path, columns: list[str] | None = None) -> Path:
    """Write dict rows (with ``columns``) or list rows (the first one the header)."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        if columns is None:
            csv.writer(fh).writerows(rows)
        else:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            writer.writerows(rows)
    return path


def export(
    db_url: str,
    path: Path,
    fmt: str = "assignments",
    assignments: Sequence[str] = (),
    students: Sequence[str] = (),
) -> ClassGrades:
    """Write the grades of a gradebook in one of `FORMATS` to ``path``; returns what it read."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    grades = load_class(db_url).select(assignments, students)
    if fmt == "assignments":
        write_csv(assignment_rows(grades), path, CSV_COLUMNS)
    elif fmt == "problems":
        write_csv(problem_rows(grades), path, PROBLEM_COLUMNS)
    elif fmt == "canvas":
        write_csv(canvas_table(grades), path)
    else:
        write_csv(moodle_table(grades), path)
    return grades


def export_command(
    course_dir: Path, fmt: str, to: Path | None = None, assignments: Sequence[str] = ()
) -> int:
    """``python -m course_tools.grading export``: write the file, say what it holds; exit code."""
    import time

    from course_tools.grading.course import CONFIG_FILE
    from course_tools.grading.database import gradebook_url, sqlite_path

    if not (course_dir / CONFIG_FILE).is_file():
        print(f"error: no {CONFIG_FILE} in {course_dir}: run from the course root or pass --course")
        return 2
    url = gradebook_url(course_dir)
    db = sqlite_path(url)
    if db is not None and not db.is_file():
        print(f"error: no gradebook at {db}: nothing was graded yet")
        return 2
    target = Path(to or course_dir / f"grades-{fmt}.csv").resolve()
    start = time.perf_counter()
    try:
        grades = export(url, target, fmt, assignments)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(
        f"wrote {target}: {len(grades.students)} students x {len(grades.assignments)} "
        f"assignments in {time.perf_counter() - start:.1f} s"
    )
    if fmt in ("canvas", "moodle"):
        blanks = lms_blanks(grades)
        if blanks:
            print(f"{len(blanks)} grade(s) left blank because they are not final yet:")
            for student, assignment, status in blanks[:20]:
                print(f"  {student} {assignment}: {status}")
            if len(blanks) > 20:
                print(f"  ... and {len(blanks) - 20} more (--format assignments lists them all)")
    return 0
