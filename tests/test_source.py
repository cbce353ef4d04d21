"""course_lib.source.show_source: the lectures' "read the code" cells."""

from __future__ import annotations

import inspect

from course_lib import conv
from course_lib.source import show_source, source_location


def test_source_location_names_the_repository_file_and_lines():
    lines, first = inspect.getsourcelines(conv.conv2d)
    assert source_location(conv.conv2d) == (
        f"course_lib/conv.py, lines {first}-{first + len(lines) - 1}"
    )


def test_show_source_returns_the_real_code(capsys):
    code = show_source(conv.conv2d)
    assert code.data == inspect.getsource(conv.conv2d)
    assert "course_lib/conv.py" in capsys.readouterr().out  # the Markdown header, as plain text
