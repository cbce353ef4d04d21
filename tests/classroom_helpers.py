"""A throwaway class for the exchange tests: Unix accounts, a class directory, commands as a user.

nbgrader's exchange relies on Unix permissions (students write into a directory they cannot list,
`collect` checks who owns a submission), so the tests use real accounts. They need root, which CI
has (it runs as root on a fresh machine); elsewhere they skip. With ``COURSE_CLASS_TESTS=required``
(set by .ci/run) a missing prerequisite fails instead, so CI never skips them silently.

Test accounts are created once and found again on later runs: each has the marker file
``TEST_ACCOUNT_MARKER`` in its home, and only homes with the marker are ever emptied. An account
of that name without the marker belongs to someone else and stops the test.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from course_tools import grading

REQUIRE_ENV = "COURSE_CLASS_TESTS"
TEST_ACCOUNT_MARKER = ".cnn-course-test-account"
REPO = grading.REPO_ROOT
VENV_BIN = Path(sys.executable).parent


def class_tests_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "required"


def missing_prerequisite(message: str) -> None:
    """Skip the test (fail it where CI requires these tests) with ``message``."""
    if class_tests_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=required: this test must run here)", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Account:
    """A Unix account of the test class."""

    name: str
    uid: int
    gid: int
    home: Path


def ensure_account(name: str) -> Account:
    """The test account ``name`` with an empty home (created when missing; needs root)."""
    with open("/tmp/cnn-course-test-accounts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # useradd and pytest-xdist workers must not race
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(name)
            (Path(entry.pw_dir) / TEST_ACCOUNT_MARKER).touch()
    home = Path(entry.pw_dir)
    if not (home / TEST_ACCOUNT_MARKER).exists():
        pytest.fail(
            f"the account {name} exists but is not a test account ({home / TEST_ACCOUNT_MARKER} is "
            "missing); the exchange tests will not touch it",
            pytrace=False,
        )
    for child in home.iterdir():  # left over from an earlier run
        if child.name != TEST_ACCOUNT_MARKER:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    home.chmod(0o755)
    return Account(name, entry.pw_uid, entry.pw_gid, home)


def user_env(account: Account, jupyter_config_path: str = "") -> dict[str, str]:
    """The environment of a login of ``account``: this Python's bin first on PATH."""
    env = {
        "HOME": str(account.home),
        "USER": account.name,
        "LOGNAME": account.name,
        "PATH": os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    if os.environ.get("PYTHONPATH"):  # a worktree under test
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if jupyter_config_path:
        env["JUPYTER_CONFIG_PATH"] = jupyter_config_path
    return env


def run_as(
    account: Account,
    args: Sequence[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run ``args`` as ``account`` (setuid in the child), in its home unless ``cwd`` is given."""
    proc = subprocess.run(
        list(args),
        cwd=cwd or account.home,
        env=env or user_env(account),
        user=account.uid,
        group=account.gid,
        extra_groups=[],
        umask=0o022,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` as {account.name} exited {proc.returncode}:\n"
            f"{(proc.stdout + proc.stderr)[-4000:]}"
        )
    return proc


def give_to(account: Account, path: Path) -> None:
    """``chown -R`` ``path`` to ``account``."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chown(item, account.uid, account.gid, follow_symlinks=False)


def check_course_importable(student: Account) -> None:
    """The class accounts can run this Python and find the course (else skip or fail)."""
    code = (
        "import importlib.util as u\n"
        "for name in ['course_lib', 'course_tools', 'nbgrader', 'torch']:\n"
        "    assert u.find_spec(name), f'cannot find {name}'\n"
    )
    proc = run_as(student, [sys.executable, "-c", code], check=False)
    if proc.returncode != 0:
        missing_prerequisite(
            f"the account {student.name} cannot import the course from {sys.executable}: make "
            "the checkout and its .venv readable by other users (chmod o+x on every parent "
            f"directory of {REPO}):\n{proc.stderr[-1500:]}"
        )


def require_root() -> None:
    if os.geteuid() != 0:
        missing_prerequisite(
            "the exchange tests create Unix accounts and run nbgrader as them: run them as root "
            "(CI does)"
        )


@dataclass
class Classroom:
    """The accounts of a test class, its world-readable directory and the instructor's course.

    ``config_path`` is the ``JUPYTER_CONFIG_PATH`` every account's commands get (the class's
    configuration directories, set up by the test).
    """

    root: Path  # world-readable temporary directory
    instructor: Account
    students: list[Account]
    config_path: str = ""

    @property
    def exchange(self) -> Path:
        return self.root / "exchange"

    @property
    def course_dir(self) -> Path:
        return self.instructor.home / "cnn-course"

    def run(self, account: Account, *args: str, cwd: Path | None = None, **kwargs):
        """``args`` as ``account``, with the class's Jupyter configuration."""
        return run_as(account, args, cwd=cwd, env=user_env(account, self.config_path), **kwargs)

    def nbgrader(self, account: Account, *args: str, **kwargs):
        """``nbgrader <args>`` as ``account``, in its home directory (an instructor's nbgrader
        finds the course through ``CourseDirectory.root`` in their configuration)."""
        return self.run(account, sys.executable, "-m", "nbgrader", *args, **kwargs)


def make_class(instructor: str, students: Sequence[str], assignments: Sequence[str]) -> Classroom:
    """Accounts, a fresh world-readable directory under /tmp, and the instructor's course.

    The course directory ``~instructor/cnn-course`` holds the course config and the source
    notebooks of ``assignments``, as an instructor's clone of the repository does. The exchange
    and the Jupyter configuration are left to the test: that is what it tests.
    """
    require_root()
    teacher = ensure_account(instructor)
    pupils = [ensure_account(name) for name in students]
    check_course_importable(pupils[0])
    root = Path(tempfile.mkdtemp(prefix="cnn-class-", dir="/tmp"))
    root.chmod(0o755)
    course = grading.new_course(teacher.home / "cnn-course", REPO, assignments)
    give_to(teacher, course)
    return Classroom(root, teacher, pupils)
