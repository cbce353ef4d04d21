"""Hidden tests and rubrics (mark schemes) survive the release without false tampering warnings.

`course_tools.hidden_regions.RestoreHiddenRegions` runs before nbgrader's ``OverwriteCells``: an
untouched released locked cell gets its full source back silently, so the autograde log warns
"checksum has changed" only for a cell a student really edited. Rubrics in locked question cells
are cut from the release and the feedback but reach the grader in the autograded notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from grading_helpers import cell_meta, release_tiny
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from traitlets.config import Config, PyFileConfigLoader
from traitlets.utils.importstring import import_item

from course_tools import grading
from course_tools import notebooks as nbtools
from course_tools.hidden_regions import RestoreHiddenRegions, released_source

CHANGED = re.compile(r"Attribute 'checksum' for cell (\S+) has changed")

TEST_SOURCE = (
    "assert double(2) == 4\n"
    "### BEGIN HIDDEN TESTS\n"
    "assert double(-3) == -6, 'negative numbers'\n"
    "### END HIDDEN TESTS"
)
RUBRIC = "RUBRIC-LINE: 1 point for naming the doubling"
QUESTION_SOURCE = (
    "Why does `double` double?\n\n"
    "=== BEGIN MARK SCHEME ===\n"
    f"{RUBRIC}\n"
    "=== END MARK SCHEME ===\n\n"
    "Answer below."
)


def test_released_source_cuts_hidden_tests_and_mark_schemes():
    assert released_source(TEST_SOURCE) == "assert double(2) == 4"
    assert released_source(QUESTION_SOURCE) == "Why does `double` double?\n\n\nAnswer below."
    assert released_source("x = 1") == "x = 1"


def test_the_course_config_restores_hidden_regions_before_overwrite_cells():
    """nbgrader's own sanitize steps in their order, RestoreHiddenRegions right before
    OverwriteCells (the grading sandbox adds its own steps elsewhere in the list)."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import OverwriteCells

    config = PyFileConfigLoader(grading.CONFIG_FILE, path=str(grading.REPO_ROOT)).load_config()
    ours = [
        import_item(pp) if isinstance(pp, str) else pp
        for pp in config.Autograde.sanitize_preprocessors
    ]
    default = list(Autograde(config=Config()).sanitize_preprocessors)
    assert [pp for pp in ours if pp in default] == default
    assert ours[ours.index(OverwriteCells) - 1] is RestoreHiddenRegions


def _course(course_dir: Path) -> Path:
    """A one-notebook course: a solution, a test cell with hidden tests, a rubric question."""
    course = grading.new_course(course_dir, assignments=[])
    source = new_notebook(
        cells=[
            new_code_cell(
                "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                metadata=cell_meta("double", solution=True),
            ),
            new_code_cell(
                TEST_SOURCE, metadata=cell_meta("test_double", grade=True, locked=True, points=2)
            ),
            new_markdown_cell(QUESTION_SOURCE, metadata=cell_meta("question", locked=True)),
            new_markdown_cell(
                "Because it multiplies by 2.",
                metadata=cell_meta("answer", grade=True, solution=True, points=1),
            ),
        ]
    )
    release_tiny(course, source)
    return course


def _submit(course: Path, student: str, solution: str, test_source: str | None = None) -> None:
    release = nbtools.read_notebook(grading.release_notebook(course, "tiny"))
    release.cells[0].source = solution
    if test_source is not None:
        release.cells[1].source = test_source
    release.cells[3].source = "It multiplies by two."
    nbtools.write_notebook(release, course / "submitted" / student / "tiny" / "tiny.ipynb")


@pytest.mark.slow
def test_only_a_tampered_cell_is_reported(tmp_path):
    course = _course(tmp_path / "course")
    release_text = grading.release_notebook(course, "tiny").read_text()
    assert "MARK SCHEME" not in release_text and "RUBRIC-LINE" not in release_text
    assert "BEGIN HIDDEN TESTS" not in release_text

    right = "def double(x):\n    return x + x"
    wrong_for_negatives = "def double(x):\n    return abs(x) * 2"
    _submit(course, "honest", right)
    _submit(course, "careless", wrong_for_negatives)
    # edits the visible test so that it passes whatever double does
    _submit(course, "tamperer", wrong_for_negatives, test_source="assert True")
    log = grading.run_nbgrader(course, "autograde", "tiny")
    warned = CHANGED.findall(log.stdout + log.stderr)
    assert warned == ["test_double"], f"checksum warnings: {warned}"

    scores = grading.read_scores(course)
    assert scores[("honest", "tiny")].auto_score == 2.0
    # the hidden test ran for everyone, also where the visible test was replaced
    assert scores[("careless", "tiny")].auto_score == 0.0
    assert scores[("tamperer", "tiny")].auto_score == 0.0

    # the grader sees the rubric above the answer (the formgrader shows the autograded notebook)
    graded = (course / "autograded" / "honest" / "tiny" / "tiny.ipynb").read_text()
    assert RUBRIC in graded
    grading.generate_feedback(course, "tiny")
    feedback = (course / "feedback" / "honest" / "tiny" / "tiny.html").read_text()
    assert "Why does" in feedback and "RUBRIC-LINE" not in feedback


@pytest.mark.slow
def test_grading_a_shipped_example_logs_no_checksum_warning(tmp_path):
    """The shipped examples leave every locked cell as released: their autograde log has no
    "checksum has changed" warning (before the fix, every test cell of every example had one)."""
    assignment = "ps4_optimizers"  # the quickest to grade; every test cell has hidden tests
    course = grading.new_course(tmp_path / "course", assignments=[assignment])
    grading.generate_release(course, [assignment])
    grading.register(course, [assignment], ["example-complete"])
    examples = grading.REPO_ROOT / grading.EXAMPLES_DIR / "submissions"
    grading.copy_submissions(examples, course, [assignment])
    log = grading.run_nbgrader(course, "autograde", assignment, "--student=example-complete")
    assert not CHANGED.findall(log.stdout + log.stderr), "a released cell looked tampered with"
    graded = course / "autograded" / "example-complete" / assignment / f"{assignment}.ipynb"
    assert "BEGIN HIDDEN TESTS" in graded.read_text(), "the hidden tests were restored and ran"
    score = grading.read_scores(course)[("example-complete", assignment)]
    assert score.auto_score == score.auto_max
