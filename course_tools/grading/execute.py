"""nbgrader's Execute preprocessor, made safe and fair for grading untrusted notebooks.

`GradingExecute` replaces ``Execute`` in ``c.Autograde.autograde_preprocessors``. It:

- starts every kernel in the OS sandbox (`SandboxedKernelManager`);
- gives the whole notebook a wall-clock budget (``notebook_timeout``) on top of nbgrader's
  per-cell ``timeout``; cells left when the budget is spent get an error output saying so (a test
  cell with no output would otherwise score full points);
- keeps going when the kernel dies (``exit()``, ``os._exit``, a crash, the memory limit) or does
  not answer the interrupt after a cell timed out: the cell gets an error output saying what
  happened, a fresh sandboxed kernel re-runs the cells that had completed before it (their
  recorded outputs are kept) and grading continues with the next cell. So such a cell costs
  that cell, or what it prevented, never the whole notebook;
- caps the outputs kept, in bytes per cell and per notebook, with a visible note; error outputs
  are always kept (shortened), since dropping one could turn a failed test into a pass;
- turns ``execute_result`` outputs of test cells into ``display_data``: nbgrader would read a
  number shown as a test cell's result as its partial credit, and student code can produce one;
- records what it did in the notebook's metadata (``course_grading``) for the grading report.
"""

from __future__ import annotations

import copy
from time import monotonic

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer, default

from course_tools.grading.sandbox import SandboxedKernelManager

METADATA_KEY = "course_grading"


def grading_metadata(nb: NotebookNode) -> dict:
    """The ``course_grading`` record in a notebook's metadata (created if missing)."""
    return nb.metadata.setdefault(METADATA_KEY, {"notes": []})


def add_note(nb: NotebookNode, text: str) -> None:
    """Record a grading note (shown to the instructor and the student) once."""
    notes = grading_metadata(nb).setdefault("notes", [])
    if text not in notes:
        notes.append(text)


def is_test_cell(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def cell_label(cell: NotebookNode, index: int) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"cell {grade_id!r}" if grade_id else f"cell {index + 1}"


def output_size(output: NotebookNode) -> int:
    """Approximate bytes an output adds to the notebook (text and data as stored)."""
    if output.output_type == "stream":
        return len(output.get("text", ""))
    if output.output_type == "error":
        traceback = output.get("traceback", [])
        return len(output.get("evalue", "")) + sum(len(line) for line in traceback)
    return sum(len(str(value)) for value in output.get("data", {}).values())


def error_output(ename: str, evalue: str) -> NotebookNode:
    return new_output(
        "error", ename=ename, evalue=evalue, traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]
    )


class KernelLost(Exception):
    """The kernel died or stopped answering during a cell; the message says which."""


class GradingExecute(Execute):
    """Execute a submission in sandboxed kernels, within a time budget, with capped outputs."""

    notebook_timeout = Integer(
        600, help="Wall-clock seconds for the whole notebook (all cells, restarts included)"
    ).tag(config=True)
    max_output_bytes_per_cell = Integer(
        500_000, help="Output bytes kept per cell; the rest is dropped with a note"
    ).tag(config=True)
    max_output_bytes_per_notebook = Integer(
        5_000_000, help="Output bytes kept for the whole notebook"
    ).tag(config=True)
    max_error_bytes = Integer(
        20_000, help="Bytes kept of an error's message and traceback (errors are never dropped)"
    ).tag(config=True)
    max_kernel_restarts = Integer(
        5, help="Fresh kernels a notebook may need (after exit(), a crash, an ignored interrupt)"
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    @default("shutdown_kernel")
    def _kill_when_done(self):
        # Every output has arrived when the last cell's reply has; killing the sandbox at once
        # saves the polite shutdown's wait (seconds when a cell ignores the interrupt).
        return "immediate"

    # --- the notebook loop ---------------------------------------------------------------------

    def preprocess(self, nb, resources=None, km=None):
        """Run every cell; on a lost kernel, restart, replay what had completed, go on."""
        from nbclient import NotebookClient

        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._deadline = monotonic() + self.notebook_timeout
        self._notebook_bytes = 0
        self._budget_spent = False
        self.timeout_func = self._cell_timeout
        completed: list[int] = []  # code cells that ran to the end, in order
        index, restarts = 0, 0
        cells = self.nb.cells
        while index < len(cells):
            lost = None
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                if completed and not self._replay(completed):
                    self._skip_rest(index, "the kernel could not be rebuilt after a restart")
                    break
                while index < len(cells):
                    if self._out_of_time():
                        self._skip_rest(index, self._budget_message())
                        index = len(cells)
                        break
                    try:
                        ran_to_end = self._run_cell(index, resources)
                    except KernelLost as error:
                        lost = error
                        index += 1
                        break
                    if ran_to_end:
                        completed.append(index)
                    index += 1
            if lost is not None:
                restarts += 1
                if restarts > self.max_kernel_restarts:
                    self._skip_rest(index, f"the kernel was lost {restarts} times")
                    break
        self.set_widgets_metadata()
        grading_metadata(self.nb)["executed"] = True
        return self.nb, self.resources

    def _run_cell(self, index: int, resources) -> bool:
        """Execute cell ``index``; True when it ran to the end (neither timed out nor exited)."""
        cell = self.nb.cells[index]
        self._cell_bytes = 0
        self._cell_capped = False
        self._timed_out = False
        self._asked_exit = False
        try:
            self.preprocess_cell(cell, resources, index)
        except DeadKernelError:
            cell = self.nb.cells[index]
            self._lose_cell(
                index,
                "KernelDied",
                "the kernel stopped while running this cell (exit(), a crash or the memory "
                "limit); the cells after it ran in a fresh kernel",
            )
        except CellTimeoutError:
            self._lose_cell(
                index,
                "CellTimeoutError",
                f"this cell ran past the {self.timeout} s limit and did not stop when "
                "interrupted; the cells after it ran in a fresh kernel",
            )
        if self._asked_exit:
            add_note(
                self.nb,
                f"{cell_label(cell, index)} called exit(): the cells after it ran in a fresh "
                "kernel, after re-running the cells before it",
            )
            raise KernelLost("exit")
        if self._timed_out:
            add_note(self.nb, f"{cell_label(cell, index)} was stopped after {self.timeout} s")
        if cell.cell_type == "code" and is_test_cell(cell):
            for output in cell.outputs:
                if output.output_type == "execute_result":  # no partial credit from a value
                    output.output_type = "display_data"
                    output.pop("execution_count", None)
        return cell.cell_type == "code" and not self._timed_out

    def _lose_cell(self, index: int, ename: str, message: str) -> None:
        cell = self.nb.cells[index]
        cell.outputs.append(error_output(ename, message))
        add_note(self.nb, f"{cell_label(cell, index)}: {message}")
        raise KernelLost(message)

    def _replay(self, completed: list[int]) -> bool:
        """Re-run the completed cells in a fresh kernel; their recorded outputs stay unchanged."""
        for index in completed:
            original = self.nb.cells[index]
            scratch = copy.deepcopy(original)
            self._cell_bytes, self._cell_capped, self._replaying = 0, True, True
            try:
                self.execute_cell(scratch, index, store_history=True)
            except (DeadKernelError, CellTimeoutError):
                return False
            finally:
                self.nb.cells[index] = original
                self._replaying = False
        return True

    def _skip_rest(self, index: int, reason: str) -> None:
        """Mark every code cell from ``index`` on as not run (an error output, so no points)."""
        skipped = 0
        for cell in self.nb.cells[index:]:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [error_output("CellNotRun", f"not run: {reason}")]
                skipped += 1
        if skipped:
            add_note(self.nb, f"{skipped} cell(s) were not run: {reason}")

    # --- time budget ---------------------------------------------------------------------------

    def _out_of_time(self) -> bool:
        return monotonic() >= self._deadline

    def _budget_message(self) -> str:
        return f"the notebook used its whole time budget ({self.notebook_timeout} s)"

    def _cell_timeout(self, cell) -> int | None:
        remaining = max(1, int(self._deadline - monotonic()))
        return min(self.timeout, remaining) if self.timeout else remaining

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        reply = await super()._async_handle_timeout(timeout, cell)
        if reply is not None and self._out_of_time():
            reply["content"]["evalue"] = self._budget_message()
            reply["content"]["traceback"] = [f"CellTimeoutError: {self._budget_message()}"]
        return reply

    # --- outputs -------------------------------------------------------------------------------

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        reply = kwargs.get("execute_reply") or {}
        for payload in reply.get("content", {}).get("payload", []):
            if payload.get("source") == "ask_exit" and not payload.get("keepkernel", False):
                self._asked_exit = True

    def output(self, outs, msg, display_id, cell_index):
        """Keep an output only while the cell's and the notebook's byte budgets last."""
        if getattr(self, "_replaying", False):
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        size = output_size(out)
        if out.output_type == "error":
            self._shorten_error(out)
            return out
        cell_left = self.max_output_bytes_per_cell - self._cell_bytes
        notebook_left = self.max_output_bytes_per_notebook - self._notebook_bytes
        room = min(cell_left, notebook_left)
        if size <= room:
            self._cell_bytes += size
            self._notebook_bytes += size
            return out
        outs.remove(out)
        if out.output_type == "stream" and room > 0:  # keep the start of the text
            out.text = out.text[:room]
            outs.append(out)
            self._cell_bytes += room
            self._notebook_bytes += room
        if not self._cell_capped:
            self._cell_capped = True
            which = "cell" if cell_left <= notebook_left else "notebook"
            limit = (
                self.max_output_bytes_per_cell
                if which == "cell"
                else self.max_output_bytes_per_notebook
            )
            note = f"[grading note: output beyond {limit:,} bytes per {which} was not kept]"
            outs.append(new_output("stream", name="stdout", text=f"\n{note}\n"))
            add_note(self.nb, f"{cell_label(self.nb.cells[cell_index], cell_index)}: {note[15:-1]}")
        return None

    def _shorten_error(self, out: NotebookNode) -> None:
        limit = self.max_error_bytes
        if len(out.get("evalue", "")) > limit:
            out.evalue = out.evalue[:limit] + " [... cut]"
        kept, total = [], 0
        for line in out.get("traceback", []):
            if total + len(line) > limit:
                kept.append("[... traceback cut]")
                break
            kept.append(line)
            total += len(line)
        out.traceback = kept
