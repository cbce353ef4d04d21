"""The grading command line: ``python -m course_tools.grading <command>``.

    release                      regenerate assignments/ and examples/submissions/
    examples                     only examples/submissions/ (from the release)
    autograde <ps> [--student S] grade every collected submission of <ps> (or one student's)
    demo                         grade the examples in demo_course/, print a table

Run it from the course root (the folder holding nbgrader_config.py), or pass --course.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from course_tools.grading.course import (
    CONFIG_FILE,
    EXAMPLES_DIR,
    RELEASE_DIR,
    REPO_ROOT,
    GradingError,
    venv_bin_on_path,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.grading",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("release", help="regenerate assignments/ and examples/submissions/")
    commands.add_parser("examples", help="regenerate examples/submissions/ from the release")
    commands.add_parser("demo", help="grade the shipped examples in demo_course/")
    autograde = commands.add_parser(
        "autograde", help="autograde the collected submissions of one assignment"
    )
    autograde.add_argument("assignment", help="assignment id, e.g. ps1_convolution")
    autograde.add_argument(
        "--student", action="append", help="grade only this student (repeat for several)"
    )
    autograde.add_argument(
        "--course",
        type=Path,
        default=Path.cwd(),
        help="course root holding nbgrader_config.py (default: the current folder)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    venv_bin_on_path()  # nbgrader (in this process too) runs `alembic` from PATH
    if args.command == "release":
        from course_tools.grading.release import release

        assignments = release()
        print(
            f"released {', '.join(assignments)} into {RELEASE_DIR}/ and {EXAMPLES_DIR}/submissions/"
        )
    elif args.command == "examples":
        from course_tools.grading.release import make_examples

        for path in make_examples():
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    elif args.command == "autograde":
        from course_tools.grading.runner import autograde_assignment, submitted_students

        course = args.course.resolve()
        if not (course / CONFIG_FILE).is_file():
            print(f"error: no {CONFIG_FILE} in {course}: run from the course root or pass --course")
            return 2
        students = args.student or submitted_students(course, args.assignment)
        if not students:
            print(f"error: nothing collected in {course}/submitted/<student>/{args.assignment}/")
            return 2
        try:
            run = autograde_assignment(course, args.assignment, students)
        except GradingError as error:
            print(f"error: {error}")
            return 2
        if run.failures:
            print(f"FAILED: {', '.join(run.failures)} (see the messages above)")
            return 1
    else:
        from course_tools.grading.demo import demo

        try:
            run = demo()
        except GradingError as error:
            print(f"error: {error}")
            return 2
        return 1 if run.failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
