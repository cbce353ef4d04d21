"""Read the code: show the source of a ``course_lib`` function or class in a notebook.

Lectures call ``show_source(conv2d)`` right where they use an implementation, so students read
the real code (not a copy that could drift from it) and see which file it lives in.
"""

from __future__ import annotations

import inspect
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


def source_location(obj: object) -> str:
    """``"course_lib/conv.py, lines 120-161"`` for an object defined in a Python file."""
    target = inspect.unwrap(obj)
    path = Path(inspect.getsourcefile(target) or "")
    lines, first = inspect.getsourcelines(target)
    try:
        shown = path.resolve().relative_to(PACKAGE_ROOT.parent).as_posix()
    except ValueError:  # defined outside the repository (e.g. torch): the full path
        shown = str(path)
    return f"{shown}, lines {first}-{first + len(lines) - 1}"


def show_source(obj: object):
    """Display the source of ``obj`` with its file and line numbers (plain text outside Jupyter).

    Returns an ``IPython.display.Code`` object, so a notebook cell ending in
    ``show_source(conv2d)`` renders it highlighted; its plain-text form is the source itself, so
    nbval notices when a stored lecture shows code older than the library.
    """
    from IPython.display import Code, display

    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    header = f"{name} from {source_location(obj)}"
    display(
        {"text/markdown": f"`{name}` from `{source_location(obj)}`", "text/plain": header}, raw=True
    )
    return Code(inspect.getsource(inspect.unwrap(obj)), language="python")
