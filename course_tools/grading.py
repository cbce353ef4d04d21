"""The nbgrader pipeline of the course: release, example submissions, autograde, feedback, grades.

    python -m course_tools.grading release    # regenerate assignments/ and examples/submissions/
    python -m course_tools.grading examples   # only examples/submissions/ (from the release)
    python -m course_tools.grading demo       # grade the examples in demo_course/, print a table

nbgrader runs as a subprocess (`python -m nbgrader ...`, the venv's bin on PATH because nbgrader
calls `alembic` when it creates a gradebook) so that each step starts from a clean process and a
crash cannot leave this process half-configured; scores are read back with `nbgrader.api.Gradebook`
(never from exit codes: `nbgrader validate` exits 0 even when tests fail).

Nothing here deletes student work or grades:
- `submitted/` is only ever read; the demo makes the copied notebooks read-only.
- `nbgrader autograde` writes to `autograded/` and the gradebook; it runs without `--force`, so an
  already autograded submission is skipped, never regraded over.
- an existing `demo_course/` is moved aside to `demo_course.bak-<timestamp>`, not deleted;
- `release` only passes `--force` to `generate_assignment`, which rewrites `assignments/<ps>/`.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from course_tools import notebooks as nbtools

REPO_ROOT = Path(__file__).resolve().parents[1]
COURSE_ID = "cnn-course"
CONFIG_FILE = "nbgrader_config.py"
SOURCE_DIR = "solutions"
RELEASE_DIR = "assignments"
EXAMPLES_DIR = Path("examples")
# Students made from a spec ``examples/<kind>/<ps>.json`` (cells replaced in the complete example):
# partial = plausible mistakes, cheat = calls the library operator the exercise asks for (a spec
# exactly where a hidden test calls forbid), alternative = correct code in another style (full
# marks).
SPEC_STUDENTS = {
    "example-partial": "partial",
    "example-cheat": "cheat",
    "example-alternative": "alternative",
}
EXAMPLE_STUDENTS = ("example-complete", "example-blank", *SPEC_STUDENTS)
DEMO_DIR = "demo_course"


class GradingError(RuntimeError):
    """An nbgrader step failed; the message holds the tail of its log."""


# --- running nbgrader ----------------------------------------------------------------------


def _nbgrader_env() -> dict[str, str]:
    """The environment for nbgrader: the interpreter's bin first on PATH (alembic, jupyter)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    # Kernels of a grading run share the machine: one thread each keeps 2-core CPUs responsive.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return env


def run_nbgrader(course_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in ``course_dir``; raise GradingError on a non-zero exit."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(
        cmd, cwd=course_dir, env=_nbgrader_env(), capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        log_tail = (proc.stdout + proc.stderr)[-4000:]
        raise GradingError(f"`nbgrader {' '.join(args)}` failed in {course_dir}:\n{log_tail}")
    return proc


def gradebook(course_dir: Path):
    """An ``nbgrader.api.Gradebook`` on ``course_dir/gradebook.db``; use it in a ``with``."""
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}", COURSE_ID)


# --- course directories --------------------------------------------------------------------


def list_assignments(course_dir: Path = REPO_ROOT) -> list[str]:
    """Assignment ids with a source notebook ``solutions/<ps>/<ps>.ipynb``, sorted."""
    source = Path(course_dir) / SOURCE_DIR
    return sorted(path.name for path in source.iterdir() if (path / f"{path.name}.ipynb").is_file())


def source_notebook(course_dir: Path, assignment: str) -> Path:
    return Path(course_dir) / SOURCE_DIR / assignment / f"{assignment}.ipynb"


def release_notebook(course_dir: Path, assignment: str) -> Path:
    return Path(course_dir) / RELEASE_DIR / assignment / f"{assignment}.ipynb"


def new_course(
    course_dir: Path, repo_root: Path = REPO_ROOT, assignments: Sequence[str] | None = None
) -> Path:
    """A working course directory: the config and the source notebooks copied from the repo.

    ``assignments`` picks which sources to copy (default: all). ``course_dir`` must not exist:
    nothing is ever overwritten.
    """
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True)
    shutil.copy2(repo_root / CONFIG_FILE, course_dir / CONFIG_FILE)
    (course_dir / SOURCE_DIR).mkdir()
    for assignment in list_assignments(repo_root) if assignments is None else assignments:
        shutil.copytree(
            repo_root / SOURCE_DIR / assignment,
            course_dir / SOURCE_DIR / assignment,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
    return course_dir


def register(course_dir: Path, assignments: Iterable[str], students: Iterable[str] = ()) -> None:
    """List the assignments and students in the gradebook (created if missing)."""
    with gradebook(course_dir) as gb:
        for assignment in assignments:
            gb.update_or_create_assignment(assignment)
        for student in students:
            gb.update_or_create_student(student)


def generate_release(course_dir: Path, assignments: Sequence[str] | None = None) -> None:
    """``nbgrader generate_assignment <ps> --force`` for each assignment: source -> release.

    `--force` only replaces ``assignments/<ps>/``; the gradebook keeps its students and grades.
    """
    course_dir = Path(course_dir)
    assignments = list(assignments or list_assignments(course_dir))
    register(course_dir, assignments)
    for assignment in assignments:
        run_nbgrader(course_dir, "generate_assignment", assignment, "--force")


def release(repo_root: Path = REPO_ROOT) -> list[str]:
    """Regenerate the committed ``assignments/`` from ``solutions/``, then the example submissions.

    Deterministic: running it twice gives no git diff. The examples are rebuilt too because they
    are made from the release (see `make_examples`), so the two never go stale separately.
    """
    assignments = list_assignments(repo_root)
    generate_release(repo_root, assignments)
    make_examples(repo_root, assignments=assignments)
    return assignments


# --- example submissions -------------------------------------------------------------------


def spec_file(repo_root: Path, kind: str, assignment: str) -> Path:
    """``examples/<kind>/<ps>.json``: the cells that make a partial/cheat/alternative student."""
    return Path(repo_root) / EXAMPLES_DIR / kind / f"{assignment}.json"


def expected_scores(
    repo_root: Path = REPO_ROOT, assignments: Sequence[str] | None = None
) -> dict[tuple[str, str], float]:
    """``(student, assignment) -> autograded score`` the shipped examples must get.

    complete: every test's points, blank: 0, the spec students: their spec's ``expected_score``
    (only where the spec exists).
    """
    expected = {}
    for assignment in assignments or list_assignments(repo_root):
        source = nbtools.read_notebook(source_notebook(repo_root, assignment))
        total = float(
            sum(nbtools.nbgrader_meta(c)["points"] for c in source.cells if nbtools.is_test_cell(c))
        )
        expected[("example-complete", assignment)] = total
        expected[("example-blank", assignment)] = 0.0
        for student, kind in SPEC_STUDENTS.items():
            path = spec_file(repo_root, kind, assignment)
            if path.is_file():
                spec = nbtools.load_partial_spec(path)
                expected[(student, assignment)] = float(spec["expected_score"])
    return expected


def make_examples(
    repo_root: Path = REPO_ROOT,
    out_dir: Path | None = None,
    assignments: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``<out_dir>/<student>/<ps>/<ps>.ipynb`` for the example students.

    blank: the release notebook; complete: every solution cell holds the reference solution of the
    source notebook; partial, cheat, alternative (`SPEC_STUDENTS`): complete with the cells of
    ``examples/<kind>/<ps>.json`` replaced (skipped, with a message, for assignments without that
    file). Reads the committed release, so run `release` first.
    """
    repo_root = Path(repo_root)
    out_dir = Path(out_dir) if out_dir else repo_root / EXAMPLES_DIR / "submissions"
    written = []
    for assignment in assignments or list_assignments(repo_root):
        release_nb = nbtools.strip_outputs(
            nbtools.read_notebook(release_notebook(repo_root, assignment))
        )
        complete = nbtools.complete_submission(
            release_nb, nbtools.read_notebook(source_notebook(repo_root, assignment))
        )
        versions = {"example-blank": release_nb, "example-complete": complete}
        for student, kind in SPEC_STUDENTS.items():
            spec_path = spec_file(repo_root, kind, assignment)
            if spec_path.is_file():
                spec = nbtools.load_partial_spec(spec_path)
                versions[student] = nbtools.apply_replacements(complete, spec["replace"])
            else:
                print(
                    f"note: no {spec_path.relative_to(repo_root)}: "
                    f"no {kind} example for {assignment}"
                )
        for student, nb in versions.items():
            path = out_dir / student / assignment / f"{assignment}.ipynb"
            nbtools.write_notebook(nb, path)
            written.append(path)
    return written


def copy_submissions(
    examples_dir: Path, course_dir: Path, assignments: Iterable[str]
) -> list[tuple[str, str]]:
    """Copy ``examples_dir/<student>/<ps>/`` to ``course_dir/submitted/<student>/<ps>/``.

    The copies are made read-only: grading reads submissions and never writes them. Returns the
    (student, assignment) pairs copied; an existing submission is never overwritten.
    """
    copied = []
    for student_dir in sorted(Path(examples_dir).iterdir()):
        for assignment in assignments:
            src = student_dir / assignment
            dest = Path(course_dir) / "submitted" / student_dir.name / assignment
            if not src.is_dir() or dest.exists():
                continue
            shutil.copytree(src, dest)
            for path in dest.rglob("*"):
                if path.is_file():
                    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            copied.append((student_dir.name, assignment))
    return copied


# --- grading -------------------------------------------------------------------------------


def autograde(
    course_dir: Path, assignment: str, student: str | None = None, extra_args: Sequence[str] = ()
) -> float:
    """``nbgrader autograde`` one assignment (all submitted students); returns seconds taken.

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


def generate_feedback(course_dir: Path, assignment: str) -> None:
    """``nbgrader generate_feedback``: HTML in ``feedback/<student>/<ps>/<ps>.html``."""
    run_nbgrader(course_dir, "generate_feedback", assignment)


def export_grades(course_dir: Path, csv_path: Path) -> Path:
    """``nbgrader export``: one CSV row per student and assignment."""
    run_nbgrader(course_dir, "export", f"--to={Path(csv_path).resolve()}")
    return Path(csv_path)


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

    def summary(self) -> str:
        text = f"{self.auto_score:g}/{self.auto_max:g}"
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
                auto = auto_max = manual = manual_max = pending = 0.0
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        if grade.cell.cell_type == "code":
                            auto += grade.auto_score or 0.0
                            auto_max += grade.max_score
                        else:
                            manual_max += grade.max_score
                            if grade.manual_score is not None:
                                manual += grade.manual_score
                            elif grade.needs_manual_grade:
                                pending += grade.max_score
                            else:  # nbgrader gave an unchanged answer 0 automatically
                                manual += grade.auto_score or 0.0
                key = (submission.student.id, assignment.name)
                scores[key] = SubmissionScore(*key, auto, auto_max, manual, manual_max, pending)
    return scores


def set_manual_grade(
    course_dir: Path, assignment: str, student: str, grade_id: str, points: float
) -> None:
    """Record a human grade for a manually graded cell (what the formgrader does)."""
    with gradebook(course_dir) as gb:
        grade = gb.find_grade(grade_id, assignment, assignment, student)
        grade.manual_score = points
        grade.needs_manual_grade = False
        gb.db.commit()


def _format_table(header: Sequence[str], rows: dict[str, dict[str, str]]) -> str:
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
    return _format_table(["student", *assignments], rows)


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
    return _format_table(["student", *run.assignments], {**rows, "total": totals})


@dataclass
class GradingRun:
    """What `grade_course` did: autograde seconds per notebook, failures, where outputs are."""

    course_dir: Path
    assignments: list[str]
    autograde_seconds: dict[tuple[str, str], float]  # (assignment, student) -> seconds
    failures: dict[str, str]  # "assignment" or "assignment/student" -> nbgrader's log tail
    csv_path: Path | None = None

    def seconds_per_assignment(self) -> dict[str, float]:
        """Total autograde seconds of each assignment (all its submissions)."""
        totals: dict[str, float] = {}
        for (assignment, _), seconds in self.autograde_seconds.items():
            totals[assignment] = totals.get(assignment, 0.0) + seconds
        return totals


def grade_course(
    course_dir: Path, examples_dir: Path, assignments: Sequence[str] | None = None, log=print
) -> GradingRun:
    """Release, submissions, autograde, feedback and CSV in a prepared ``course_dir``.

    Each submission is autograded on its own (one `nbgrader autograde --student` each), so the
    time per notebook is measured and one crashing submission cannot stop the others. Failures
    are collected in ``failures``; nothing is deleted.
    """
    course_dir = Path(course_dir)
    assignments = list(assignments or list_assignments(course_dir))
    students = sorted(p.name for p in Path(examples_dir).iterdir() if p.is_dir())
    run = GradingRun(course_dir, assignments, {}, {})
    log(f"release: generate_assignment for {', '.join(assignments)}")
    generate_release(course_dir, assignments)
    register(course_dir, assignments, students)
    submissions = copy_submissions(examples_dir, course_dir, assignments)
    for assignment in assignments:
        for student in sorted(s for s, a in submissions if a == assignment):
            try:
                seconds = autograde(course_dir, assignment, student)
            except GradingError as error:  # keep going: the other submissions still get graded
                run.failures[f"{assignment}/{student}"] = str(error)
                log(f"autograde {assignment} of {student} FAILED (submission untouched):\n{error}")
                continue
            run.autograde_seconds[(assignment, student)] = seconds
            log(f"autograde {assignment} of {student}: {seconds:.1f} s")
        try:
            generate_feedback(course_dir, assignment)
        except GradingError as error:
            run.failures[assignment] = str(error)
            log(f"feedback for {assignment} FAILED:\n{error}")
    run.csv_path = export_grades(course_dir, course_dir / "grades.csv")
    return run


def read_grades_csv(csv_path: Path) -> list[dict[str, str]]:
    """The rows of an ``nbgrader export`` CSV."""
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- demo ----------------------------------------------------------------------------------


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


def demo(repo_root: Path = REPO_ROOT, course_dir: Path | None = None) -> GradingRun:
    """Grade the shipped example submissions in a fresh ``demo_course/`` and print the grades."""
    repo_root = Path(repo_root)
    course_dir = Path(course_dir) if course_dir else repo_root / DEMO_DIR
    backup = move_aside(course_dir)
    if backup:
        print(f"moved the previous {course_dir.name}/ to {backup.name}/")
    new_course(course_dir, repo_root)
    run = grade_course(course_dir, repo_root / EXAMPLES_DIR / "submissions")
    scores = read_scores(course_dir)
    print()
    print("Grades (autograded score/max; written answers wait for a human grader):")
    print(grade_table(scores, run.assignments))
    wrong = [
        f"{student} {assignment}: {scores[(student, assignment)].auto_score:g}, expected {points:g}"
        for (student, assignment), points in expected_scores(repo_root, run.assignments).items()
        if (student, assignment) in scores and scores[(student, assignment)].auto_score != points
    ]
    print("UNEXPECTED: " + "; ".join(wrong) if wrong else "every example got its expected score")
    print()
    print("Autograde time per notebook (seconds, including nbgrader and kernel start-up):")
    print(timing_table(run))
    print()
    print(f"feedback:   {course_dir / 'feedback'}/<student>/<ps>/<ps>.html")
    print(f"grades CSV: {run.csv_path}")
    print(f"gradebook:  {course_dir / 'gradebook.db'} (written answers: `nbgrader formgrader`)")
    if run.failures:
        print(f"FAILED: {', '.join(run.failures)} (see the messages above)")
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.grading",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["release", "examples", "demo"])
    args = parser.parse_args(argv)
    if args.command == "release":
        assignments = release()
        print(
            f"released {', '.join(assignments)} into {RELEASE_DIR}/ and {EXAMPLES_DIR}/submissions/"
        )
    elif args.command == "examples":
        for path in make_examples():
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    else:
        run = demo()
        return 1 if run.failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
