"""Grading beyond one machine: the same `GradingWorker` in every worker of a Dask cluster.

    python -m course_tools.grading autograde ps1_convolution --scheduler tcp://10.0.0.5:8786

Dask's distributed scheduler (``dask.distributed``) hands out the submissions; it runs on one
machine (``dask scheduler``), on a Slurm or PBS cluster (dask-jobqueue) or on Kubernetes
(dask-kubernetes). Each Dask worker process keeps one `GradingWorker` for the course (created
at its first submission) and grades one submission at a time with it: nbgrader in-process, a
kernel started ahead of time, every protection of the course's pipeline.

What every worker machine needs (README: Grading at scale):
- the course directory at the same path as on the machine that submits (a shared file system,
  e.g. NFS): workers read ``submitted/`` and the source notebooks, and write ``autograded/``;
- the same Python environment (this course installed, bubblewrap for the sandbox);
- a gradebook they can all reach: a PostgreSQL server (``c.CourseDirectory.db_url``).
  An SQLite file is refused as soon as a worker runs on another machine (SQLite's locks do not
  work over network file systems).
Start workers with one thread each (``dask worker --nthreads 1 ...``): a worker process grades
one submission at a time anyway, and a kernel per core keeps the machine responsive.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from course_tools.grading.course import GradingError
from course_tools.grading.workers import PRELOAD, GradingWorker, SubmissionResult

# The GradingWorker of each course in this (Dask worker) process.
_workers: dict[tuple[str, bool, tuple[str, ...]], GradingWorker] = {}


def grade_on_worker(
    course_dir: str,
    assignment: str,
    student: str,
    warm_kernels: bool = True,
    preload: tuple[str, ...] = PRELOAD,
    prestart_next: bool = True,
) -> SubmissionResult:
    """The Dask task: grade one submission with this process's `GradingWorker`."""
    key = (course_dir, warm_kernels, tuple(preload))
    worker = _workers.get(key)
    if worker is None:
        worker = _workers[key] = GradingWorker(
            Path(course_dir), warm_kernels=warm_kernels, preload=preload
        )
    return worker.grade(assignment, student, prestart_next)


def check_cluster(client, db_url: str) -> list[str]:
    """The host names of the cluster's workers; refuses an SQLite gradebook on other machines."""
    from course_tools.grading.database import is_sqlite

    hosts = sorted(set(client.run(socket.gethostname).values()))
    if not hosts:
        raise GradingError("the Dask cluster has no workers")
    elsewhere = [h for h in hosts if h != socket.gethostname()]
    if elsewhere and is_sqlite(db_url):
        raise GradingError(
            f"Dask workers run on {', '.join(elsewhere)}, but the gradebook is an SQLite file "
            f"({db_url}); SQLite's locks do not work across machines. Put the gradebook on a "
            "PostgreSQL server (c.CourseDirectory.db_url, see README: Grading at scale)."
        )
    return hosts


def grade_on_cluster(
    client,
    course_dir: Path,
    assignment: str,
    students: Sequence[str],
    *,
    warm_kernels: bool = True,
    preload: tuple[str, ...] = PRELOAD,
    retries: int = 2,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[SubmissionResult]:
    """Grade ``students``' submissions on the Dask cluster of ``client``; one result each.

    Dask reruns the task of a worker that died (``retries``); a submission that met a locked
    gradebook is submitted again up to ``retries`` times.
    """
    from distributed import as_completed

    from course_tools.grading.parallel import first_line, result_line, should_prestart_next

    log = log or tqdm.write
    course = str(Path(course_dir).resolve())
    results: dict[str, SubmissionResult] = {}
    tries: dict[str, int] = {}
    order = {student: i for i, student in enumerate(dict.fromkeys(students))}
    workers = max(1, sum(client.nthreads().values()))  # every worker (scheduler_info may cap)

    def submit(student: str):
        tries[student] = tries.get(student, 0) + 1
        return client.submit(
            grade_on_worker,
            course,
            assignment,
            student,
            warm_kernels,
            tuple(preload),
            should_prestart_next(order[student], len(order), workers) and tries[student] == 1,
            key=f"autograde-{assignment}-{student}-{tries[student]}-{time.time_ns()}",
            pure=False,
            retries=retries,
        )

    futures = {submit(s): s for s in dict.fromkeys(students)}
    queue = as_completed(list(futures))
    with tqdm(total=len(futures), desc=f"autograde {assignment}", disable=not progress) as bar:
        for future in queue:
            student = futures.pop(future)
            try:
                result = future.result()
            except Exception as error:  # the task failed on every try (KilledWorker, ...)
                result = SubmissionResult(
                    assignment,
                    student,
                    "failed",
                    error=f"grading failed on the cluster ({type(error).__name__}: {error})",
                )
            if result.transient and tries[student] <= retries:
                log(f"autograde {assignment} of {student}: will retry ({first_line(result)})")
                again = submit(student)
                futures[again] = student
                queue.add(again)
                continue
            results[student] = result
            bar.update(1)
            log(result_line(result))
    return [results[s] for s in dict.fromkeys(students)]


def autograde_distributed(
    course_dir: Path,
    assignment: str,
    students: Sequence[str] | None = None,
    client=None,
    scheduler: str | None = None,
    run=None,
    log: Callable[[str], None] | None = None,
    *,
    warm_kernels: bool = True,
    preload: tuple[str, ...] = PRELOAD,
    progress: bool | None = None,
):
    """`runner.autograde_assignment` on a Dask cluster (``client``, or the ``scheduler``
    address); the gradebook is backed up first, finished submissions are skipped."""
    import sys

    from distributed import Client

    from course_tools.grading.database import gradebook_url
    from course_tools.grading.parallel import grade_assignment

    if log is None or log is print:  # print would tear the progress bar
        log = tqdm.write
    own_client = client is None
    if own_client:
        if not scheduler:
            raise GradingError("autograde_distributed needs a Dask client or scheduler address")
        client = Client(scheduler)
    try:
        hosts = check_cluster(client, gradebook_url(course_dir))
        workers = len(client.nthreads())  # every worker (scheduler_info may list only some)
        log(f"Dask cluster: {workers} worker(s) on {', '.join(hosts)}")

        def grade(pending: list[str]) -> list[SubmissionResult]:
            return grade_on_cluster(
                client,
                course_dir,
                assignment,
                pending,
                warm_kernels=warm_kernels,
                preload=preload,
                progress=sys.stderr.isatty() if progress is None else progress,
                log=log,
            )

        return grade_assignment(course_dir, assignment, students, grade, workers, run=run, log=log)
    finally:
        if own_client:
            client.close()
