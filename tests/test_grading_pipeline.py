"""The nbgrader pipeline end to end: release, autograde, manual grading, feedback, grade export.

The slow tests build a temporary course from the repository's `nbgrader_config.py` and
`solutions/`, autograde the committed example submissions of every assignment and check the
gradebook: complete = full marks, blank = 0, partial / cheat / alternative = the `expected_score`
of `examples/<kind>/<ps>.json` (cheat: the library operator called instead of written, under
several disguises; alternative: correct code in another style, full marks). Scores are read from
the gradebook, never from exit codes.
"""

from __future__ import annotations

import hashlib
import json
import stat
import time
from pathlib import Path

import nbformat
import pytest
from grading_helpers import cell_meta, html_text, tiny_course
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_tools import grading
from course_tools import notebooks as nbtools

REPO = grading.REPO_ROOT
ASSIGNMENTS = grading.list_assignments(REPO)
EXAMPLES = REPO / grading.EXAMPLES_DIR / "submissions"


def _spec(kind: str, assignment: str) -> dict:
    return nbtools.load_partial_spec(grading.spec_file(REPO, kind, assignment))


def _has_example(student: str, assignment: str) -> bool:
    return (EXAMPLES / student / assignment / f"{assignment}.ipynb").is_file()


def _manual_cells(assignment: str) -> dict[str, float]:
    """grade_id -> points of the manually graded (markdown) cells of an assignment."""
    source = nbtools.read_notebook(grading.source_notebook(REPO, assignment))
    return {
        nbtools.nbgrader_meta(c)["grade_id"]: float(nbtools.nbgrader_meta(c)["points"])
        for c in source.cells
        if c.cell_type == "markdown" and nbtools.nbgrader_meta(c).get("grade", False)
    }


# --- fast unit tests of the notebook helpers -------------------------------------------------


def test_split_regions_and_secret_lines():
    source = (
        "x = 1\n### BEGIN HIDDEN TESTS\nassert secret_function(3) == 9\n### END HIDDEN TESTS\ny = 2"
    )
    outside, inside = nbtools.split_regions(source, nbtools.BEGIN_HIDDEN, nbtools.END_HIDDEN)
    assert outside == ["x = 1", "y = 2"]
    assert inside == ["assert secret_function(3) == 9"]
    nb = new_notebook(
        cells=[new_code_cell(source), new_code_cell("print('assert public(1) == 1')")]
    )
    assert nbtools.hidden_test_lines(nb) == {"assert secret_function(3) == 9"}
    with pytest.raises(ValueError, match="without a matching"):
        nbtools.split_regions("### BEGIN HIDDEN TESTS\nx", nbtools.BEGIN_HIDDEN, nbtools.END_HIDDEN)


def test_complete_and_partial_submissions_from_release_and_source():
    source = new_notebook(
        cells=[
            new_code_cell(
                "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                metadata=cell_meta("f", solution=True),
            ),
            new_markdown_cell(
                "Because it doubles.", metadata=cell_meta("why", grade=True, solution=True)
            ),
            new_code_cell(
                "assert f(2) == 4", metadata=cell_meta("test_f", grade=True, locked=True)
            ),
        ]
    )
    release = new_notebook(
        cells=[
            new_code_cell(
                "def f(x):\n    raise NotImplementedError()",
                metadata=cell_meta("f", solution=True),
            ),
            new_markdown_cell(
                "YOUR ANSWER HERE", metadata=cell_meta("why", grade=True, solution=True)
            ),
            new_code_cell(
                "assert f(2) == 4", metadata=cell_meta("test_f", grade=True, locked=True)
            ),
        ]
    )
    release.cells[0].outputs = [{"output_type": "stream", "name": "stdout", "text": "old"}]
    complete = nbtools.complete_submission(release, source)
    assert complete.cells[0].source == "def f(x):\n    return 2 * x"
    assert complete.cells[0].outputs == []
    assert complete.cells[1].source == "Because it doubles."
    assert complete.cells[2].source == "assert f(2) == 4"
    assert release.cells[0].source.endswith("NotImplementedError()"), "the release is not modified"
    partial = nbtools.apply_replacements(complete, {"f": "def f(x):\n    return x + x + 1"})
    assert partial.cells[0].source.endswith("x + x + 1")
    with pytest.raises(KeyError):
        nbtools.apply_replacements(complete, {"test_f": "assert True"})  # not a solution cell


def test_move_aside_keeps_the_old_directory(tmp_path):
    old = tmp_path / "demo_course"
    (old / "submitted").mkdir(parents=True)
    (old / "submitted" / "work.ipynb").write_text("{}")
    backup = grading.move_aside(old)
    assert not old.exists()
    assert (backup / "submitted" / "work.ipynb").read_text() == "{}"
    old.mkdir()
    second = grading.move_aside(old)
    assert second != backup and second.exists() and backup.exists()
    assert grading.move_aside(tmp_path / "missing") is None


def test_grade_table_lists_every_student_and_assignment():
    scores = {
        ("ann", "ps1"): grading.SubmissionScore("ann", "ps1", 20, 20, 0, 0, 0),
        ("ann", "ps3"): grading.SubmissionScore("ann", "ps3", 12, 27, 0, 3, 3),
        ("bob", "ps1"): grading.SubmissionScore("bob", "ps1", 7.5, 20, 0, 0, 0),
    }
    table = grading.grade_table(scores, ["ps1", "ps3"]).splitlines()
    assert table[0].split() == ["student", "ps1", "ps3"]
    assert table[2].split() == ["ann", "20/20", "12/27", "+3", "manual", "pending"]
    assert table[3].split() == ["bob", "7.5/20", "-"]


# --- the stderr safety net, on a one-cell assignment ----------------------------------------

NOISY_SOLUTION = '''
import sys
import warnings

def add(a, b):
    """a + b, with the noise real code makes: a warning and a progress bar on stderr."""
    warnings.warn(f"adding {a} and {b} the slow way", UserWarning)
    sys.stderr.write("100%|##########| 1/1 [00:00<00:00, 900.00it/s]\\n")
    return a + b
'''


def _tiny_course(course_dir: Path) -> Path:
    """A course with one assignment `tiny` whose test cell calls a student's noisy `add`."""
    return tiny_course(course_dir, NOISY_SOLUTION, student="noisy")


@pytest.mark.slow
def test_stderr_in_a_test_cell_does_not_cost_points(tmp_path):
    """With the course config the noisy test cell keeps its 2 points; without IgnorePattern
    (nbgrader's default) the same submission gets 0: the config is what saves them."""
    course = _tiny_course(tmp_path / "with_config")
    grading.autograde(course, "tiny")
    assert grading.read_scores(course)[("noisy", "tiny")].auto_score == 2.0

    bare = _tiny_course(tmp_path / "without_ignore_pattern")
    grading.autograde(bare, "tiny", extra_args=["--IgnorePattern.enabled=False"])
    assert grading.read_scores(bare)[("noisy", "tiny")].auto_score == 0.0
    graded = nbformat.read(bare / "autograded" / "noisy" / "tiny" / "tiny.ipynb", 4)
    test_cell = nbtools.cells_by_grade_id(graded)["test_add"]
    streams = [o.get("name") for o in test_cell.outputs if o.output_type == "stream"]
    assert "stderr" in streams, "the test cell should have written to stderr"

    # Grading again never regrades over existing grades nor touches the submission.
    submitted = course / "submitted" / "noisy" / "tiny" / "tiny.ipynb"
    before = hashlib.sha256(submitted.read_bytes()).hexdigest()
    grading.autograde(course, "tiny")
    assert hashlib.sha256(submitted.read_bytes()).hexdigest() == before
    assert grading.read_scores(course)[("noisy", "tiny")].auto_score == 2.0


# --- the five assignments end to end --------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A temporary course with every assignment released and every example autograded."""
    course = grading.new_course(
        tmp_path_factory.mktemp("pipeline") / "course", assignments=ASSIGNMENTS
    )
    start = time.perf_counter()
    run = grading.grade_course(course, EXAMPLES, ASSIGNMENTS, log=lambda message: None)
    seconds = time.perf_counter() - start
    print(f"\nautograde seconds per notebook:\n{grading.timing_table(run)}")
    print(f"release + autograde + feedback + export: {seconds:.0f} s")
    return run, grading.read_scores(course)


@pytest.mark.slow
def test_every_assignment_was_graded(graded):
    run, scores = graded
    assert not run.failures, run.failures
    expected = {(a, s) for a in ASSIGNMENTS for s in grading.EXAMPLE_STUDENTS if _has_example(s, a)}
    assert {(a, s) for a in ASSIGNMENTS for s in ("example-complete", "example-blank")} <= expected
    assert set(run.autograde_seconds) == expected
    for assignment, student in expected:
        assert (student, assignment) in scores, f"{student} has no grade for {assignment}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_example_scores(graded, assignment):
    _, scores = graded
    complete = scores[("example-complete", assignment)]
    assert complete.auto_max == _spec("partial", assignment)["max_score"]
    assert complete.auto_score == complete.auto_max, f"complete {assignment}: {complete}"
    assert scores[("example-blank", assignment)].auto_score == 0.0
    expected = grading.expected_scores(REPO, [assignment])
    assert {s for s, _ in expected} >= {"example-partial", "example-alternative"}
    for (student, _), points in expected.items():
        got = scores[(student, assignment)]
        assert got.auto_max == complete.auto_max
        assert got.auto_score == pytest.approx(points), (
            f"{student} on {assignment}: gradebook {got.auto_score}, expected {points} "
            f"(examples/{grading.SPEC_STUDENTS.get(student, '')})"
        )


@pytest.mark.slow
def test_manual_grading_of_written_answers(graded):
    run, scores = graded
    assignments = [ps for ps in ASSIGNMENTS if _manual_cells(ps)]
    assert assignments, "some assignment (ps3) has a manually graded written answer"
    for assignment in assignments:
        manual = _manual_cells(assignment)
        complete = scores[("example-complete", assignment)]
        assert complete.manual_pending == sum(manual.values()), "answers wait for a human"
        assert scores[("example-blank", assignment)].manual_pending == 0, (
            "an unchanged 'YOUR ANSWER HERE' gets 0 automatically"
        )
        for grade_id, points in manual.items():  # the instructor gives full marks
            grading.set_manual_grade(
                run.course_dir, assignment, "example-complete", grade_id, points
            )
        after = grading.read_scores(run.course_dir)[("example-complete", assignment)]
        assert after.manual_pending == 0 and after.manual_score == sum(manual.values())
        with grading.gradebook(run.course_dir) as gb:
            total = gb.find_submission(assignment, "example-complete").score
        assert total == after.auto_score + after.manual_score == after.auto_max + after.manual_max


@pytest.mark.slow
def test_grades_csv_has_every_score(graded):
    run, scores = graded
    rows = grading.read_grades_csv(run.csv_path)
    by_key = {(row["student_id"], row["assignment"]): row for row in rows}
    for (student, assignment), score in scores.items():
        row = by_key[(student, assignment)]
        # Before any manual grading the exported score is the autograded score, less any points
        # held for review (a submission that breaks the policy), which are listed separately.
        assert float(row["raw_score"]) == pytest.approx(score.counted_score)
        assert float(row["held_score"]) == pytest.approx(score.held)
        assert float(row["max_score"]) == pytest.approx(score.auto_max + score.manual_max)
        assert row["status"] == score.status
        assert bool(row["review_note"]) == score.flagged


@pytest.mark.slow
@pytest.mark.parametrize("student", grading.EXAMPLE_STUDENTS)
def test_feedback_shows_the_score_and_no_hidden_test(graded, student):
    run, scores = graded
    for assignment in ASSIGNMENTS:
        if not _has_example(student, assignment):  # no cheat example for ps5
            continue
        page = run.course_dir / "feedback" / student / assignment / f"{assignment}.html"
        assert page.is_file(), f"no feedback page {page}"
        text = html_text(page)
        score = scores[(student, assignment)]
        points = score.auto_score + score.manual_score
        total = f"Score: {points:.1f} / {score.auto_max + score.manual_max:.1f}"
        assert total in text, f"{page.name} for {student} should show '{total}'"
        hidden = nbtools.hidden_test_lines(
            nbtools.read_notebook(grading.source_notebook(REPO, assignment))
        )
        graded_nb = (
            run.course_dir / "autograded" / student / assignment / f"{assignment}.ipynb"
        ).read_text()
        assert any(json.dumps(line)[1:-1] in graded_nb for line in hidden), (
            "the autograded notebook holds the hidden tests (so this check can fail)"
        )
        # Whole lines: a hidden line such as `layer.bias.detach(),` may legitimately be part
        # of a longer visible line.
        shown = sorted(hidden & {line.strip() for line in text.splitlines()})
        assert not shown, f"feedback of {student} on {assignment} reveals hidden tests: {shown[:3]}"
        assert "BEGIN HIDDEN TESTS" not in text


@pytest.mark.slow
def test_submissions_stay_read_only(graded):
    run, _ = graded
    for notebook in (run.course_dir / "submitted").rglob("*.ipynb"):
        assert not notebook.stat().st_mode & stat.S_IWUSR, f"{notebook} should be read-only"
