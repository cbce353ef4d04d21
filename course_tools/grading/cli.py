"""The grading command line: ``python -m course_tools.grading <command>``.

    release                      regenerate assignments/ and examples/submissions/
    examples                     only examples/submissions/ (from the release)
    autograde <ps> [--student S] grade every collected submission of <ps> (or one student's)
              [--jobs N]         ... N at a time, in long-lived worker processes (0: one per core)
    demo [--jobs N]              grade the examples in demo_course/, print a table
    export [--format F] [--to X] grades to CSV: per assignment (nbgrader's columns), per problem,
                                 or for Canvas / Moodle (fast, for a whole class)

Run it from the course root (the folder holding nbgrader_config.py), from anywhere when the
instructor's nbgrader configuration names the course (``c.CourseDirectory.root``, as on a hub),
or pass --course.
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
    find_course_root,
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
    demo = commands.add_parser("demo", help="grade the shipped examples in demo_course/")
    _add_jobs_options(demo)
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
        help="course root holding nbgrader_config.py (default: the current folder, else the "
        "CourseDirectory.root of your nbgrader configuration)",
    )
    _add_jobs_options(autograde)
    autograde.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a Dask cluster (e.g. tcp://10.0.0.5:8786): every worker needs the course "
        "folder at the same path and a PostgreSQL gradebook (README: Grading at scale)",
    )
    export = commands.add_parser(
        "export", help="grades to CSV: per assignment, per problem, or for Canvas / Moodle"
    )
    export.add_argument(
        "--format",
        choices=["assignments", "problems", "canvas", "moodle"],
        default="assignments",
        help="assignments: one row per student and assignment (nbgrader's export columns); "
        "problems: one row per test and written answer; canvas / moodle: a gradebook to import",
    )
    export.add_argument("--to", type=Path, help="the CSV file (default: grades-<format>.csv)")
    export.add_argument("--assignment", action="append", help="only this assignment (repeat)")
    export.add_argument(
        "--course", type=Path, help="the course root (found as for autograde when not given)"
    )
    return parser


def _course_root(given: Path | None) -> Path | None:
    """``--course`` when given (it must hold nbgrader_config.py), else `find_course_root`."""
    if given is not None:
        if (given / CONFIG_FILE).is_file():
            return given.resolve()
        print(f"error: no {CONFIG_FILE} in {given.resolve()}: --course must be the course root")
        return None
    course = find_course_root()
    if course is None:
        print(
            f"error: no {CONFIG_FILE} in {Path.cwd()}, and your nbgrader configuration names no "
            "course (c.CourseDirectory.root): run from the course root or pass --course"
        )
    return course


def _job_count(text: str) -> int:
    jobs = int(text)
    if jobs < 0:
        raise argparse.ArgumentTypeError("must be 0 (one per CPU core) or more")
    return jobs


def _add_jobs_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--jobs",
        "-j",
        type=_job_count,
        default=1,
        metavar="N",
        help="grade N submissions at once, each in a long-lived worker process with a kernel "
        "started ahead of time (0: one per CPU core; default 1)",
    )
    command.add_argument(
        "--one-process-per-submission",
        action="store_true",
        help="a fresh `nbgrader autograde --student` process for every submission, one after "
        "the other (slower; the way before --jobs)",
    )


def _jobs(args: argparse.Namespace) -> int | None:
    """Worker processes to use; None for one nbgrader process per submission."""
    if args.one_process_per_submission:
        return None
    if args.jobs == 0:
        from course_tools.grading.parallel import default_jobs

        return default_jobs()
    return args.jobs


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

        course = _course_root(args.course)
        if course is None:
            return 2
        students = args.student or submitted_students(course, args.assignment)
        if not students:
            print(f"error: nothing collected in {course}/submitted/<student>/{args.assignment}/")
            return 2
        try:
            if args.scheduler:
                from course_tools.grading.distributed import autograde_distributed

                run = autograde_distributed(
                    course, args.assignment, students, scheduler=args.scheduler
                )
            else:
                run = autograde_assignment(course, args.assignment, students, jobs=_jobs(args))
        except GradingError as error:
            print(f"error: {error}")
            return 2
        if run.failures:
            print(f"FAILED: {', '.join(run.failures)} (see the messages above)")
            return 1
    elif args.command == "export":
        from course_tools.grading.bulk_export import export_command

        course = _course_root(args.course)
        if course is None:
            return 2
        return export_command(course, args.format, args.to, args.assignment or ())
    else:
        from course_tools.grading.demo import demo

        try:
            run = demo(jobs=_jobs(args))
        except GradingError as error:
            print(f"error: {error}")
            return 2
        return 1 if run.failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
