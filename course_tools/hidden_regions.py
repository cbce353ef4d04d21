"""Autograding without false tampering warnings: put back what the release left out.

`nbgrader generate_assignment` stores every locked cell of the *source* notebook in the gradebook
(``source_cell``: the full source and its checksum) and only then removes the hidden tests
(``### BEGIN HIDDEN TESTS``) and the graders' mark schemes (``BEGIN MARK SCHEME``) from the
release. When `nbgrader autograde` compares a submitted locked cell with the gradebook
(``OverwriteCells``), the untouched released cell therefore never matches: nbgrader logs
``Attribute 'checksum' for cell ... has changed!`` for every test cell with hidden tests
(jupyter/nbgrader#1961) and restores the source. A real tampering warning drowns among them.

`RestoreHiddenRegions` runs just before ``OverwriteCells``: a submitted locked cell that is
*exactly* the released form of its gradebook source (the source with the hidden-test and
mark-scheme regions cut out, as ``ClearHiddenTests`` / ``ClearMarkScheme`` cut them) gets its
full source back silently. Anything else, such as an edited assert or a deleted line, is left as
it is, so ``OverwriteCells`` still warns about it and restores it.
"""

from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, NbGraderPreprocessor


def released_source(source: str) -> str:
    """What `nbgrader generate_assignment` leaves of a locked cell's ``source``.

    Uses nbgrader's own ``ClearHiddenTests`` and ``ClearMarkScheme`` region removal (with their
    default markers), in the order generate_assignment applies them.
    """
    cell = NotebookNode(source=source)
    ClearHiddenTests()._remove_hidden_test_region(cell)
    ClearMarkScheme()._remove_mark_scheme_region(cell)
    return cell.source


class RestoreHiddenRegions(NbGraderPreprocessor):
    """Give an unmodified released locked cell its gradebook source back before OverwriteCells."""

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        self.notebook_id = resources["nbgrader"]["notebook"]
        self.assignment_id = resources["nbgrader"]["assignment"]
        self.gradebook = Gradebook(resources["nbgrader"]["db_url"])
        with self.gradebook:
            return super().preprocess(nb, resources)

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is None or not utils.is_locked(cell):
            return cell, resources
        try:
            source_cell = self.gradebook.find_source_cell(
                grade_id, self.notebook_id, self.assignment_id
            )
        except MissingEntry:  # OverwriteCells reports unknown cells
            return cell, resources
        if source_cell.locked and cell.source == released_source(source_cell.source):
            cell.source = source_cell.source
        return cell, resources
