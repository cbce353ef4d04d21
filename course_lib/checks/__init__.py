"""Helpers for autograded tests: clear failure messages and forbidden calls.

Students read what these functions print when a graded cell fails, so every message says
what was checked, what was expected and what the code produced.

    assert_close      compare a result with the expected tensor (shapes, dtypes, largest difference)
    forbid            context manager: running e.g. a convolution operator inside it fails,
                      whatever name or alias led to it (decided at PyTorch's dispatcher)
    calls_in_source   the dotted names a function's source calls or references (AST)
    uses_any          which of some names a function's source uses (matched by suffix)
    refers_to_any     which of some objects a function's source refers to, aliases included
    own_code_uses     forbidden names or objects reached by a function or the notebook code it calls
"""

from __future__ import annotations

from course_lib.checks.compare import assert_close
from course_lib.checks.operators import ForbiddenCallError, forbid
from course_lib.checks.source import calls_in_source, own_code_uses, refers_to_any, uses_any

__all__ = [
    "ForbiddenCallError",
    "assert_close",
    "forbid",
    "calls_in_source",
    "uses_any",
    "refers_to_any",
    "own_code_uses",
]
