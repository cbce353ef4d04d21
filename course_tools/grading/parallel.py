"""Grading a class at once: a pool of long-lived `GradingWorker` processes on this machine.

    python -m course_tools.grading autograde ps1_convolution --jobs 4

The coordinator (this process) backs up the gradebook, registers the students, asks the
gradebook which submissions are not graded to the end (`runner.is_graded`: a run killed at any
point resumes with exactly those) and hands them to ``jobs`` worker processes
(`concurrent.futures.ProcessPoolExecutor`). Each worker grades one submission at a time with
nbgrader's converter in-process and a kernel started ahead of time (`workers`); every
protection of the course's pipeline runs unchanged. A progress bar (tqdm) counts the
submissions; each finished one prints its seconds; a summary table ends the run.

Nothing is lost:
- each submission is written to the gradebook by the worker that graded it, in nbgrader's
  short transactions; SQLite queues the writers (`database.prepare_for_workers`), a server
  database (PostgreSQL) takes them side by side;
- a submission that fails is reported, never shown as 0, and the others go on; one that met
  a locked gradebook, or whose worker process died, is tried again (``retries``) in a fresh
  worker;
- when the coordinator itself dies, its workers notice and exit (their sandboxes die with
  them); the next run regrades whatever was left unfinished.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from course_tools.grading.runner import submission_line
from course_tools.grading.workers import PRELOAD, GradingWorker, SubmissionResult

_worker: GradingWorker | None = None  # this worker process's grader (set by `_start_worker`)


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Exit this process as soon as ``parent`` is gone (the pool's workers would wait forever)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(3)  # the kernels' sandboxes die with us (bubblewrap --die-with-parent)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(course_dir: str, warm_kernels: bool, preload: tuple[str, ...], log_dir: str):
    """Initializer of each pool process: quiet output, parent watch, one `GradingWorker`."""
    global _worker
    _exit_with_parent(os.getppid())
    # Kernels inherit the worker's stdout/stderr (their start-up banner, crash messages): keep
    # them off the coordinator's progress bar, in a log file of this worker.
    log_file = Path(log_dir) / f"worker-{os.getpid()}.log"
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _worker = GradingWorker(Path(course_dir), warm_kernels=warm_kernels, preload=preload)
    # The ~240,000 objects of nbgrader, nbconvert and SQLAlchemy that exist now live as long as
    # this process: frozen, Python's full garbage collections (0.4 s in the first submission)
    # and the one at exit (1.1 s, now 0.2 s) no longer walk them. Only in this process of ours:
    # a Dask worker process belongs to someone else.
    gc.freeze()
    atexit.register(gc.freeze)


def _grade(assignment: str, student: str, prestart_next: bool) -> SubmissionResult:
    return _worker.grade(assignment, student, prestart_next)


def should_prestart_next(index: int, total: int, workers: int) -> bool:
    """Whether the worker grading submission ``index`` of ``total`` should start a kernel
    for its next one: not for the last ``workers`` submissions, which usually no submission
    follows on the same worker (if one still does, its kernel is started then)."""
    return index < total - workers


def default_jobs() -> int:
    """One worker per CPU core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def grade_submissions(
    course_dir: Path,
    assignment: str,
    students: Sequence[str],
    jobs: int = 1,
    *,
    warm_kernels: bool = True,
    preload: tuple[str, ...] = PRELOAD,
    retries: int = 2,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[SubmissionResult]:
    """Grade ``students``' submissions of ``assignment`` in ``jobs`` worker processes.

    Returns one result per student, in the order given. A submission that failed for a
    transient reason (a locked gradebook, a worker process that died) is tried again up to
    ``retries`` times, each time in a fresh pool.
    """
    log = log or tqdm.write
    course_dir = Path(course_dir).resolve()
    log_dir = tempfile.mkdtemp(prefix="course-grading-workers-")
    results: dict[str, SubmissionResult] = {}
    attempts: Counter[str] = Counter()
    pending = list(dict.fromkeys(students))
    bar = tqdm(total=len(pending), desc=f"autograde {assignment}", unit="sub", disable=not progress)
    try:
        while pending:
            workers = max(1, min(jobs, len(pending)))
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(str(course_dir), warm_kernels, tuple(preload), log_dir),
            )
            retry: list[str] = []
            try:
                futures = {}
                for i, student in enumerate(pending):
                    prestart_next = should_prestart_next(i, len(pending), workers)
                    futures[pool.submit(_grade, assignment, student, prestart_next)] = student
                for future in as_completed(futures):
                    student = futures[future]
                    attempts[student] += 1
                    result = _result_of(future, assignment, student, log_dir)
                    if result.transient and attempts[student] <= retries:
                        retry.append(student)
                        reason = first_line(result)
                        log(f"autograde {assignment} of {student}: will retry ({reason})")
                        continue
                    results[student] = result
                    bar.update(1)
                    log(result_line(result))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            pending = retry
    finally:
        bar.close()
    if all(r.status != "failed" for r in results.values()):
        shutil.rmtree(log_dir, ignore_errors=True)  # kept when something failed: see the error
    return [results[s] for s in dict.fromkeys(students)]


def _result_of(future, assignment: str, student: str, log_dir: str) -> SubmissionResult:
    try:
        return future.result()
    except Exception as error:  # BrokenProcessPool: the worker process died (or never started)
        return SubmissionResult(
            assignment,
            student,
            "failed",
            error=f"the grading worker process died ({type(error).__name__}: {error}); "
            f"its output is in {log_dir}/",
            transient=True,
        )


def first_line(result: SubmissionResult) -> str:
    """The gist of a failure: the exception raised, else nbgrader's first error message."""
    lines = [line.strip() for line in result.error.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Unavailable|Exit)\b[^ ]*: ", line):
            return line[:200]
    generic = ("There was an error processing", "Please see the", "Traceback")
    for line in lines:
        message = line.split("| ERROR]", 1)[1].strip() if "| ERROR]" in line else ""
        if message and not message.startswith(generic):
            return message[:200]
    return lines[-1][:200] if lines else result.status


def result_line(result: SubmissionResult) -> str:
    """One line per submission; the runner's format (``autograde <ps> of <student>: 7.1 s``)."""
    return submission_line(
        result.assignment, result.student, result.status, result.seconds, result.error
    )


def summary_table(results: Sequence[SubmissionResult], wall_seconds: float, jobs: int) -> str:
    """Per worker: submissions, seconds each (median, max), kernels started ahead; then totals."""
    from course_tools.grading.export import format_table

    graded = [r for r in results if r.status == "graded"]
    rows: dict[str, dict[str, str]] = {}
    for worker in sorted({r.worker for r in graded}):
        mine = [r for r in graded if r.worker == worker]
        seconds = [r.seconds for r in mine]
        rows[worker] = {
            "graded": str(len(mine)),
            "median s": f"{statistics.median(seconds):.1f}",
            "max s": f"{max(seconds):.1f}",
            "warm kernels": f"{sum(r.warm_kernel for r in mine)}/{len(mine)}",
        }
    counts = Counter(r.status for r in results)
    per_minute = 60 * len(graded) / wall_seconds if wall_seconds > 0 and graded else 0.0
    table = format_table(["worker", "graded", "median s", "max s", "warm kernels"], rows)
    totals = (
        f"{counts['graded']} graded, {counts['skipped']} already graded, {counts['failed']} "
        f"failed in {wall_seconds:.1f} s with {jobs} worker(s): {per_minute:.1f} submissions/min"
    )
    failed = [f"  {r.label}: {first_line(r)}" for r in results if r.status == "failed"]
    return "\n".join([table, totals, *(["failed:", *failed] if failed else [])])


def grade_assignment(
    course_dir: Path,
    assignment: str,
    students: Sequence[str] | None,
    grade: Callable[[list[str]], list[SubmissionResult]],
    workers: int,
    run=None,
    log: Callable[[str], None] | None = None,
):
    """What every way of grading many does around ``grade(pending students)``.

    Back up the gradebook (unless ``run`` holds a backup), register the students, prepare the
    gradebook for concurrent writers, skip what is graded to the end, grade the rest, record
    seconds and failures in the `runner.GradingRun` and print the summary table.
    """
    from course_tools.grading.database import gradebook_url, prepare_for_workers
    from course_tools.grading.gradebook import gradebook
    from course_tools.grading.runner import is_graded, start_run

    log = log or tqdm.write
    course_dir = Path(course_dir).resolve()
    run, students = start_run(course_dir, assignment, students, run, log)
    if workers > 1:
        done = prepare_for_workers(gradebook_url(course_dir))
        if done:
            log(f"gradebook prepared for {workers} concurrent workers: {done}")
    pending = []
    with gradebook(course_dir) as gb:  # one session for the whole class
        for student in students:
            if is_graded(course_dir, assignment, student, gb):
                log(submission_line(assignment, student, "skipped"))
            else:
                pending.append(student)
    start = time.perf_counter()
    results = grade(pending)
    wall = time.perf_counter() - start
    for result in results:
        if result.status == "graded":
            run.autograde_seconds[(assignment, result.student)] = result.seconds
        elif result.status == "failed":
            run.failures[result.label] = result.error
    run.results.extend(results)
    if results:
        log(summary_table(results, wall, min(workers, len(pending))))
    return run


def autograde_parallel(
    course_dir: Path,
    assignment: str,
    students: Sequence[str] | None = None,
    jobs: int = 1,
    run=None,
    log: Callable[[str], None] | None = None,
    *,
    warm_kernels: bool = True,
    preload: tuple[str, ...] = PRELOAD,
    progress: bool | None = None,
):
    """`runner.autograde_assignment` with ``jobs`` long-lived workers; returns the GradingRun.

    The gradebook is backed up first (unless ``run`` already holds a backup); submissions
    already graded to the end are skipped; the rest are graded concurrently.
    """
    if log is None or log is print:  # print would tear the progress bar
        log = tqdm.write

    def grade(pending: list[str]) -> list[SubmissionResult]:
        return grade_submissions(
            course_dir,
            assignment,
            pending,
            jobs,
            warm_kernels=warm_kernels,
            preload=preload,
            progress=sys.stderr.isatty() if progress is None else progress,
            log=log,
        )

    return grade_assignment(course_dir, assignment, students, grade, jobs, run=run, log=log)
