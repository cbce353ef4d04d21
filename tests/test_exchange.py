"""nbgrader's exchange on one shared machine, as docs/instructor-guide.md sets it up (no hub).

Real Unix accounts (an instructor, two students) go through a week of the class on the command
line: release -> fetch -> submit -> collect -> autograde -> feedback -> fetch feedback, each
command run as the account that would type it, with the Jupyter configuration of its role from
`course_tools.classroom`. The browser tests (tests/browser/) do the same through JupyterLab on a
JupyterHub. Needs root (see tests/classroom_helpers.py); ~1 min.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from classroom_helpers import Classroom, make_class

from course_tools import grading

PS = "ps1_convolution"
EXAMPLES = grading.REPO_ROOT / grading.EXAMPLES_DIR / "submissions"


@pytest.fixture(scope="module")
def course() -> Classroom:
    """The set-up of docs/instructor-guide.md, "One shared machine, no hub".

    The student configuration goes to a directory on everyone's JUPYTER_CONFIG_PATH (the guide
    writes it into the course environment's own ``etc/jupyter``, shared by other work here); the
    instructor writes theirs into ``~/.jupyter``, which Jupyter reads first.
    """
    course = make_class("exch-teacher", ["exch-ada", "exch-ben"], [PS])
    classroom = [sys.executable, "-m", "course_tools.classroom"]
    student_dir = course.root / "environment-etc-jupyter"
    for args in (  # as root
        ["exchange", str(course.exchange), "--instructor", course.instructor.name],
        ["student-config", str(student_dir), "--exchange", str(course.exchange)],
    ):
        subprocess.run([*classroom, *args], check=True, capture_output=True)
    course.config_path = str(student_dir)
    course.run(
        course.instructor,
        *classroom,
        "instructor-config",
        str(course.instructor.home / ".jupyter"),
        "--course-dir",
        "~/cnn-course",
        "--exchange",
        str(course.exchange),
    )
    yield course
    shutil.rmtree(course.root)


def _cannot(course: Classroom, account, code: str) -> str:
    """Run Python ``code`` as ``account``; it must fail with PermissionError. Returns stderr."""
    proc = course.run(account, sys.executable, "-c", code, check=False)
    assert proc.returncode != 0 and "PermissionError" in proc.stderr, (
        f"{account.name} could run {code!r}:\n{proc.stdout}{proc.stderr}"
    )
    return proc.stderr


def _each_student(course: Classroom, *args: str) -> None:
    """``nbgrader <args>`` as every student at once (as a class does; it halves the wait)."""
    with ThreadPoolExecutor(len(course.students)) as pool:
        list(pool.map(lambda student: course.nbgrader(student, *args), course.students))


@pytest.mark.slow
def test_a_week_of_the_class_through_the_exchange(course: Classroom):
    teacher, (ada, ben) = course.instructor, course.students
    course_exchange = course.exchange / grading.COURSE_ID

    # Set-up: the exchange is world-writable and sticky; its course directory is the instructor's.
    assert stat.S_IMODE(course.exchange.stat().st_mode) == 0o1777
    assert course_exchange.stat().st_uid == teacher.uid

    # Instructor: generate the student version, release it.
    course.nbgrader(teacher, "generate_assignment", PS, "--force")
    course.nbgrader(teacher, "release_assignment", PS)
    released = course_exchange / "outbound" / PS / f"{PS}.ipynb"
    assert released.is_file() and released.stat().st_uid == teacher.uid
    _cannot(course, ada, f"open({str(released)!r}, 'a')")  # students cannot alter a release

    # Students: the assignment is listed, without "exchange directory does not exist".
    listing = course.nbgrader(ada, "list")
    assert f"{grading.COURSE_ID} {PS}" in listing.stdout + listing.stderr, listing
    _each_student(course, "fetch_assignment", PS)
    for student in (ada, ben):
        fetched = student.home / PS / f"{PS}.ipynb"
        assert fetched.is_file() and fetched.stat().st_uid == student.uid
    # Ben does the work (the reference solution); Ada hands in the blank notebook.
    complete = (EXAMPLES / "example-complete" / PS / f"{PS}.ipynb").read_bytes()
    (ben.home / PS / f"{PS}.ipynb").write_bytes(complete)
    _each_student(course, "submit", PS)
    # Submissions are private: a student cannot list the inbound directory.
    _cannot(course, ada, f"import os; os.listdir({str(course_exchange / 'inbound')!r})")

    # Instructor: collect, autograde with the course's grading command.
    course.nbgrader(teacher, "collect", PS)
    for student in (ada, ben):
        submitted = course.course_dir / "submitted" / student.name / PS / f"{PS}.ipynb"
        assert submitted.is_file(), f"collect did not bring {student.name}'s {PS}"
    assert (course.course_dir / "submitted" / ben.name / PS / f"{PS}.ipynb").read_bytes() == (
        complete
    )
    course.nbgrader(teacher, "autograde", PS)
    scores = grading.read_scores(course.course_dir)
    expected = grading.expected_scores(grading.REPO_ROOT, [PS])
    assert scores[(ben.name, PS)].auto_score == expected[("example-complete", PS)]
    assert scores[(ada.name, PS)].auto_score == expected[("example-blank", PS)] == 0

    # Instructor: feedback; students fetch their own, and only their own.
    course.nbgrader(teacher, "generate_feedback", PS)
    course.nbgrader(teacher, "release_feedback", PS)
    _cannot(course, ada, f"import os; os.listdir({str(course_exchange / 'feedback')!r})")
    total = expected[("example-complete", PS)]
    _each_student(course, "fetch_feedback", PS)
    for student, score in [(ada, 0.0), (ben, total)]:
        (html_file,) = (student.home / PS / "feedback").glob(f"*/{PS}.html")
        html = html_file.read_text()
        assert re.search(rf"Score:\s*{score:g}(\.0)?\s*/\s*{total:g}", html), (
            f"{student.name}'s feedback does not show {score:g} / {total:g}"
        )
        # Formulas: MathJax from the student's own Jupyter server, never a CDN.
        assert "static/jupyter_server_mathjax/MathJax.js" in html
        assert not re.search(r"<script[^>]+src=\"https?://", html), "feedback loads a script"
