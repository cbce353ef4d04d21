"""Grades out, fast (`bulk_export`): the same numbers as the course's nbgrader export, per
problem, and LMS gradebooks (Canvas, Moodle) that never post a grade that is not final.

The gradebooks are synthetic (`synthetic.synthetic_gradebook`): every status an export must
handle (graded, held for review, autograding incomplete, written answers pending, late, not
submitted). The export time of 1,000 students x 6 problem sets is measured by
benchmarks/grading_throughput.py.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from course_tools import grading
from course_tools.grading import bulk_export, synthetic
from course_tools.grading.cli import main
from course_tools.grading.export import CourseCsvExportPlugin


@pytest.fixture(scope="module")
def gradebook_db(tmp_path_factory) -> str:
    course = grading.new_course(tmp_path_factory.mktemp("export") / "course", assignments=[])
    url = f"sqlite:///{course / 'gradebook.db'}"
    synthetic.synthetic_gradebook(url, n_students=60, n_assignments=3, seed=7)
    return url


def _course(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///")).parent


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_synthetic_class_has_every_status(gradebook_db):
    statuses = Counter(
        r["status"] for r in bulk_export.assignment_rows(bulk_export.load_class(gradebook_db))
    )
    assert set(statuses) == {
        "graded",
        "held for review",
        "not graded (autograding incomplete or failed)",
        "manual grading pending",
        "not submitted",
    }, statuses


def test_assignment_csv_is_the_courses_nbgrader_export(gradebook_db, tmp_path):
    """Same rows, same order, same text as `nbgrader export` with the course's plugin."""
    from nbgrader.api import Gradebook

    slow = tmp_path / "nbgrader.csv"
    with Gradebook(gradebook_db, grading.COURSE_ID) as gb:
        CourseCsvExportPlugin(to=str(slow)).export(gb)
    bulk_export.export(gradebook_db, tmp_path / "fast.csv")
    assert (tmp_path / "fast.csv").read_text() == slow.read_text()


def test_problem_scores_add_up_to_the_assignment_scores(gradebook_db):
    grades = bulk_export.load_class(gradebook_db)
    totals: Counter = Counter()
    for row in bulk_export.problem_rows(grades):
        if row["status"] in ("graded", "manual grading pending"):
            totals[(row["assignment"], row["student_id"])] += row["score"]
    checked = 0
    for row in bulk_export.assignment_rows(grades):
        if row["status"] in ("graded", "manual grading pending"):
            assert totals[(row["assignment"], row["student_id"])] == row["raw_score"]
            checked += 1
    assert checked > 100


def test_lms_gradebooks_post_only_final_grades(gradebook_db):
    grades = bulk_export.load_class(gradebook_db)
    status = {(r["student_id"], r["assignment"]): r for r in bulk_export.assignment_rows(grades)}
    names = [a["name"] for a in grades.assignments]
    canvas = bulk_export.canvas_table(grades)
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *names]
    assert canvas[1][0] == "Points Possible"
    assert canvas[1][5:] == [f"{a['max_score']:g}" for a in grades.assignments]
    moodle = bulk_export.moodle_table(grades)
    assert moodle[0][:5] == ["First name", "Last name", "Username", "ID number", "Email address"]
    blanks = set()
    for canvas_row, moodle_row in zip(canvas[2:], moodle[1:], strict=True):
        student = canvas_row[3]
        assert moodle_row[2] == student
        for name, cell, other in zip(names, canvas_row[5:], moodle_row[5:], strict=True):
            assert cell == other
            row = status[(student, name)]
            if row["status"] == "graded":
                assert float(cell) == row["score"]
            elif row["status"] == "not submitted":
                assert cell == "0"
            else:
                assert cell == "", f"{student} {name} is {row['status']}: no grade for the LMS"
                blanks.add((student, name, row["status"]))
    assert blanks == set(bulk_export.lms_blanks(grades)) and blanks


def test_export_command_writes_every_format(gradebook_db, capsys):
    course = _course(gradebook_db)
    for fmt in bulk_export.FORMATS:
        assert main(["export", "--format", fmt, "--course", str(course)]) == 0
        assert (course / f"grades-{fmt}.csv").is_file()
    out = capsys.readouterr().out
    assert "60 students x 3 assignments" in out
    assert "left blank because they are not final yet" in out
    rows = _read(course / "grades-problems.csv")
    assert set(rows[0]) == set(bulk_export.PROBLEM_COLUMNS)
    assert main(["export", "--assignment", "nope", "--course", str(course)]) == 2
    assert "no assignment nope" in capsys.readouterr().out


def test_commands_find_the_course_as_nbgrader_does(gradebook_db, tmp_path, monkeypatch, capsys):
    """From the course root; from anywhere when the instructor's nbgrader configuration names the
    course (c.CourseDirectory.root, as `classroom instructor-config` writes on a hub); a wrong
    --course or no course at all is a clear error."""
    course = _course(gradebook_db)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    jupyter_dir = tmp_path / "jupyter-config"
    jupyter_dir.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(jupyter_dir))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", "")
    monkeypatch.chdir(elsewhere)
    assert grading.find_course_root() is None
    assert main(["export"]) == 2
    assert "names no course (c.CourseDirectory.root)" in capsys.readouterr().out
    monkeypatch.chdir(course)
    assert grading.find_course_root() == course.resolve()
    monkeypatch.chdir(elsewhere)
    (jupyter_dir / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
    )
    assert grading.find_course_root() == course.resolve()
    assert main(["export", "--to", str(tmp_path / "found.csv")]) == 0
    assert (tmp_path / "found.csv").is_file()
    assert main(["export", "--course", str(elsewhere)]) == 2
    assert "--course must be the course root" in capsys.readouterr().out
