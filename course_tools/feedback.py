"""Feedback preprocessing: students see their score and error messages, never the hidden tests
or the reference solutions."""

from __future__ import annotations

import html
import json
import os

import nbformat
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


REDACTED = "[hidden by the grader: this line matched a hidden test or a reference solution]"


def _normalize(text: str) -> str:
    """Collapse whitespace, so re-indented or re-spaced copies of a line still match."""
    return " ".join(text.split())


def _variants(line: str) -> set[str]:
    """How a line can appear when printed: as is, or inside a repr / JSON string."""
    return {line, line.replace("'", "\\'"), line.replace('"', '\\"')}


class RedactSecrets(NbGraderPreprocessor):
    """Replace every output line that contains a hidden-test or reference-solution line.

    Whatever a submission prints (the calling test cell's source read from the stack, the
    gradebook's ``source_cell`` table, ...) the feedback page shows no line of the hidden tests
    or of the reference solutions: each output (streams, errors, rich text of every MIME type)
    is checked line by line against the distinctive lines of the assignment's source notebook
    (`course_tools.notebooks.hidden_test_lines` / `solution_lines`, plus the written answers),
    whitespace-normalized, also HTML-unescaped. A matching line is replaced by `REDACTED`.
    """

    def preprocess(self, nb, resources):
        secrets = self._secret_lines(resources)
        self.redacted = 0
        if secrets:
            for cell in nb.cells:
                for output in cell.get("outputs", []):
                    self._redact_output(output, secrets)
        if self.redacted:
            self.log.warning("redacted %d output line(s) of the feedback", self.redacted)
        return nb, resources

    def _secret_lines(self, resources) -> list[str]:
        from nbgrader.api import Gradebook, MissingEntry

        from course_tools import notebooks as nbtools
        from course_tools.grading.preprocessors import source_notebook_path

        meta = resources.get("nbgrader", {})
        lines: set[str] = set()
        path = source_notebook_path(self.config, meta.get("assignment", ""), meta.get("notebook"))
        if os.path.isfile(path):
            source = nbtools.read_notebook(path)
            lines |= nbtools.hidden_test_lines(source) | nbtools.solution_lines(source)
            for cell in source.cells:
                if cell.cell_type == "markdown" and nbtools.is_solution_cell(cell):
                    answer = nbtools.written_answer(cell).splitlines()
                    lines |= {x.strip() for x in answer if len(x.strip()) >= 40}
        if meta.get("db_url"):  # the hidden tests as the gradebook holds them
            with Gradebook(meta["db_url"]) as gb:
                try:
                    notebook = gb.find_notebook(meta["notebook"], meta["assignment"])
                except MissingEntry:
                    notebook = None
                if notebook is not None:
                    cells = [nbformat.v4.new_code_cell(c.source) for c in notebook.source_cells]
                    lines |= nbtools.hidden_test_lines(nbformat.v4.new_notebook(cells=cells))
        return sorted({v for line in lines for v in _variants(_normalize(line))})

    def _redact_text(self, text: str, secrets: list[str]) -> str:
        out = []
        for line in text.split("\n"):
            flat = _normalize(line)
            plain = _normalize(html.unescape(line)) if "&" in line else flat
            if flat and any(s in flat or s in plain for s in secrets):
                out.append(REDACTED)
                self.redacted += 1
            else:
                out.append(line)
        return "\n".join(out)

    def _redact_output(self, output: NotebookNode, secrets: list[str]) -> None:
        if output.output_type == "stream":
            output.text = self._redact_text(output.text, secrets)
        elif output.output_type == "error":
            output.evalue = self._redact_text(output.evalue, secrets)
            output.traceback = [self._redact_text(t, secrets) for t in output.traceback]
        else:
            for mime, value in list(output.get("data", {}).items()):
                if isinstance(value, str) and not mime.startswith("image/"):
                    output.data[mime] = self._redact_text(value, secrets)
                elif isinstance(value, list):
                    output.data[mime] = [self._redact_text(str(v), secrets) for v in value]
                elif not isinstance(value, str):  # JSON data: check its text form
                    text = json.dumps(value)
                    if self._redact_text(text, secrets) != text:
                        output.data[mime] = REDACTED
