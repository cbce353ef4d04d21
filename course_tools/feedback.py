"""Feedback preprocessing: students see their score and error messages, never the hidden tests."""

from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

HIDDEN_NOTE = (
    "(traceback hidden: it would show the hidden tests; the message above says what failed)"
)


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """Cut the tracebacks of test cells with hidden tests down to ``ename: evalue``.

    IPython prints the source lines around the failing line of the cell, so the traceback of a
    failed visible assert can show the first hidden asserts, and a failed hidden assert shows
    itself. ``ClearHiddenTests`` only strips the cell *source*; this strips the outputs. Run it
    before ``ClearHiddenTests`` (which removes the markers this looks for).
    """

    begin_test_delimeter = Unicode(
        "BEGIN HIDDEN TESTS", help="The marker that starts a hidden test region"
    ).tag(config=True)

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        if cell.cell_type == "code" and self.begin_test_delimeter in cell.source:
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [
                        f"\x1b[0;31m{output.ename}\x1b[0m: {output.evalue}",
                        HIDDEN_NOTE,
                    ]
        return cell, resources
