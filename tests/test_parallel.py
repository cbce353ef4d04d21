"""Grading at class scale: parallel workers, kernels started ahead, crash and resume, writers.

The end-to-end tests grade a tiny assignment (`synthetic.tiny_assignment`: ``add``, 2 points)
with the course's whole pipeline (the sandbox, the policy step, held points, ...), through the
grading command or `parallel`'s pool, and read the scores from the gradebook.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from course_tools import grading
from course_tools import notebooks as nbtools
from course_tools.grading import parallel, synthetic
from course_tools.grading.course import nbgrader_env
from course_tools.grading.database import (
    prepare_for_workers,
    sqlite_path,
    with_busy_timeout,
)
from course_tools.grading.runner import is_graded
from course_tools.grading.sandbox import probe_bwrap
from course_tools.grading.workers import (
    NOT_STAGED,
    SubmissionResult,
    needs_staging,
    preload_arguments,
)

RIGHT = "def add(a, b):\n    return a + b"
WRONG = "def add(a, b):\n    return a - b"
SLOW = "import time\ntime.sleep(3)\n\ndef add(a, b):\n    return a + b"


def assert_tiny_scores(course: Path, answers: dict[str, str]) -> None:
    """Each student's autograded score is what the answer deserves: 2 right, 0 otherwise."""
    scores = grading.read_scores(course)
    wrong = {
        student: scores[(student, "tiny")].auto_score
        for student, answer in answers.items()
        if scores[(student, "tiny")].auto_score != (2.0 if answer == RIGHT else 0.0)
    }
    assert not wrong, f"wrong scores: {wrong}"


def _command(course: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "course_tools.grading", "autograde", "tiny", "--course"]
    return subprocess.run(
        [*cmd, str(course), *args],
        capture_output=True,
        text=True,
        env=nbgrader_env(),
        timeout=timeout,
        check=False,
    )


def _class(course: Path, answers: dict[str, str], first_test: str = "") -> Path:
    synthetic.tiny_assignment(course, first_test=first_test)
    for student, answer in answers.items():
        synthetic.submit(course, "tiny", student, answer)
    return course


def _autograded(course: Path, student: str):
    return nbtools.read_notebook(course / "autograded" / student / "tiny" / "tiny.ipynb")


def _outputs(nb) -> str:
    return "\n".join(
        o.get("text", "") + o.get("evalue", "") for c in nb.cells for o in c.get("outputs", [])
    )


@pytest.fixture(scope="module", autouse=True)
def _sandbox_available():
    reason = probe_bwrap()
    assert reason is None, f"grading at scale runs in the grading sandbox: {reason}"


# --- fast unit tests -------------------------------------------------------------------------


def test_a_submission_with_extra_files_needs_its_own_kernel(tmp_path):
    folder = tmp_path / "ps1"
    folder.mkdir()
    (folder / "ps1.ipynb").write_text("{}")
    (folder / ".ipynb_checkpoints").mkdir()
    assert not needs_staging(folder), f"only {NOT_STAGED} there: the ready kernel fits"
    (folder / "torch.py").write_text("")
    assert needs_staging(folder)


def test_preloaded_modules_leave_no_names():
    (arg,) = preload_arguments(("torch", "torch.nn.functional", "numpy"))
    assert arg == (
        "--IPKernelApp.exec_lines=import torch, torch.nn.functional, numpy; del numpy, torch"
    )
    assert preload_arguments(()) == []


def test_sqlite_urls_for_several_writers():
    url = "sqlite:////course/gradebook.db"
    assert with_busy_timeout(url, 30) == f"{url}?timeout=30"
    assert with_busy_timeout(f"{url}?timeout=5") == f"{url}?timeout=5"
    assert sqlite_path(with_busy_timeout(url)) == Path("/course/gradebook.db")
    server = "postgresql+psycopg://grader@db/course"
    assert with_busy_timeout(server) == server and sqlite_path(server) is None


def test_summary_names_each_worker_and_the_gist_of_failures():
    results = [
        SubmissionResult("tiny", "ann", "graded", 2.0, True, "host:1"),
        SubmissionResult("tiny", "bob", "graded", 4.0, False, "host:2"),
        SubmissionResult(
            "tiny",
            "cy",
            "failed",
            error="[AutogradeApp | INFO] x\n[AutogradeApp | ERROR] No notebooks found\n"
            "[AutogradeApp | ERROR] Please see the above traceback",
        ),
    ]
    table = parallel.summary_table(results, wall_seconds=6.0, jobs=2)
    assert "host:1" in table and "host:2" in table
    assert "2 graded, 0 already graded, 1 failed in 6.0 s with 2 worker(s): 20.0" in table
    assert "tiny/cy: No notebooks found" in table
    assert parallel.result_line(results[0]) == "autograde tiny of ann: 2.0 s"
    crash = SubmissionResult(
        "tiny",
        "dan",
        "failed",
        error="[AutogradeApp | ERROR] Traceback (most recent call last):\n  File x\n"
        "course_tools.grading.sandbox.SandboxUnavailable: cannot create the grading sandbox\n"
        "[AutogradeApp | ERROR] There was an error processing assignment 'tiny'",
    )
    assert parallel.first_line(crash).endswith("Unavailable: cannot create the grading sandbox")


def test_no_kernel_is_started_ahead_for_the_last_submissions():
    """With 5 submissions and 2 workers, the workers grading the 4th and 5th start no kernel
    for a next one (none follows); the others do."""
    keep = [parallel.should_prestart_next(i, 5, 2) for i in range(5)]
    assert keep == [True, True, True, False, False]
    assert not parallel.should_prestart_next(0, 1, 1)
    assert [parallel.should_prestart_next(i, 3, 8) for i in range(3)] == [False] * 3


def test_workers_swap_in_the_warm_kernel_execute_in_either_config_form():
    from course_tools.grading.execute import GradingExecute
    from course_tools.grading.workers import WarmGradingExecute, _with_warm_kernels

    assert _with_warm_kernels(GradingExecute) is WarmGradingExecute
    path = "course_tools.grading.execute.GradingExecute"
    assert _with_warm_kernels(path) == "course_tools.grading.workers.WarmGradingExecute"
    assert _with_warm_kernels("nbgrader.preprocessors.IgnorePattern").endswith("IgnorePattern")
    assert issubclass(WarmGradingExecute, GradingExecute), "every protection of GradingExecute"


def test_jobs_must_not_be_negative(tmp_path, capsys):
    from course_tools.grading.cli import main

    with pytest.raises(SystemExit):
        main(["autograde", "tiny", "--course", str(tmp_path), "--jobs", "-1"])
    assert "--jobs" in capsys.readouterr().err


def _write_submissions(url: str, students: list[str]) -> None:
    """What an autograde worker writes, per submission: a submission and its grades."""
    from nbgrader.api import Gradebook

    for student in students:
        with Gradebook(url, grading.COURSE_ID) as gb:
            gb.update_or_create_student(student)
            gb.update_or_create_submission("ps", student)
        with Gradebook(url, grading.COURSE_ID) as gb:
            for grade in gb.find_submission_notebook("ps", "ps", student).grades:
                grade.auto_score = grade.max_score
                grade.needs_manual_grade = False
            gb.db.commit()


def concurrent_writers(url: str, processes: int = 4, each: int = 6) -> float:
    """``processes`` processes write ``each`` submissions each at once; returns seconds."""
    from nbgrader.api import Gradebook

    with Gradebook(url, grading.COURSE_ID) as gb:
        gb.update_or_create_assignment("ps")
        gb.update_or_create_notebook("ps", "ps")
        for cell in range(5):
            gb.update_or_create_grade_cell(f"t{cell}", "ps", "ps", max_score=2, cell_type="code")
    batches = [[f"w{p}-s{i:03d}" for i in range(each)] for p in range(processes)]
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with context.Pool(processes) as pool:
        pool.starmap(_write_submissions, [(url, batch) for batch in batches])
    seconds = time.perf_counter() - start
    with Gradebook(url, grading.COURSE_ID) as gb:
        submissions = gb.find_assignment("ps").submissions
        assert len(submissions) == processes * each
        assert all(s.score == 10 for s in submissions), "a grade was lost"
    return seconds


def test_sqlite_gradebook_takes_concurrent_writers(tmp_path):
    db = tmp_path / "gradebook.db"
    sqlite3.connect(db).close()
    assert "WAL" in prepare_for_workers(f"sqlite:///{db}")
    concurrent_writers(with_busy_timeout(f"sqlite:///{db}"))
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- end to end: the course's pipeline in the workers ----------------------------------------

FRESH_CHECK = """\
import builtins, glob, os, sys, threading
import torch
found = []
names = {n for n in globals() if not n.startswith("_")}
names -= {"In", "Out", "get_ipython", "exit", "quit", "open"}
names -= {"builtins", "glob", "os", "sys", "threading", "torch", "found", "names"}
if names:
    found.append(f"names in the namespace: {sorted(names)}")
for path in ("leak.txt", "/tmp/leak.txt", os.path.expanduser("~/leak.txt"), "leakmod.py"):
    if os.path.exists(path):
        found.append(f"file {path}")
if "leakmod" in sys.modules:
    found.append("module leakmod imported")
if hasattr(torch, "leaked_by_a") or hasattr(builtins, "leaked_by_a"):
    found.append("attribute set on a module")
if "LEAKED_BY_A" in os.environ:
    found.append("environment variable")
if os.environ.get("NBGRADER_EXECUTION") != "autograde":
    found.append("not started as nbgrader's autograde step (NBGRADER_EXECUTION)")
if any(t.name == "leaker" for t in threading.enumerate()):
    found.append("thread")
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        if b"leak-marker" in open(cmdline, "rb").read():
            found.append("process")
    except OSError:
        pass
assert not found, f"state from another submission: {found}"
print("FRESH: nothing left by earlier submissions")
"""

LEAKER = """\
import builtins, os, subprocess, sys, threading, time
import torch
open("leak.txt", "w").write("a")
open("/tmp/leak.txt", "w").write("a")
open(os.path.expanduser("~/leak.txt"), "w").write("a")
open("leakmod.py", "w").write("VALUE = 1\\n")
sys.path.insert(0, os.getcwd())
import leakmod
torch.leaked_by_a = True
builtins.leaked_by_a = True
os.environ["LEAKED_BY_A"] = "1"
threading.Thread(target=time.sleep, args=(600,), name="leaker").start()
subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)  # leak-marker"], start_new_session=True
)
leaked = True
print("LEAKED: every kind of state left behind")

def add(a, b):
    return a + b
"""


def _host_processes_with(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in text and "pytest" not in text:
            found.append(text[:100])
    return found


@pytest.mark.slow
def test_no_state_carries_from_one_student_to_the_next_on_one_worker(tmp_path):
    """One worker grades a submission that leaves files, a module, a module attribute, an
    environment variable, a thread and a detached process behind, then two more: the kernels
    they get (started ahead of time, torch already imported) see none of it."""
    course = _class(
        tmp_path / "course",
        {"a-leaker": LEAKER, "b-next": RIGHT, "c-after": RIGHT},
        first_test=FRESH_CHECK,
    )
    grading.register(course, ["tiny"], ["a-leaker", "b-next", "c-after"])
    run = parallel.autograde_parallel(course, "tiny", jobs=1, progress=False)
    results = {r.student: r for r in run.results}
    assert all(r.status == "graded" for r in results.values()), run.failures
    assert len({r.worker for r in results.values()}) == 1, "one worker graded them all"
    assert results["b-next"].warm_kernel and results["c-after"].warm_kernel
    assert "LEAKED: every kind of state" in _outputs(_autograded(course, "a-leaker")), (
        "the leaking submission must have run to the end, else the test proves nothing"
    )
    scores = grading.read_scores(course)
    for student in ("b-next", "c-after"):
        assert "FRESH: nothing left" in _outputs(_autograded(course, student))
        assert scores[(student, "tiny")].auto_score == 3
        assert not scores[(student, "tiny")].flagged
    assert scores[("a-leaker", "tiny")].flagged, "the policy still holds the leaker's points"
    assert "FRESH: nothing left" in _outputs(_autograded(course, "a-leaker")), (
        "the worker's first kernel, started before any notebook, is nbgrader's autograde kernel"
    )
    assert not _host_processes_with("leak-marker"), "a detached process outlived grading"


@pytest.mark.slow
def test_parallel_command_grades_everyone_with_two_workers(tmp_path):
    answers = {"ann": RIGHT, "bob": WRONG, "cy": RIGHT, "dee": "raise RuntimeError('no')"}
    course = _class(tmp_path / "course", answers)
    proc = _command(course, "--jobs", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for student in answers:
        assert f"autograde tiny of {student}: " in proc.stdout
    assert "with 2 worker(s)" in out and "submissions/min" in out
    assert_tiny_scores(course, answers)
    assert not any(score.incomplete for score in grading.read_scores(course).values())
    with sqlite3.connect(course / "gradebook.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert list((course / "gradebook_backups").glob("*.db")), "backed up before grading"
    again = _command(course, "--jobs", "2")
    assert again.returncode == 0
    assert again.stdout.count("already graded, skipped") == len(answers)


@pytest.mark.slow
def test_killed_parallel_run_resumes_without_regrading_what_was_done(tmp_path):
    students = [f"st{i}" for i in range(4)]
    course = _class(tmp_path / "course", dict.fromkeys(students, SLOW))
    log = tmp_path / "first-run.log"
    with open(log, "w") as out:
        cmd = [sys.executable, "-m", "course_tools.grading", "autograde", "tiny", "--jobs", "2"]
        proc = subprocess.Popen(
            [*cmd, "--course", str(course)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=nbgrader_env(),
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while "s\n" not in log.read_text().split("autograde tiny of ", 1)[-1]:
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator, its workers and their kernels
    proc.wait()
    done = [s for s in students if is_graded(course, "tiny", s)]
    assert done and len(done) < len(students), log.read_text()
    stamps = {s: (course / "autograded" / s / "tiny" / "tiny.ipynb").stat().st_mtime for s in done}
    rerun = _command(course, "--jobs", "2")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for student in done:
        assert f"autograde tiny of {student}: already graded, skipped" in rerun.stdout
        path = course / "autograded" / student / "tiny" / "tiny.ipynb"
        assert path.stat().st_mtime == stamps[student], "a finished submission was regraded"
    scores = grading.read_scores(course)
    assert all(scores[(s, "tiny")].auto_score == 2 for s in students)


def _pool_workers() -> list[int]:
    """Pids of this process's children that are pool workers (not the resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.slow
def test_a_dead_worker_process_costs_a_retry_not_a_grade(tmp_path):
    course = _class(tmp_path / "course", {"slow": SLOW, "quick": RIGHT})
    grading.register(course, ["tiny"], ["slow", "quick"])
    results = {}
    grader = threading.Thread(
        target=lambda: results.update(
            r=parallel.grade_submissions(course, "tiny", ["slow", "quick"], 1, progress=False)
        )
    )
    grader.start()
    deadline = time.monotonic() + 300
    started = course / "autograded" / "slow" / "tiny" / "tiny.ipynb"
    while not (started.exists() and _pool_workers()):
        assert time.monotonic() < deadline and grader.is_alive()
        time.sleep(0.1)
    for pid in _pool_workers():
        os.kill(pid, signal.SIGKILL)
    grader.join(timeout=600)
    by_student = {r.student: r for r in results["r"]}
    assert by_student["slow"].status == "graded", by_student["slow"].error
    assert by_student["quick"].status == "graded", by_student["quick"].error
    assert grading.read_scores(course)[("slow", "tiny")].auto_score == 2
