"""What a student sees when they press *Validate* (``nbgrader validate``) in JupyterLab.

``nbgrader validate`` exits 0 even when tests fail, so these tests read the results of
``nbgrader.validator.Validator`` directly. It runs with nbgrader's defaults, as on a student's
machine (no course config: a 30 s cell timeout and no stderr filter), so they also prove that
a correct notebook validates cleanly: no cell is too slow and none writes to stderr, which the
validator reports as a failure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from course_tools import grading

REPO = grading.REPO_ROOT
ASSIGNMENTS = grading.list_assignments(REPO)
SUBMISSIONS = REPO / grading.EXAMPLES_DIR / "submissions"


def _validate(student: str, assignment: str, tmp_path: Path) -> dict:
    from nbgrader.validator import Validator

    # Validate a copy: the validator executes the notebook where it lies.
    notebook = tmp_path / f"{assignment}.ipynb"
    shutil.copy(SUBMISSIONS / student / assignment / f"{assignment}.ipynb", notebook)
    notebook.chmod(0o644)
    return Validator().validate(str(notebook))


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_complete_submission_validates_cleanly(assignment, tmp_path):
    results = _validate("example-complete", assignment, tmp_path)
    failed = [cell["raw_error"][-300:] for cell in results.get("failed", [])]
    problems = failed or results
    assert results == {}, f"Validate reports problems on a correct {assignment}: {problems}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_partly_wrong_submission_is_told_what_fails(assignment, tmp_path):
    results = _validate("example-partial", assignment, tmp_path)
    assert "changed" not in results and "type_changed" not in results, results
    failed = results.get("failed", [])
    assert failed, f"Validate found nothing wrong in the partly wrong {assignment}"
    # Each failure carries the error a student reads: an assertion message, not an empty trace.
    for cell in failed:
        assert cell["raw_error"].strip(), f"a failed cell of {assignment} has no error message"
