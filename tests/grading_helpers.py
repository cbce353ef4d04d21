"""Helpers shared by the grading tests: a one-cell assignment in a scratch course."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from nbformat.v4 import new_code_cell, new_notebook

from course_tools import grading
from course_tools import notebooks as nbtools

cell_meta = nbtools.new_nbgrader_metadata  # the grading tests' short name for it


def release_tiny(course: Path, source) -> None:
    """Write ``source`` as the source notebook of the assignment `tiny` and release it."""
    source.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbtools.write_notebook(source, grading.source_notebook(course, "tiny"))
    grading.generate_release(course, ["tiny"])


def tiny_course(course_dir: Path, solution: str, student: str) -> Path:
    """A course with one assignment `tiny` (2 points: a test cell that calls the student's
    `add`), released, with ``student``'s submission whose answer cell holds ``solution``."""
    course = grading.new_course(course_dir, assignments=[])
    source = new_notebook(
        cells=[
            new_code_cell(
                "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
                metadata=cell_meta("add", solution=True),
            ),
            new_code_cell(
                "assert add(1, 2) == 3\n"
                "### BEGIN HIDDEN TESTS\nassert add(-4, 4) == 0\n### END HIDDEN TESTS",
                metadata=cell_meta("test_add", grade=True, locked=True, points=2),
            ),
        ]
    )
    release_tiny(course, source)
    release = nbtools.read_notebook(grading.release_notebook(course, "tiny"))
    release.cells[0].source = solution
    nbtools.write_notebook(release, course / "submitted" / student / "tiny" / "tiny.ipynb")
    return course


class _TextOnly(HTMLParser):
    """The visible text of an HTML page (syntax highlighting splits code into many tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(path: Path) -> str:
    """The visible text of an HTML file (e.g. a feedback page)."""
    parser = _TextOnly()
    parser.feed(path.read_text())
    return "".join(parser.parts)
