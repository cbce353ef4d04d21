"""Stored lecture notebooks come from the current code; `make lectures`, which makes them, works.

nbval (in `make test`) re-runs every lecture and compares its text outputs, but not its figures:
a figure drawn by an older `course_lib` passes unnoticed. `make lectures` runs
`python -m course_tools.execute`, which stamps each notebook with digests of its code cells and of
every `course_lib` / `course_tools` file the kernel imported; these tests recompute the stamp.
They cover every notebook under `lectures/` (answer keys in `lectures/answers/` included), so a
new lecture is checked as soon as it is added.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_tools import execute

REPO = execute.REPO_ROOT
LECTURES = sorted((REPO / "lectures").rglob("*.ipynb"))
LECTURES = [p for p in LECTURES if ".ipynb_checkpoints" not in p.parts]
FIX = "re-execute it with `make lectures NOTEBOOKS={path} SOLUTION_NOTEBOOKS=`"


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(REPO).as_posix() for p in paths]


def test_there_are_lectures_and_answer_keys():
    names = _ids(LECTURES)
    assert any(n.startswith("lectures/0") for n in names), names
    assert any(n.startswith("lectures/answers/") for n in names), names


@pytest.mark.parametrize("path", LECTURES, ids=_ids(LECTURES))
def test_stored_outputs_come_from_the_current_code(path):
    nb = nbformat.read(str(path), as_version=4)
    reasons = execute.stale_reasons(nb)
    relative = path.relative_to(REPO).as_posix()
    assert not reasons, (
        f"{relative}: stored outputs are older than the code: "
        + "; ".join(reasons)
        + ". "
        + FIX.format(path=relative)
    )


@pytest.mark.parametrize("path", LECTURES, ids=_ids(LECTURES))
def test_executed_top_to_bottom_in_one_run(path):
    nb = nbformat.read(str(path), as_version=4)
    relative = path.relative_to(REPO).as_posix()
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{relative}: execution counts {counts} are not 1, 2, 3, ...: cells were run out of order "
        f"or not at all; " + FIX.format(path=relative)
    )
    errors = [
        out.get("ename")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, f"{relative}: stored error outputs {errors}"
    assert "widgets" not in nb.metadata, f"{relative}: stores widget state; " + FIX.format(
        path=relative
    )


# scripts/setup_env.sh registers the course's kernel under this name.
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"
NOTEBOOKS = [*LECTURES, *sorted(REPO.glob("solutions/*/*.ipynb"))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebooks_name_the_kernel_the_setup_installs(path):
    """A stored kernel display name that differs from the installed kernel's makes JupyterLab
    open the notebook as modified."""
    spec = nbformat.read(str(path), as_version=4).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", spec
    assert spec.get("display_name") == KERNEL_DISPLAY_NAME, (
        f"{path.relative_to(REPO).as_posix()}: kernel display name {spec.get('display_name')!r}, "
        f"expected {KERNEL_DISPLAY_NAME!r} (scripts/setup_env.sh)"
    )
    assert f'--display-name "{KERNEL_DISPLAY_NAME}"' in (REPO / "scripts/setup_env.sh").read_text()


def _module_tree(root: Path) -> Path:
    package = root / "course_lib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ops.py").write_text("def double(x):\n    return 2 * x\n")
    return root


def test_stale_reasons_names_what_changed(tmp_path):
    root = _module_tree(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("from course_lib.ops import double\ndouble(2)"),
    ]
    assert execute.stale_reasons(nb, root) == [
        "it carries no execution stamp (it was not executed with course_tools.execute)"
    ]
    nb.metadata["course"] = {
        "executed_with": execute.stamp_for(
            nb, ["course_lib/__init__.py", "course_lib/ops.py"], root
        )
    }
    assert execute.stale_reasons(nb, root) == []

    nb.cells[0].source = "# a new title"  # prose does not make outputs stale
    assert execute.stale_reasons(nb, root) == []
    (root / "course_lib" / "ops.py").write_text("def double(x):\n    return x + x\n")
    assert execute.stale_reasons(nb, root) == [
        "course_lib/ops.py changed after the notebook was executed"
    ]
    nb.cells[1].source += "\n"
    (root / "course_lib" / "__init__.py").unlink()
    assert execute.stale_reasons(nb, root) == [
        "a code cell was edited after the notebook was executed",
        "course_lib/__init__.py, which it imported, no longer exists",
        "course_lib/ops.py changed after the notebook was executed",
    ]


def test_file_digest_ignores_windows_line_endings(tmp_path):
    unix, windows = tmp_path / "a.py", tmp_path / "b.py"
    unix.write_bytes(b"x = 1\ny = 2\n")
    windows.write_bytes(b"x = 1\r\ny = 2\r\n")
    assert execute.file_digest(unix) == execute.file_digest(windows)


def test_a_kernel_importing_another_copy_of_the_code_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="not inside this repository"):
        execute._relative_module_files([str(tmp_path / "elsewhere" / "conv.py")], REPO)


@pytest.mark.slow
def test_make_lectures_runs_an_interact_cell_and_stamps_only_lectures(tmp_path):
    """The README's `make lectures` itself, on a lecture with sliders and on a source notebook.

    It used to pass `--ExecutePreprocessor.store_widget_state=False` to nbconvert, which made
    nbclient raise KeyError in output_widget.py at lecture 1's `interact` cell.
    """
    make = shutil.which("make")
    assert make, "`make` is needed: the README's commands are make targets"
    lecture, solution = tmp_path / "lecture.ipynb", tmp_path / "solution.ipynb"
    slider_cell = (
        "from ipywidgets import IntSlider, interact\n"
        "from course_lib import conv\n\n"
        "def show(kernel_size=3):\n"
        "    print('output size', conv.conv_output_size(9, kernel_size))\n\n"
        "_ = interact(show, kernel_size=IntSlider(value=3, min=1, max=9))"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("print('first')"), nbformat.v4.new_code_cell(slider_cell)]
    nbformat.write(nb, str(lecture))
    nbformat.write(nb, str(solution))

    result = subprocess.run(
        [
            make,
            "--no-print-directory",
            "lectures",
            "LECTURES_SETUP=",  # the environment running this test is the one to use
            f"VENV={sys.prefix}",
            f"NOTEBOOKS={lecture}",
            f"SOLUTION_NOTEBOOKS={solution}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    executed = nbformat.read(str(lecture), as_version=4)
    assert [cell.execution_count for cell in executed.cells] == [1, 2]
    assert "widgets" not in executed.metadata
    outputs = json.dumps([cell.outputs for cell in executed.cells])
    assert execute.WIDGET_VIEW not in outputs and "KeyError" not in outputs
    assert execute.stale_reasons(executed) == []
    # The kernelspec is rewritten from the kernel that ran it (the stored "Python 3" is not).
    assert executed.metadata.kernelspec.display_name == KERNEL_DISPLAY_NAME
    stamped = set(execute.stored_stamp(executed)["modules"])
    assert {"course_lib/__init__.py", "course_lib/conv.py"} <= stamped, stamped
    assert "course_lib/plot.py" not in stamped  # only what the kernel imported

    source = nbformat.read(str(solution), as_version=4)
    assert source.cells[0].outputs[0]["text"] == "first\n"
    assert execute.stored_stamp(source) is None  # nbgrader sources carry no stamp
