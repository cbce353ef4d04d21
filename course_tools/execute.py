"""Re-execute notebooks in place and stamp each one with the code that produced its outputs.

    python -m course_tools.execute lectures/01_convolution.ipynb ...   # what `make lectures` runs
    python -m course_tools.execute --no-stamp solutions/*/*.ipynb

A stored lecture is only as good as the code that produced it: after a change to ``course_lib``
or to a cell, text outputs that nbval compares may still match while figures (which nbval does
not compare) are stale. So every executed notebook gets a *stamp* in its metadata,

    metadata["course"]["executed_with"] = {
        "cells": sha256 of the code cells' sources,
        "modules": {"course_lib/conv.py": sha256 of the file, ...},
    }

listing every ``course_lib`` / ``course_tools`` module the kernel had imported when the last cell
finished. ``tests/test_lectures.py`` recomputes the stamp from the working tree and fails, naming
what changed, when a stored notebook is older than its code.

Two more things this does differently from ``jupyter nbconvert --execute --inplace``:

* widgets: nbclient 0.11 raises ``KeyError`` in ``output_widget.py`` for an ``interact`` cell
  when run with ``store_widget_state=False`` (its Output-widget mock writes into the widget state
  it was told not to keep). We execute with the state kept, then drop it and the widget views
  that point at it: sliders need a live kernel anyway, and a stored view without its state shows
  "Error displaying widget: model not found" in JupyterLab;
* no per-cell timestamps (``record_timing=False``), so re-running changes only real outputs;
* the notebook's ``kernelspec`` is rewritten from the kernel that ran it (``scripts/setup_env.sh``
  registers it as "Python 3 (ipykernel)"): a stored display name that differs from the installed
  kernel's makes JupyterLab open every notebook as modified.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

REPO_ROOT = Path(__file__).resolve().parent.parent
STAMPED_PACKAGES = ("course_lib", "course_tools")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT_S = 600

# Runs in the kernel after the last cell: the repository modules the notebook has imported, and
# the kernel's CPU time (a measure of cost that, unlike wall time, hardly depends on machine load).
_PROBE = f"""
import json as _json, sys as _sys, time as _time
print(_json.dumps({{
    "modules": sorted(
        _module.__file__
        for _name, _module in list(_sys.modules.items())
        if _name.split(".")[0] in {STAMPED_PACKAGES!r} and getattr(_module, "__file__", None)
    ),
    "cpu_s": _time.process_time(),
}}))
"""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a text file with line endings normalised (a Windows checkout stamps the same)."""
    return _sha256(path.read_text(encoding="utf-8").replace("\r\n", "\n"))


def cells_digest(nb: NotebookNode) -> str:
    """sha256 of the code cells' sources, in order (markdown edits do not make outputs stale)."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return _sha256(json.dumps(sources))


def stamp_for(nb: NotebookNode, module_files: Iterable[str | Path], root: Path = REPO_ROOT) -> dict:
    """The stamp of ``nb`` executed with ``module_files`` (repository-relative posix paths)."""
    modules = {}
    for name in module_files:
        relative = Path(name).as_posix()
        modules[relative] = file_digest(root / relative)
    return {"cells": cells_digest(nb), "modules": dict(sorted(modules.items()))}


def stored_stamp(nb: NotebookNode) -> dict | None:
    """The stamp written when ``nb`` was last executed by this module (None if never)."""
    return nb.metadata.get("course", {}).get("executed_with")


def stale_reasons(nb: NotebookNode, root: Path = REPO_ROOT) -> list[str]:
    """Why ``nb``'s stored outputs do not come from the current code (empty list: up to date)."""
    stamp = stored_stamp(nb)
    if stamp is None:
        return ["it carries no execution stamp (it was not executed with course_tools.execute)"]
    reasons = []
    if stamp.get("cells") != cells_digest(nb):
        reasons.append("a code cell was edited after the notebook was executed")
    for relative, digest in stamp.get("modules", {}).items():
        path = root / relative
        if not path.is_file():
            reasons.append(f"{relative}, which it imported, no longer exists")
        elif file_digest(path) != digest:
            reasons.append(f"{relative} changed after the notebook was executed")
    return reasons


def _relative_module_files(paths: Sequence[str], root: Path) -> list[str]:
    """Repository-relative paths of the kernel's module files; all must lie inside ``root``."""
    relative = []
    for name in paths:
        path = Path(name).resolve()
        try:
            relative.append(path.relative_to(root.resolve()).as_posix())
        except ValueError:
            raise RuntimeError(
                f"the kernel imported {path}, which is not inside this repository ({root}): the "
                f"outputs would come from another copy of the code. Put the repository first on "
                f"the path (PYTHONPATH={root}) or install it with `pip install -e .`"
            ) from None
    return relative


def _drop_widget_state(nb: NotebookNode) -> None:
    """Remove stored widget state and the widget views that would need it."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if WIDGET_VIEW not in out.get("data", {})]


def execute_notebook(
    path: str | Path, stamp: bool = True, root: Path = REPO_ROOT
) -> tuple[float, float]:
    """Execute ``path`` top to bottom in its own folder and write it back.

    Returns ``(wall seconds, CPU seconds of the kernel)``. Raises
    ``nbclient.exceptions.CellExecutionError`` (the notebook file is left unchanged) when a cell
    fails.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient
    from traitlets.config import Config

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    probe = nbformat.v4.new_code_cell(_PROBE)
    nb.cells.append(probe)
    # The kernel talks over Unix sockets in a folder of its own, not TCP: with TCP, jupyter_client
    # picks "free" ports and lets go of them before the kernel binds, so a kernel started at the
    # same moment by another process (make -j, parallel tests) can take them and the two hang.
    # The socket path must be absolute: the kernel runs in the notebook's folder, we do not.
    with tempfile.TemporaryDirectory(prefix="course-kernel-") as sockets:
        config = Config()
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(sockets) / "kernel")
        client = NotebookClient(
            nb,
            config=config,
            timeout=CELL_TIMEOUT_S,
            record_timing=False,
            store_widget_state=True,  # False trips nbclient's KeyError; dropped below instead
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    nb.cells.remove(probe)
    spec = KernelSpecManager().get_kernel_spec(client.kernel_name)
    nb.metadata.kernelspec = {
        "display_name": spec.display_name,
        "language": spec.language,
        "name": client.kernel_name,
    }
    printed = "".join(out.get("text", "") for out in probe.outputs if out.output_type == "stream")
    report = json.loads(printed)
    if stamp:
        modules = _relative_module_files(report["modules"], root)
        nb.metadata.setdefault("course", {})["executed_with"] = stamp_for(nb, modules, root)
    _drop_widget_state(nb)
    for cell in nb.cells:  # timestamps from earlier nbconvert runs: noise in every diff
        cell.metadata.pop("execution", None)
    nbformat.write(nb, str(path))
    return seconds, report["cpu_s"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.execute",
        description="Execute notebooks in place (top to bottom, fresh kernel each) and stamp "
        "them with the code they ran; tests/test_lectures.py checks the stamps.",
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute")
    parser.add_argument(
        "--no-stamp",
        dest="stamp",
        action="store_false",
        help="do not record the code in the metadata (nbgrader source notebooks)",
    )
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    for path in args.notebooks:
        print(f"executing {path} ...", flush=True)
        seconds, cpu = execute_notebook(path, stamp=args.stamp)
        print(f"  {path}: {seconds:.1f} s wall, {cpu:.1f} s CPU in the kernel", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
