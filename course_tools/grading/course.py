"""The course directory and the nbgrader subprocess every grading step goes through.

nbgrader runs as a subprocess (`python -m nbgrader ...`) so that each step starts from a clean
process and a crash cannot leave this process half-configured. Its environment puts the
interpreter's bin first on PATH: nbgrader calls `alembic` when it creates a gradebook.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COURSE_ID = "cnn-course"
CONFIG_FILE = "nbgrader_config.py"
SOURCE_DIR = "solutions"
RELEASE_DIR = "assignments"
EXAMPLES_DIR = Path("examples")
DEMO_DIR = "demo_course"


class GradingError(RuntimeError):
    """An nbgrader step failed; the message holds the tail of its log."""


def find_course_root(start: Path | None = None) -> Path | None:
    """The course root for a grading command run in ``start`` (default: the current folder).

    ``start`` itself when it holds nbgrader_config.py; otherwise the folder nbgrader would use:
    ``c.CourseDirectory.root`` from the nbgrader configuration in Jupyter's configuration
    folders (``jupyter --paths``; ``python -m course_tools.classroom instructor-config`` writes
    it), so that the command works from any folder, as nbgrader's own commands do. None when
    neither names a course.
    """
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import Config, PyFileConfigLoader

    start = Path.cwd() if start is None else Path(start)
    if (start / CONFIG_FILE).is_file():
        return start.resolve()
    config = Config()
    for folder in reversed(jupyter_config_path()):  # lowest priority first, as Jupyter merges
        if (Path(folder) / CONFIG_FILE).is_file():
            config.merge(PyFileConfigLoader(CONFIG_FILE, path=folder).load_config())
    root = config.CourseDirectory.get("root")
    if root and (Path(root) / CONFIG_FILE).is_file():
        return Path(root).resolve()
    return None


def venv_bin_on_path() -> None:
    """Put this interpreter's bin first on ``os.environ["PATH"]`` (idempotent).

    nbgrader's in-process ``Gradebook`` runs ``alembic`` from PATH when it creates a gradebook;
    `python -m course_tools.grading` started as ``.venv/bin/python`` without an activated venv
    would otherwise fail with FileNotFoundError: 'alembic'.
    """
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bin_dir]:
        os.environ["PATH"] = bin_dir + os.pathsep + path


def nbgrader_env() -> dict[str, str]:
    """The environment for nbgrader: the interpreter's bin first on PATH (alembic, jupyter)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    # Kernels of a grading run share the machine: one thread each keeps 2-core CPUs responsive.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return env


def run_nbgrader(course_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in ``course_dir``; raise GradingError on a non-zero exit."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(
        cmd, cwd=course_dir, env=nbgrader_env(), capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        log_tail = (proc.stdout + proc.stderr)[-4000:]
        raise GradingError(f"`nbgrader {' '.join(args)}` failed in {course_dir}:\n{log_tail}")
    return proc


def list_assignments(course_dir: Path = REPO_ROOT) -> list[str]:
    """Assignment ids with a source notebook ``solutions/<ps>/<ps>.ipynb``, sorted."""
    source = Path(course_dir) / SOURCE_DIR
    return sorted(path.name for path in source.iterdir() if (path / f"{path.name}.ipynb").is_file())


def source_notebook(course_dir: Path, assignment: str) -> Path:
    return Path(course_dir) / SOURCE_DIR / assignment / f"{assignment}.ipynb"


def release_notebook(course_dir: Path, assignment: str) -> Path:
    return Path(course_dir) / RELEASE_DIR / assignment / f"{assignment}.ipynb"


def new_course(
    course_dir: Path, repo_root: Path = REPO_ROOT, assignments: Sequence[str] | None = None
) -> Path:
    """A working course directory: the config and the source notebooks copied from the repo.

    ``assignments`` picks which sources to copy (default: all). ``course_dir`` must not exist:
    nothing is ever overwritten.
    """
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True)
    shutil.copy2(repo_root / CONFIG_FILE, course_dir / CONFIG_FILE)
    (course_dir / SOURCE_DIR).mkdir()
    for assignment in list_assignments(repo_root) if assignments is None else assignments:
        shutil.copytree(
            repo_root / SOURCE_DIR / assignment,
            course_dir / SOURCE_DIR / assignment,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
    return course_dir
