"""The student release (`nbgrader generate_assignment`) and the example submissions made from it.

`release` only passes `--force` to `generate_assignment`, which rewrites `assignments/<ps>/`; the
gradebook keeps its students and grades.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from course_tools import notebooks as nbtools
from course_tools.grading.course import (
    EXAMPLES_DIR,
    REPO_ROOT,
    list_assignments,
    release_notebook,
    run_nbgrader,
    source_notebook,
)
from course_tools.grading.gradebook import register

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
