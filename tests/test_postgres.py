"""The PostgreSQL gradebook (``c.CourseDirectory.db_url``), against a real server on loopback.

The fixture starts a PostgreSQL server of its own (Debian's package ``postgresql``: ``initdb``
and ``pg_ctl`` in a temporary folder, run as an unprivileged user; `.ci/run` installs the
package). Without the server programs the tests fail with the way to install them: they must
run in CI.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from test_parallel import RIGHT, WRONG, assert_tiny_scores, concurrent_writers

from course_tools import grading
from course_tools.grading import bulk_export, synthetic
from course_tools.grading.course import nbgrader_env
from course_tools.grading.database import copy_gradebook, gradebook_url
from course_tools.grading.export import CourseCsvExportPlugin
from course_tools.grading.postgres import TemporaryPostgres, libpq_url, server_binaries


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for this test session (one per xdist worker)."""
    if server_binaries() is None:
        pytest.fail(
            "PostgreSQL server programs (initdb, pg_ctl) are missing: `apt-get install -y "
            "postgresql` (Debian/Ubuntu; .ci/run installs it)"
        )
    with TemporaryPostgres() as server:
        yield server


def new_database(server: TemporaryPostgres) -> str:
    return server.create_database(f"course_{uuid.uuid4().hex[:8]}")


def postgres_course(course: Path, url: str) -> Path:
    """A course whose nbgrader_config.py points the gradebook at ``url``."""
    grading.new_course(course, assignments=[])
    with open(course / grading.CONFIG_FILE, "a") as fh:
        fh.write("\n# tests: the gradebook on a PostgreSQL server\n")
        fh.write(f"c.CourseDirectory.db_url = {url!r}\n")
    return course


def test_libpq_url_drops_the_driver():
    url = "postgresql+psycopg://grader@127.0.0.1:5432/course"
    assert libpq_url(url) == "postgresql://grader@127.0.0.1:5432/course"


def test_postgres_gradebook_takes_concurrent_writers(postgres):
    """Four processes write grades at once (what four workers do): nothing lost."""
    concurrent_writers(new_database(postgres))


def test_backup_of_a_server_gradebook_is_a_complete_sqlite_gradebook(postgres, tmp_path):
    url = new_database(postgres)
    synthetic.synthetic_gradebook(url, n_students=30, n_assignments=2)
    copy = copy_gradebook(url, tmp_path / "backup.db")
    original = bulk_export.load_class(url)
    restored = bulk_export.load_class(f"sqlite:///{copy}")
    assert bulk_export.assignment_rows(restored) == bulk_export.assignment_rows(original)
    assert bulk_export.problem_rows(restored) == bulk_export.problem_rows(original)
    with pytest.raises(FileExistsError):
        copy_gradebook(url, copy)


def test_a_class_moves_from_sqlite_to_postgres(postgres, tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'gradebook.db'}"
    synthetic.synthetic_gradebook(sqlite, n_students=25, n_assignments=2, seed=5)
    url = new_database(postgres)
    copy_gradebook(sqlite, url)
    moved = bulk_export.load_class(url)
    assert bulk_export.assignment_rows(moved) == bulk_export.assignment_rows(
        bulk_export.load_class(sqlite)
    )
    with pytest.raises(FileExistsError, match="empty database"):
        copy_gradebook(sqlite, url)


def test_fast_export_of_a_postgres_gradebook_matches_nbgrader(postgres, tmp_path):
    from nbgrader.api import Gradebook

    url = new_database(postgres)
    synthetic.synthetic_gradebook(url, n_students=40, n_assignments=3, seed=3)
    slow = tmp_path / "nbgrader.csv"
    with Gradebook(url, grading.COURSE_ID) as gb:
        CourseCsvExportPlugin(to=str(slow)).export(gb)
    fast = bulk_export.export(url, tmp_path / "fast.csv")
    assert len(fast.students) == 40
    with open(slow, newline="") as a, open(tmp_path / "fast.csv", newline="") as b:
        assert list(csv.DictReader(b)) == list(csv.DictReader(a))


@pytest.mark.slow
def test_parallel_grading_into_a_postgres_gradebook(postgres, tmp_path):
    url = new_database(postgres)
    course = postgres_course(tmp_path / "course", url)
    synthetic.tiny_assignment(course)
    answers = {"ann": RIGHT, "bob": WRONG, "cy": RIGHT, "dee": RIGHT}
    for student, answer in answers.items():
        synthetic.submit(course, "tiny", student, answer)
    assert gradebook_url(course) == url
    cmd = [sys.executable, "-m", "course_tools.grading", "autograde", "tiny", "--jobs", "2"]
    proc = subprocess.run(
        [*cmd, "--course", str(course)],
        capture_output=True,
        text=True,
        env=nbgrader_env(),
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (course / "gradebook.db").exists(), "nothing went to an SQLite file"
    assert_tiny_scores(course, answers)
    (backup,) = (course / "gradebook_backups").glob("*.db")
    restored = bulk_export.load_class(f"sqlite:///{backup}")
    assert [a["name"] for a in restored.assignments] == ["tiny"], "backed up before grading"
    exported = grading.export_grades(course, tmp_path / "grades.csv")  # `nbgrader export`
    rows = {r["student_id"]: r for r in grading.read_grades_csv(exported)}
    assert rows["ann"]["score"] == "2.0" and rows["bob"]["score"] == "0.0"
