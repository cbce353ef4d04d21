"""Synthetic classes for the scale tests and the throughput benchmark, made in seconds.

- `tiny_assignment` + `submit`: a one-exercise assignment (``add``, 2 points; optionally a test
  cell that runs before the student's code) and students' answers to it;
- `example_class`: many students handing in copies of the shipped example submissions of one
  problem set (complete, partial, alternative, blank, cheat), with the score each must get;
- `synthetic_gradebook`: a graded gradebook of N students x M problem sets written straight
  into nbgrader's tables, with every status an export must handle (graded, held for review,
  autograding incomplete, written answers pending, late, not submitted).
"""

from __future__ import annotations

import random
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from nbformat.v4 import new_code_cell, new_notebook

from course_tools import notebooks as nbtools
from course_tools.grading.course import (
    COURSE_ID,
    EXAMPLES_DIR,
    REPO_ROOT,
    new_course,
    release_notebook,
    source_notebook,
)
from course_tools.grading.gradebook import HELD_PREFIX, register
from course_tools.grading.release import expected_scores, generate_release

ANSWER_ID = "add"


def tiny_assignment(course_dir: Path, assignment: str = "tiny", first_test: str = "") -> Path:
    """A course (created if missing) with a one-exercise assignment, released.

    The student writes ``add(a, b)``; the test ``test_add`` (2 points) checks it. With
    ``first_test``, a test cell ``test_first`` (1 point) runs that code *before* the
    student's answer (e.g. checks that the kernel is fresh).
    """
    course_dir = Path(course_dir)
    if not course_dir.exists():
        new_course(course_dir, assignments=[])
    cells = []
    if first_test:
        cells.append(
            new_code_cell(
                first_test,
                metadata=nbtools.new_nbgrader_metadata(
                    "test_first", grade=True, locked=True, points=1
                ),
            )
        )
    cells += [
        new_code_cell(
            "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
            metadata=nbtools.new_nbgrader_metadata(ANSWER_ID, solution=True),
        ),
        new_code_cell(
            "assert add(1, 2) == 3",
            metadata=nbtools.new_nbgrader_metadata("test_add", grade=True, locked=True, points=2),
        ),
    ]
    source = new_notebook(cells=cells)
    source.metadata["kernelspec"] = {"name": "python3", "display_name": "P", "language": "python"}
    nbtools.write_notebook(source, source_notebook(course_dir, assignment))
    generate_release(course_dir, [assignment])
    return course_dir


def submit(course_dir: Path, assignment: str, student: str, answer: str) -> Path:
    """Hand in the release of ``assignment`` with ``answer`` as the code of the answer cell."""
    release = nbtools.read_notebook(release_notebook(course_dir, assignment))
    for cell in release.cells:
        if nbtools.nbgrader_meta(cell).get("grade_id") == ANSWER_ID:
            cell.source = answer
    path = Path(course_dir) / "submitted" / student / assignment / f"{assignment}.ipynb"
    nbtools.write_notebook(release, path)
    return path


def example_class(
    course_dir: Path,
    assignment: str,
    n_students: int,
    kinds: tuple[str, ...] = ("complete", "partial", "alternative", "blank", "cheat"),
    repo_root: Path = REPO_ROOT,
) -> dict[str, float]:
    """A course whose ``n_students`` hand in copies of the example submissions of
    ``assignment`` (kinds in turn); returns student -> the autograded score expected."""
    examples = Path(repo_root) / EXAMPLES_DIR / "submissions"
    kinds = tuple(k for k in kinds if (examples / f"example-{k}" / assignment).is_dir())
    course_dir = Path(course_dir)
    if not course_dir.exists():
        new_course(course_dir, repo_root, assignments=[assignment])
    generate_release(course_dir, [assignment])
    expected = expected_scores(repo_root, [assignment])
    scores = {}
    for index in range(n_students):
        kind = kinds[index % len(kinds)]
        student = f"s{index:04d}-{kind}"
        dest = course_dir / "submitted" / student / assignment
        if not dest.exists():
            shutil.copytree(examples / f"example-{kind}" / assignment, dest)
        scores[student] = expected[(f"example-{kind}", assignment)]
    register(course_dir, [assignment], list(scores))
    return scores


# --- a graded gradebook, straight into nbgrader's tables -------------------------------------

STATUS_WEIGHTS = {
    "graded": 0.84,
    "not submitted": 0.04,
    "held": 0.03,
    "incomplete": 0.03,
    "manual pending": 0.04,
    "late": 0.02,
}


def synthetic_gradebook(
    db_url: str,
    n_students: int,
    n_assignments: int,
    tests_per_assignment: int = 8,
    seed: int = 0,
) -> dict[str, int]:
    """Fill an empty gradebook with a graded class; returns the number of rows per table.

    Each problem set has one notebook with ``tests_per_assignment`` autograded test cells
    (code, 1-5 points), one written answer (markdown, 5 points) and one answer cell (where
    the grading notes' comment goes). Each (student, problem set) gets a status drawn with
    `STATUS_WEIGHTS`.
    """
    from nbgrader.api import (
        Comment,
        Grade,
        Gradebook,
        Student,
        SubmittedAssignment,
        SubmittedNotebook,
    )

    rng = random.Random(seed)
    due = datetime(2026, 3, 1, 12, 0)
    cells: dict[str, list] = {}  # assignment -> [(cell id, cell type, max score)]
    notebooks: dict[str, str] = {}
    answers: dict[str, str] = {}
    assignment_ids: dict[str, str] = {}
    with Gradebook(db_url, COURSE_ID) as gb:
        for a in range(n_assignments):
            name = f"ps{a + 1}_synthetic"
            assignment = gb.update_or_create_assignment(name, duedate=due + timedelta(days=7 * a))
            assignment_ids[name] = assignment.id
            notebook = gb.update_or_create_notebook(name, name)
            notebooks[name] = notebook.id
            graded = []
            for t in range(tests_per_assignment):
                cell = gb.update_or_create_grade_cell(
                    f"test_{t}", name, name, max_score=float(rng.randint(1, 5)), cell_type="code"
                )
                graded.append((cell.id, "code", cell.max_score))
            written = gb.update_or_create_grade_cell(
                "written", name, name, max_score=5.0, cell_type="markdown"
            )
            graded.append((written.id, "markdown", 5.0))
            answers[name] = gb.update_or_create_solution_cell("answer", name, name).id
            cells[name] = graded
        engine = gb.engine
    students = [
        {
            "id": f"student{i:05d}",
            "first_name": f"First{i}",
            "last_name": f"Last{i:05d}",
            "email": f"student{i:05d}@example.edu",
            "lms_user_id": str(100000 + i),
        }
        for i in range(n_students)
    ]
    rows: dict[str, list[dict]] = {"assignment": [], "notebook": [], "grade": [], "comment": []}
    statuses, weights = zip(*STATUS_WEIGHTS.items(), strict=True)
    for s in students:
        for a, (name, graded) in enumerate(cells.items()):
            status = rng.choices(statuses, weights)[0]
            if status == "not submitted":
                continue
            submission_id, notebook_id = uuid.uuid4().hex, uuid.uuid4().hex
            late = status == "late"
            rows["assignment"].append(
                {
                    "id": submission_id,
                    "assignment_id": assignment_ids[name],
                    "student_id": s["id"],
                    "timestamp": due + timedelta(days=7 * a, hours=rng.choice([-30, -2, 3])),
                    "extension": timedelta(hours=12) if rng.random() < 0.02 else None,
                }
            )
            rows["notebook"].append(
                {
                    "id": notebook_id,
                    "assignment_id": submission_id,
                    "notebook_id": notebooks[name],
                    "flagged": status == "held",
                    "late_submission_penalty": 2.0 if late else None,
                }
            )
            missing = rng.randrange(tests_per_assignment) if status == "incomplete" else -1
            for index, (cell_id, cell_type, max_score) in enumerate(graded):
                grade = {
                    "id": uuid.uuid4().hex,
                    "notebook_id": notebook_id,
                    "cell_id": cell_id,
                    "auto_score": float(rng.choice([0.0, max_score, max_score])),
                    "manual_score": None,
                    "extra_credit": 1.0 if rng.random() < 0.01 else None,
                    "needs_manual_grade": False,
                }
                if cell_type == "markdown":
                    grade["auto_score"] = None
                    if status == "manual pending":
                        grade["needs_manual_grade"] = True
                    else:
                        grade["manual_score"] = float(rng.randint(0, 5))
                elif status == "held":
                    grade["needs_manual_grade"] = True
                elif index == missing:
                    grade["auto_score"] = None
                rows["grade"].append(grade)
            note = f"{HELD_PREFIX}: answer line 1: not allowed (rule)" if status == "held" else None
            rows["comment"].append(
                {
                    "id": uuid.uuid4().hex,
                    "notebook_id": notebook_id,
                    "cell_id": answers[name],
                    "auto_comment": note,
                    "manual_comment": None,
                }
            )
    tables = [
        (Student.__table__, students),
        (SubmittedAssignment.__table__, rows["assignment"]),
        (SubmittedNotebook.__table__, rows["notebook"]),
        (Grade.__table__, rows["grade"]),
        (Comment.__table__, rows["comment"]),
    ]
    with engine.begin() as connection:
        for table, values in tables:
            if values:
                connection.execute(table.insert(), values)
    engine.dispose()
    return {table.name: len(values) for table, values in tables}
