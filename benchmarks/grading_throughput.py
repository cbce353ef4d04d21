"""Grading throughput and export time at class scale, measured in one run, printed as ratios.

    python benchmarks/grading_throughput.py                  # 24 submissions of ps1 per setup
    python benchmarks/grading_throughput.py --students 48 --assignment ps2_pooling_batchnorm
    python benchmarks/grading_throughput.py --quick          # CI: 6 submissions, smaller export

A synthetic class (`synthetic.example_class`: copies of the shipped example submissions of one
problem set, complete / partial / alternative / blank / cheat in turn) is graded three times,
each in a fresh course, always with the grading sandbox and every protection of the course's
pipeline on:

  before           one `nbgrader autograde --student` process per submission, one after the
                   other (`--one-process-per-submission`: nbgrader and a kernel for each)
  1 worker         `--jobs 1`: one long-lived worker (nbgrader in-process, kernels started
                   ahead); it may use a second core (the next kernel starts while the worker
                   saves the grades of the last one)
  1 worker, 1 core the same, with the worker and its kernels held to one core (affinity)
  N workers        `--jobs N` (default: one per CPU core, at least 2)

Each is timed from outside (wall clock of the whole grading call, worker start-up included) and
every score is checked against the example's expected score. A second rate leaves out the start:
graded submissions per minute from the end of the first round (the first submission of each
worker, which also pays for starting the worker and its first kernel) to the last one; a longer
run (a class of 300) should approach it. Then a synthetic gradebook of
1,000 students x 6 problem sets is exported in every format (`bulk_export`), and nbgrader's own
export (the course's plugin, in-process) is timed on 50 of those students for comparison.

Targets (issue #11): N workers >= 3x "before" in submissions per minute; 2 workers >= 1.7x one
worker on 2 cores (printed against both one-worker rows); the per-assignment export of 1,000 x 6
under 10 s. The machine's load
average is printed with every measurement: on a busy machine the ratios mean little.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from course_tools import grading
from course_tools.grading import bulk_export, synthetic
from course_tools.grading.parallel import autograde_parallel, default_jobs
from course_tools.grading.runner import autograde_assignment

# The line logged for each graded submission (`runner.submission_line`, every way of grading).
FINISHED = re.compile(r"^autograde \S+ of \S+: [0-9.]+ s$")


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def grade(root: Path, name: str, assignment: str, students: int, jobs: int | None, cores=None):
    """Grade a fresh synthetic class (on ``cores`` only, if given).

    Returns the seconds, the seconds at which each graded submission finished, student ->
    (score, status) and student -> the example's expected score.
    """
    course = root / name
    expected = synthetic.example_class(course, assignment, students)
    finished: list[float] = []

    def note_finished(message: str) -> None:
        if FINISHED.match(message):
            finished.append(time.perf_counter() - start)

    allowed = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)  # the workers and their kernels inherit it
    start = time.perf_counter()
    try:
        if jobs is None:
            autograde_assignment(course, assignment, list(expected), log=note_finished)
        else:
            autograde_parallel(
                course, assignment, list(expected), jobs, log=note_finished, progress=False
            )
    finally:
        seconds = time.perf_counter() - start
        os.sched_setaffinity(0, allowed)
    scores = grading.read_scores(course)
    graded = {
        student: (scores[(student, assignment)].summary(), scores[(student, assignment)].status)
        if (student, assignment) in scores
        else ("no grade", "missing")
        for student in expected
    }
    return seconds, sorted(finished), graded, expected


def rate_after_first_round(finished: list[float], workers: int) -> float:
    """Submissions per minute from the ``workers``-th to the last finished submission."""
    if len(finished) <= workers or finished[-1] <= finished[workers - 1]:
        return float("nan")
    return 60 * (len(finished) - workers) / (finished[-1] - finished[workers - 1])


def throughput(args, root: Path) -> tuple[dict[str, tuple[float, float]], list[str], list[str]]:
    """Grade the class in every setup; (rates, differences from "before", unexpected scores).

    Each rate is a pair: the whole run, and after the first round (`rate_after_first_round`).

    Every setup must give every student exactly the grade "before" gave (the same pipeline);
    a grade that differs from the example's expected score is reported too (a problem of the
    examples or the problem set, which tests/test_grading_pipeline.py checks).
    """
    one_core = {min(os.sched_getaffinity(0))}
    setups = [
        ("before", None, None),
        ("1 worker", 1, None),
        ("1 worker, 1 core", 1, one_core),
        (f"{args.jobs} workers", args.jobs, None),
    ]
    rates, differences, unexpected, reference = {}, [], [], None
    for label, jobs, cores in setups:
        before = load()
        folder = label.replace(" ", "-").replace(",", "")
        seconds, finished, graded, expected = grade(
            root, folder, args.assignment, args.students, jobs, cores
        )
        rates[label] = (60 * args.students / seconds, rate_after_first_round(finished, jobs or 1))
        print(
            f"{label:16s} {args.students:6d} {seconds:9.1f} {rates[label][0]:10.1f} "
            f"{rates[label][1]:15.1f}   {before} -> {load()}",
            flush=True,
        )
        if reference is None:
            reference = graded
            unexpected = [
                f"{student}: {got}, the example expects {expected[student]:g}"
                for student, (got, status) in graded.items()
                if status == "missing" or not got.startswith(f"{expected[student]:g}/")
            ]
        differences += [
            f"{label}: {student} {got} ({status}), before: {reference[student]}"
            for student, (got, status) in graded.items()
            if (got, status) != reference[student] or status.startswith(("not graded", "missing"))
        ]
    return rates, differences, unexpected


def export_times(args, root: Path) -> tuple[dict[str, float], float, str]:
    from nbgrader.api import Gradebook

    from course_tools.grading.export import CourseCsvExportPlugin

    url = f"sqlite:///{root / 'export-gradebook.db'}"
    synthetic.synthetic_gradebook(url, args.export_students, args.export_sets)
    times = {}
    for fmt in bulk_export.FORMATS:
        start = time.perf_counter()
        bulk_export.export(url, root / f"grades-{fmt}.csv", fmt)
        times[fmt] = time.perf_counter() - start
    sample = [f"student{i:05d}" for i in range(args.nbgrader_sample)]
    start = time.perf_counter()
    with Gradebook(url, grading.COURSE_ID) as gb:
        CourseCsvExportPlugin(to=str(root / "nbgrader.csv"), student=sample).export(gb)
    nbgrader_seconds = time.perf_counter() - start
    return times, nbgrader_seconds, load()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ps1_convolution")
    # A small class: enough that each run's start-up (a worker starts, imports nbgrader and
    # starts its first kernel in ~2 s, side by side with the others) does not dominate.
    parser.add_argument("--students", type=int, default=24, help="submissions per setup")
    parser.add_argument("--jobs", type=int, default=max(2, default_jobs()))
    parser.add_argument("--export-students", type=int, default=1000)
    parser.add_argument("--export-sets", type=int, default=6)
    parser.add_argument("--nbgrader-sample", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="CI size: 6 submissions per setup")
    parser.add_argument("--skip-grading", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.students = 6
        args.nbgrader_sample = 20
    print(f"{os.cpu_count()} CPUs, {load()}; {args.students} submissions of {args.assignment}")
    problems: list[str] = []
    unexpected: list[str] = []
    with tempfile.TemporaryDirectory(prefix="grading-throughput-") as tmp:
        root = Path(tmp)
        if not args.skip_grading:
            header = (
                f"{'setup':16s} {'subs':>6s} {'seconds':>9s} {'subs/min':>10s} "
                f"{'after 1st round':>15s}"
            )
            print(f"\n{header}   load before -> after")
            rates, problems, unexpected = throughput(args, root)
        times, nbgrader_seconds, export_load = export_times(args, root)
    scale = args.export_students / args.nbgrader_sample
    print(
        f"\nexport of {args.export_students} students x {args.export_sets} problem sets "
        f"({export_load}):"
    )
    for fmt, seconds in times.items():
        print(f"  {fmt:12s} {seconds:6.2f} s")
    print(
        f"  nbgrader's export (course plugin): {nbgrader_seconds:.1f} s for "
        f"{args.nbgrader_sample} students, ~{nbgrader_seconds * scale:.0f} s for "
        f"{args.export_students} (linear)"
    )
    print(
        "\nratios (targets in brackets)"
        + ("" if args.skip_grading else ": whole run | after the first round")
    )
    if not args.skip_grading:
        many = f"{args.jobs} workers"
        ratios = [
            (f"{many} / before", many, "before", "[>= 3]"),
            ("1 worker / before", "1 worker", "before", ""),
            (f"{many} / 1 worker", many, "1 worker", "[>= 1.7 on 2 cores]"),
            (f"{many} / 1 worker on 1 core", many, "1 worker, 1 core", "[>= 1.7 on 2 cores]"),
        ]
        for label, faster, slower, target in ratios:
            whole, steady = (rates[faster][i] / rates[slower][i] for i in (0, 1))
            print(f"  {label + ':':30s} {whole:5.2f}x | {steady:5.2f}x  {target}")
    size = f"{args.export_students} x {args.export_sets}"
    print(f"  {'export ' + size + ':':30s} {times['assignments']:5.2f} s  [< 10 s]")
    speedup = nbgrader_seconds * scale / times["assignments"]
    print(f"  {'nbgrader export / this export:':30s} {speedup:5.0f}x")
    if unexpected:
        print("\nnot the score the example expects (the one-process-per-submission run):")
        print("  " + "\n  ".join(unexpected))
    if problems:
        print("\nGRADES THAT DIFFER FROM THE ONE-PROCESS-PER-SUBMISSION RUN, OR MISSING:")
        print("  " + "\n  ".join(problems))
        return 1
    print("\nevery setup gave every submission the same grade as one process per submission")
    return 0


if __name__ == "__main__":
    sys.exit(main())
