"""Fast unit tests of the grading protections (no kernel): redaction, duplicated cells, cell
size limits, the sandbox's command line and paths, held points in scores and the CSV export.

The end-to-end attacks are in tests/test_adversarial.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from course_tools import grading
from course_tools import notebooks as nbtools
from course_tools.feedback import REDACTED, RedactSecrets
from course_tools.grading.execute import GradingExecute, grading_metadata, output_size
from course_tools.grading.preprocessors import LimitCellSources, RepairDuplicateCells
from course_tools.grading.sandbox import SandboxedKernelManager, readonly_paths

REPO = grading.REPO_ROOT
ASSIGNMENT = "ps1_convolution"


def _config(course: Path) -> Config:
    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.source_directory = grading.SOURCE_DIR
    return config


def _resources(notebook: str = ASSIGNMENT) -> dict:
    return {"nbgrader": {"assignment": ASSIGNMENT, "notebook": notebook, "student": "ann"}}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course folder holding only ps1's source notebook (no gradebook)."""
    return grading.new_course(tmp_path_factory.mktemp("units") / "course", assignments=[ASSIGNMENT])


# --- feedback redaction ----------------------------------------------------------------------


def test_redaction_removes_hidden_tests_and_solutions_from_every_output(course):
    source = nbtools.read_notebook(grading.source_notebook(course, ASSIGNMENT))
    hidden = sorted(nbtools.hidden_test_lines(source))
    solution = sorted(nbtools.solution_lines(source))
    assert hidden and solution
    cells_dump = repr([cell.source for cell in source.cells])  # like print(In)
    outputs = [
        new_output("stream", name="stdout", text="ok\n" + "\n".join(hidden[:3]) + "\nfine\n"),
        new_output("stream", name="stdout", text=cells_dump),
        new_output("error", ename="E", evalue=solution[0], traceback=["  " + hidden[0]]),
        new_output("display_data", data={"text/plain": "   " + "  ".join(solution[1].split())}),
        new_output(
            "display_data", data={"text/html": f"<pre>{hidden[1].replace('<', '&lt;')}</pre>"}
        ),
    ]
    nb = new_notebook(cells=[new_code_cell("print('x')", outputs=outputs)])
    redactor = RedactSecrets(config=_config(course))
    nb, _ = redactor.preprocess(nb, _resources())
    text = "\n".join(
        str(o.get("text", ""))
        + str(o.get("evalue", ""))
        + str(o.get("traceback", ""))
        + str(o.get("data", ""))
        for o in nb.cells[0].outputs
    )
    flat = " ".join(text.split())
    assert not [line for line in hidden + solution if " ".join(line.split()) in flat]
    assert "ok" in text and "fine" in text, "lines that match nothing stay"
    assert REDACTED in text


def test_redaction_keeps_ordinary_output(course):
    nb = new_notebook(
        cells=[new_code_cell("", outputs=[new_output("stream", name="stdout", text="loss 0.25\n")])]
    )
    nb, _ = RedactSecrets(config=_config(course)).preprocess(nb, _resources())
    assert nb.cells[0].outputs[0].text == "loss 0.25\n"


# --- pasted test cells and huge cells ------------------------------------------------------


def _release(course: Path):
    source = nbtools.read_notebook(grading.source_notebook(course, ASSIGNMENT))
    return nbtools.complete_submission(source, source)


@pytest.mark.parametrize("where", ["after", "end", "before-solution"])
def test_pasted_test_cell_is_repaired_not_fatal(course, where):
    nb = _release(course)
    cells = nbtools.cells_by_grade_id(nb)
    original = cells["test_conv2d_loops_basic"]
    index = nb.cells.index(original)
    copy_cell = new_code_cell(original.source, metadata=dict(original.metadata))
    position = {"after": index + 1, "end": len(nb.cells), "before-solution": index - 1}[where]
    nb.cells.insert(position, copy_cell)
    nb, _ = RepairDuplicateCells(config=_config(course)).preprocess(nb, _resources())
    graded = [
        c for c in nb.cells if nbtools.nbgrader_meta(c).get("grade_id") == "test_conv2d_loops_basic"
    ]
    assert len(graded) == 1, "exactly one copy stays graded"
    kept = graded[0]
    previous = [
        nbtools.nbgrader_meta(c).get("grade_id")
        for c in nb.cells[: nb.cells.index(kept)]
        if nbtools.nbgrader_meta(c).get("grade_id")
    ]
    assert previous[-1] == "conv2d_loops", "the graded copy follows its solution cell"
    others = [c for c in nb.cells if c is not kept and c.source.endswith(original.source)]
    assert others and all("nbgrader" not in c.metadata for c in others)
    assert any("appeared 2 times" in note for note in grading_metadata(nb)["notes"])


def test_huge_cells_are_cut_with_a_note(course):
    nb = new_notebook(
        cells=[
            new_markdown_cell("y" * 300_000),
            new_code_cell("x = 1"),
            new_code_cell("#" * 2_000_000),
        ]
    )
    limiter = LimitCellSources(config=_config(course))
    nb, _ = limiter.preprocess(nb, _resources())
    assert len(nb.cells[0].source) < 100_200 and "cut at 100,000" in nb.cells[0].source
    assert nb.cells[1].source == "x = 1"
    assert len(nb.cells[2].source) < 1_000_200
    assert len(grading_metadata(nb)["notes"]) == 2


def test_output_size_counts_text_and_data():
    assert output_size(new_output("stream", name="stdout", text="abc")) == 3
    assert output_size(new_output("display_data", data={"text/plain": "x" * 10})) == 10
    error = new_output("error", ename="E", evalue="bad", traceback=["line1", "line2"])
    assert output_size(error) == 3 + 10


# --- the sandbox's kernel command ------------------------------------------------------------


def test_kernel_is_chosen_by_the_grader_not_the_notebook():
    manager = SandboxedKernelManager(kernel_name="some-kernel-the-student-named")
    argv = manager.kernel_spec.argv
    assert argv[0] == sys.executable and argv[1:4] == ["-P", "-s", "-m"]
    assert argv[4] == "course_tools.sandbox_kernel"
    assert manager.kernel_spec.interrupt_mode == "message"
    assert GradingExecute().kernel_manager_class is SandboxedKernelManager


def test_sandbox_exposes_the_packages_not_the_course_root():
    paths = readonly_paths()
    assert Path(sys.prefix).resolve() in paths or any(
        Path(sys.prefix).resolve().is_relative_to(p) for p in paths
    )
    for package in ("course_lib", "course_tools"):
        assert any((REPO / package).resolve().is_relative_to(p) for p in paths)
    for private in ("solutions", "gradebook.db", "nbgrader_config.py", "submitted"):
        target = (REPO / private).resolve()
        assert not any(target.is_relative_to(p) for p in paths), f"{private} is exposed"
    assert not any(Path.home().resolve() == p for p in paths), "the home folder is exposed"


# --- held points in the scores table ---------------------------------------------------------


def test_held_and_incomplete_scores_are_not_shown_as_points():
    held = grading.SubmissionScore("ann", "ps1", 25, 25, 0, 0, 0, held=25, flagged=True)
    assert held.counted_score == 0 and held.status == "held for review"
    assert "HELD" in held.summary()
    unfinished = grading.SubmissionScore("bob", "ps1", 0, 25, 0, 0, 0, incomplete=True)
    assert "NOT GRADED" in unfinished.summary() and "incomplete" in unfinished.status
