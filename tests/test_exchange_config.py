"""course_tools.classroom: the exchange directory and what each role's Jupyter loads (seconds).

The end-to-end runs are tests/test_exchange.py (one machine) and tests/browser/ (a JupyterHub).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from course_tools import classroom, grading

# What a Jupyter server started with JUPYTER_CONFIG_PATH=<path> would load, for each path given on
# the command line: its server extensions (ServerApp.find_server_extensions merges every config
# directory) and the JupyterLab plugins that its page config disables. One process for all: the
# imports take seconds.
PROBE = """
import json, os, sys
from jupyter_core.paths import jupyter_path
from jupyter_server.serverapp import ServerApp
from jupyterlab_server.config import get_page_config
result = []
for config_path in sys.argv[1:]:
    os.environ["JUPYTER_CONFIG_PATH"] = config_path
    app = ServerApp()
    app.find_server_extensions()
    page = get_page_config(jupyter_path("labextensions"), logger=app.log)
    result.append([app.jpserver_extensions, page.get("disabledExtensions", [])])
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def role_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("class")
    dirs = classroom.write_hub_configs(root, root / "exchange")
    dirs["laptop"] = root / "laptop"  # a student without an exchange
    classroom.write_config(dirs["laptop"], classroom.student_config(exchange=None))
    return dirs


@pytest.fixture(scope="module")
def loaded(role_dirs) -> dict[str, tuple[dict, set]]:
    """role -> (server extensions, disabled lab plugins) that role's JupyterLab loads."""
    roles = {
        "student": classroom.role_config_path("student", role_dirs),
        "instructor": classroom.role_config_path("instructor", role_dirs),
        "laptop": str(role_dirs["laptop"]),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *roles.values()], capture_output=True, text=True, check=True
    ).stdout
    results = json.loads(out.strip().splitlines()[-1])
    # JupyterLab turns {plugin: true} into a list of the disabled plugins.
    return {
        role: (ext, set(disabled)) for role, (ext, disabled) in zip(roles, results, strict=True)
    }


def test_students_do_not_load_the_instructor_tools(loaded):
    extensions, disabled = loaded["student"]
    for extension in classroom.INSTRUCTOR_SERVER_EXTENSIONS:
        assert extensions.get(extension) is False, extension
    assert set(classroom.INSTRUCTOR_LAB_PLUGINS) <= disabled
    # They keep the Assignments panel (there is an exchange) and Validate.
    assert extensions.get("nbgrader.server_extensions.assignment_list") is True
    assert extensions.get("nbgrader.server_extensions.validate_assignment") is True
    assert not disabled & {"@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:menu"}


def test_instructors_load_everything(loaded):
    extensions, disabled = loaded["instructor"]
    for extension in classroom.INSTRUCTOR_SERVER_EXTENSIONS + classroom.EXCHANGE_SERVER_EXTENSIONS:
        assert extensions.get(extension) is True, extension
    assert not disabled & set(classroom.INSTRUCTOR_LAB_PLUGINS + classroom.EXCHANGE_LAB_PLUGINS)


def test_a_student_without_an_exchange_gets_no_assignments_panel(loaded, role_dirs):
    # A laptop: work comes through an LMS; the panel could only say the exchange is missing.
    extensions, disabled = loaded["laptop"]
    assert extensions.get("nbgrader.server_extensions.assignment_list") is False
    assert "@jupyter/nbgrader:assignment-list" in disabled
    assert extensions.get("nbgrader.server_extensions.validate_assignment") is True
    assert "Exchange.root" not in (role_dirs["laptop"] / "nbgrader_config.py").read_text()


def test_nbgrader_reads_the_exchange_and_the_course_directory(role_dirs, tmp_path):
    code = (
        "from nbgrader.apps.baseapp import NbGrader\n"
        "app = NbGrader(); app.initialize([])\n"
        "print(app.config.Exchange.root, app.coursedir.course_id, app.coursedir.root)\n"
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_PATH": classroom.role_config_path("instructor", role_dirs),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    exchange, course_id, root = out.stdout.split()[-3:]
    assert exchange == str(role_dirs["student"].parents[1] / "exchange")
    assert course_id == grading.COURSE_ID
    assert root == str(tmp_path / "cnn-course")  # ~ expanded by the instructor's own process


def test_write_config_merges_json_and_keeps_a_foreign_nbgrader_config(tmp_path):
    (tmp_path / "labconfig").mkdir()
    (tmp_path / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"some-other:plugin": True}, "other": 1})
    )
    classroom.write_config(tmp_path, classroom.student_config())
    page = json.loads((tmp_path / "labconfig" / "page_config.json").read_text())
    assert page["other"] == 1 and page["disabledExtensions"]["some-other:plugin"] is True
    assert page["disabledExtensions"]["@jupyter/nbgrader:formgrader"] is True
    # Written again by the same module: replaced. Written by someone else: left alone.
    classroom.write_config(tmp_path, classroom.student_config())
    (tmp_path / "nbgrader_config.py").write_text("c.Exchange.root = '/mine'\n")
    with pytest.raises(classroom.ClassroomError, match="add these lines"):
        classroom.write_config(tmp_path, classroom.student_config())
    assert (tmp_path / "nbgrader_config.py").read_text() == "c.Exchange.root = '/mine'\n"


def test_create_exchange_makes_a_sticky_shared_root_and_an_owned_course_dir(tmp_path):
    course = classroom.create_exchange(tmp_path / "exchange")
    assert stat.S_IMODE((tmp_path / "exchange").stat().st_mode) == 0o1777
    assert course == tmp_path / "exchange" / grading.COURSE_ID
    assert stat.S_IMODE(course.stat().st_mode) == 0o755
    assert course.stat().st_uid == os.getuid()
    assert classroom.create_exchange(tmp_path / "exchange") == course  # again: no change
    with pytest.raises(classroom.ClassroomError, match="no account named"):
        classroom.create_exchange(tmp_path / "exchange", instructor="no-such-user-cnn")


def test_command_line_writes_a_student_config(tmp_path, capsys):
    assert classroom.main(["student-config", str(tmp_path), "--exchange", "/srv/x"]) == 0
    assert "c.Exchange.root = '/srv/x'" in (tmp_path / "nbgrader_config.py").read_text()
    assert "restart JupyterLab" in capsys.readouterr().out


def test_feedback_and_formgrader_pages_take_mathjax_from_the_jupyter_server():
    """nbgrader_config.py puts the course's mathjax macro before nbconvert's CDN one."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(grading.REPO_ROOT)).load_config()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$H_{out}$")])
    html, _ = HTMLExporter(config=config, template_name="classic").from_notebook_node(notebook)
    assert "static/jupyter_server_mathjax/MathJax.js" in html
    # nbconvert's classic page loads other scripts from a CDN; nbgrader's feedback and formgrade
    # templates replace those (tests/test_exchange.py checks a real feedback file).
    assert not re.search(r"<script[^>]*src=\"https?://[^\"]*mathjax", html, re.IGNORECASE)
    json.dumps(config)  # the formgrader prints it as JSON ("config is not serializable")
