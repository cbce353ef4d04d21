"""Autograding: one submission at a time, each in its own `nbgrader autograde` process.

`autograde_submission` is the unit: grade one student's submission of one assignment in a fresh
`nbgrader autograde --student` process, whose kernels run in the sandbox (nbgrader_config.py:
`GradingExecute`). Everything else loops over it, so one crashing submission never stops the
others, and the time per notebook is measured.

Nothing is lost and nothing is silently skipped:
- `submitted/` is only ever read; the gradebook is copied to ``gradebook_backups/`` before a run;
- a submission counts as graded only when every notebook was executed to the end
  (`GradingExecute` stamps it) and every test has a score in the gradebook. A run killed at any
  point leaves the submission incomplete (nbgrader itself would skip the half-written
  ``autograded/`` folder forever); the next run regrades it with ``--force``. A graded
  submission is skipped, never regraded over;
- a submission whose grading fails is reported as failed, never shown as 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from course_tools.grading.course import GradingError, list_assignments, run_nbgrader
from course_tools.grading.execute import METADATA_KEY
from course_tools.grading.export import export_grades, format_table, generate_feedback
from course_tools.grading.gradebook import backup_gradebook, gradebook, register
from course_tools.grading.release import copy_submissions, generate_release


def autograde(
    course_dir: Path, assignment: str, student: str | None = None, extra_args: Sequence[str] = ()
) -> float:
    """``nbgrader autograde`` one assignment (all submitted students, or one); returns seconds.

    No `--force`: submissions that were autograded before are skipped, so a rerun after a crash
    grades only what is missing and never throws away existing grades. ``extra_args`` go to
    nbgrader as they are (e.g. ``--IgnorePattern.enabled=False``).
    """
    args = ["autograde", assignment, *extra_args]
    if student:
        args.append(f"--student={student}")
    start = time.perf_counter()
    run_nbgrader(course_dir, *args)
    return time.perf_counter() - start


def _notebook_executed(path: Path) -> bool:
    """Whether an autograded notebook was executed to the end (stamped by `GradingExecute`)."""
    try:
        metadata = json.loads(path.read_text()).get("metadata", {})
    except (OSError, ValueError):
        return False
    return bool(metadata.get(METADATA_KEY, {}).get("executed"))


def is_graded(course_dir: Path, assignment: str, student: str, gb=None) -> bool:
    """Whether the submission was autograded to the end: every submitted notebook executed and
    stamped in ``autograded/`` (and not handed in again since), and every test of it scored in
    the gradebook. ``gb``: an open Gradebook to reuse when checking many submissions."""
    from nbgrader.api import MissingEntry

    course_dir = Path(course_dir)
    submitted = course_dir / "submitted" / student / assignment
    graded = course_dir / "autograded" / student / assignment
    with gradebook(course_dir) if gb is None else nullcontext(gb) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return False
        for notebook in submission.notebooks:
            if not (submitted / f"{notebook.name}.ipynb").is_file():
                continue  # not handed in: nbgrader scores it 0, nothing to execute
            result = graded / f"{notebook.name}.ipynb"
            if not _notebook_executed(result):
                return False
            if (submitted / f"{notebook.name}.ipynb").stat().st_mtime > result.stat().st_mtime:
                return False  # handed in again since it was graded
            if any(g.auto_score is None for g in notebook.grades if g.cell.cell_type == "code"):
                return False
    return True


def autograde_submission(course_dir: Path, assignment: str, student: str) -> float | None:
    """Autograde one submission in a fresh nbgrader process; seconds taken, None if skipped.

    Skips a submission already graded to the end (`is_graded`); regrades (``--force``) one that
    a killed or failed run left incomplete. Raises GradingError when it cannot be graded.
    """
    course_dir = Path(course_dir)
    if is_graded(course_dir, assignment, student):
        return None
    started = (course_dir / "autograded" / student / assignment).exists()
    extra = ["--force"] if started else []
    seconds = autograde(course_dir, assignment, student, extra_args=extra)
    if not is_graded(course_dir, assignment, student):
        raise GradingError(
            f"`nbgrader autograde {assignment} --student={student}` finished but the submission "
            "is not fully graded (see nbgrader's log); it will be regraded on the next run"
        )
    return seconds


def check_sandbox(course_dir: Path) -> None:
    """Raise GradingError (with the reason and the way out) when the course's configuration
    would refuse to start sandboxed kernels, before any submission is touched."""
    from traitlets.config import PyFileConfigLoader

    from course_tools.grading.course import CONFIG_FILE
    from course_tools.grading.sandbox import sandbox_problem

    config = PyFileConfigLoader(CONFIG_FILE, path=str(course_dir)).load_config()
    problem = sandbox_problem(config)
    if problem:
        raise GradingError(problem)


def submitted_students(course_dir: Path, assignment: str) -> list[str]:
    """Students with a collected ``submitted/<student>/<assignment>/`` folder, sorted."""
    submitted = Path(course_dir) / "submitted"
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir())


@dataclass
class GradingRun:
    """What a grading run did: autograde seconds per notebook, failures, where outputs are."""

    course_dir: Path
    assignments: list[str]
    autograde_seconds: dict[tuple[str, str], float]  # (assignment, student) -> seconds
    failures: dict[str, str]  # "assignment" or "assignment/student" -> nbgrader's log tail
    csv_path: Path | None = None
    backup: Path | None = None  # copy of the gradebook taken before grading
    results: list = field(default_factory=list)  # SubmissionResult of each (parallel runs)

    def seconds_per_assignment(self) -> dict[str, float]:
        """Total autograde seconds of each assignment (all its submissions)."""
        totals: dict[str, float] = {}
        for (assignment, _), seconds in self.autograde_seconds.items():
            totals[assignment] = totals.get(assignment, 0.0) + seconds
        return totals


def timing_table(run: GradingRun) -> str:
    """Autograde seconds per notebook: one row per student, one column per assignment."""
    students = sorted({student for _, student in run.autograde_seconds})
    rows = {
        student: {
            a: f"{run.autograde_seconds[(a, student)]:.1f}"
            for a in run.assignments
            if (a, student) in run.autograde_seconds
        }
        for student in students
    }
    totals = {a: f"{s:.1f}" for a, s in run.seconds_per_assignment().items()}
    return format_table(["student", *run.assignments], {**rows, "total": totals})


def start_run(
    course_dir: Path,
    assignment: str,
    students: Sequence[str] | None,
    run: GradingRun | None,
    log: Callable[[str], None],
) -> tuple[GradingRun, list[str]]:
    """What every grading run does first: ``(run, students)`` after the backup and registration.

    Back up the gradebook (unless ``run`` already holds a backup), take every collected
    submission when ``students`` is empty, and register the assignment and the students in the
    gradebook.
    """
    if run is None:
        run = GradingRun(course_dir, [assignment], {}, {})
    if run.backup is None:
        run.backup = backup_gradebook(course_dir)
        if run.backup:
            log(f"gradebook backed up to {run.backup}")
    students = list(students) if students else submitted_students(course_dir, assignment)
    register(course_dir, [assignment], students)
    return run, students


def autograde_assignment(
    course_dir: Path,
    assignment: str,
    students: Sequence[str] | None = None,
    run: GradingRun | None = None,
    log: Callable[[str], None] = print,
    jobs: int | None = None,
) -> GradingRun:
    """Autograde every collected submission of ``assignment`` (or only ``students``), one by one.

    Raises GradingError at once when the grading sandbox cannot be created. The gradebook is
    backed up first (unless ``run`` already holds a backup). A failing submission is logged in
    ``run.failures`` and the others are still graded. With ``jobs``, ``jobs`` long-lived worker
    processes grade concurrently (`parallel.autograde_parallel`).
    """
    course_dir = Path(course_dir)
    check_sandbox(course_dir)
    if jobs is not None:
        from course_tools.grading.parallel import autograde_parallel

        return autograde_parallel(course_dir, assignment, students, jobs, run=run, log=log)
    run, students = start_run(course_dir, assignment, students, run, log)
    for student in students:
        try:
            seconds = autograde_submission(course_dir, assignment, student)
        except GradingError as error:  # keep going: the other submissions still get graded
            run.failures[f"{assignment}/{student}"] = str(error)
            log(submission_line(assignment, student, "failed", error=str(error)))
            continue
        if seconds is None:
            log(submission_line(assignment, student, "skipped"))
            continue
        run.autograde_seconds[(assignment, student)] = seconds
        log(submission_line(assignment, student, "graded", seconds))
    return run


def submission_line(
    assignment: str, student: str, status: str, seconds: float = 0.0, error: str = ""
) -> str:
    """The line logged for each submission, by every way of grading: ``status`` is
    "graded" (``autograde <ps> of <student>: 7.1 s``), "skipped" or "failed"."""
    head = f"autograde {assignment} of {student}"
    if status == "skipped":
        return f"{head}: already graded, skipped"
    if status == "failed":
        return f"{head} FAILED (submission untouched):\n{error}"
    return f"{head}: {seconds:.1f} s"


def grade_course(
    course_dir: Path,
    examples_dir: Path,
    assignments: Sequence[str] | None = None,
    log=print,
    jobs: int | None = None,
) -> GradingRun:
    """Release, submissions, autograde, feedback and CSV in a prepared ``course_dir``.

    Each submission is autograded on its own (one `nbgrader autograde --student` each), so the
    time per notebook is measured and one crashing submission cannot stop the others. Failures
    are collected in ``failures``; nothing is deleted.
    """
    course_dir = Path(course_dir)
    check_sandbox(course_dir)
    assignments = list(assignments or list_assignments(course_dir))
    students = sorted(p.name for p in Path(examples_dir).iterdir() if p.is_dir())
    run = GradingRun(course_dir, assignments, {}, {})
    log(f"release: generate_assignment for {', '.join(assignments)}")
    generate_release(course_dir, assignments)
    register(course_dir, assignments, students)
    submissions = copy_submissions(examples_dir, course_dir, assignments)
    run.backup = backup_gradebook(course_dir)
    for assignment in assignments:
        graded = sorted(s for s, a in submissions if a == assignment)
        autograde_assignment(course_dir, assignment, graded, run=run, log=log, jobs=jobs)
        try:
            generate_feedback(course_dir, assignment)
        except GradingError as error:
            run.failures[assignment] = str(error)
            log(f"feedback for {assignment} FAILED:\n{error}")
    run.csv_path = export_grades(course_dir, course_dir / "grades.csv")
    return run
