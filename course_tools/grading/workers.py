"""A long-lived grading worker: nbgrader's autograde in-process, a sandboxed kernel ready early.

One `GradingWorker` lives in its own process (a process of `parallel`'s pool, or a Dask worker of
`distributed`) and grades one submission at a time. Compared with one ``nbgrader autograde
--student`` process per submission it saves, per submission:

- starting Python, importing nbgrader/nbconvert and loading ``nbgrader_config.py``: the worker
  does it once and then runs nbgrader's own ``Autograde`` converter in-process, with the very
  same configuration (every preprocessor of the course's pipeline: policy check, sandboxed
  `GradingExecute`, held points, output caps, ...);
- starting the kernel and importing torch: `WarmGradingExecute` (the course's `GradingExecute`
  with one change) takes a kernel that `KernelPool` started *in its sandbox* while the worker was
  busy with the previous submission, with ``preload`` modules (torch) already imported.

No state carries from one student to the next: every notebook gets a kernel that was started
for it and has run no other code (each kernel is a new sandbox: new processes, a private
tmpfs, its own namespaces), and the kernel is killed when the notebook ends. Only modules the
grader chose are imported before the student's code runs; they are imported from the
read-only system paths, exactly as the student's own ``import torch`` would. A submission that
brings extra files (which the sandbox copies into the kernel's folder at start) gets a cold
kernel started for it, as before.

The grader's own state is rebuilt for every submission too: a new ``Autograde`` converter, new
preprocessor instances, new gradebook sessions. The worker process runs no student code.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.utils import run_sync

from course_tools.grading.course import CONFIG_FILE, GradingError, nbgrader_env, venv_bin_on_path
from course_tools.grading.database import with_busy_timeout
from course_tools.grading.execute import GradingExecute

# Modules imported in every kernel before its notebook arrives (what the course's notebooks and
# hidden tests import first). Configurable: ``c.GradingWorker.preload = [...]`` is not a
# traitlets option; pass ``preload=`` to `GradingWorker` (``--preload`` on the command line).
PRELOAD = ("torch", "torch.nn.functional", "numpy")

# What `SandboxedKernelManager._stage_submission` leaves out when it copies a submission's folder
# into the sandbox; a folder holding anything else needs a kernel started for it.
NOT_STAGED = ("*.ipynb", ".ipynb_checkpoints", "__pycache__")

# Errors worth a second try: another worker held the SQLite gradebook too long.
TRANSIENT_ERRORS = ("database is locked", "database table is locked", "could not serialize")


def needs_staging(folder: Path) -> bool:
    """Whether the sandbox would copy anything of ``folder`` into a kernel's working folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    names = os.listdir(folder)
    skipped = shutil.ignore_patterns(*NOT_STAGED)(str(folder), names)
    return any(name not in skipped for name in names)


def preload_arguments(modules: tuple[str, ...]) -> list[str]:
    """ipykernel options that import ``modules`` at kernel start and leave no name behind."""
    if not modules:
        return []
    names = sorted({module.split(".")[0] for module in modules})
    statement = f"import {', '.join(modules)}; del {', '.join(names)}"
    return [f"--IPKernelApp.exec_lines={statement}"]


class KernelPool:
    """One fresh sandboxed kernel kept ready for the next notebook of an assignment.

    `prestart` launches it (inside its sandbox: `SandboxedKernelManager`) and returns at once;
    the kernel starts Python and imports ``preload`` while the worker does other work. `take`
    hands it to exactly one notebook. A kernel is never handed out twice.
    """

    def __init__(self, config, preload: tuple[str, ...] = PRELOAD, log=None):
        self.config = config
        self.preload = tuple(preload)
        self.log = log or logging.getLogger(__name__)
        self.assignment: str | None = None
        self.started = 0  # kernels launched by this pool
        self.handed_out = 0  # kernels given to a notebook
        # Start the next notebook's kernel when one ends. Off for a run's last submissions: a
        # kernel that nobody takes would only take a core from the other workers for 1.5 s.
        self.prestart_next = True
        self._km = None
        self._thread: int | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="course-warm-kernel-"))
        atexit.register(self.close)

    def _executor(self) -> GradingExecute:
        return GradingExecute(config=self.config)

    def kernel_arguments(self) -> list[str]:
        """The arguments nbclient would give this notebook's kernel, plus the preload."""
        executor = self._executor()
        args = list(executor.extra_arguments)
        if executor.ipython_hist_file:
            args.append(f"--HistoryManager.hist_file={executor.ipython_hist_file}")
        return args + preload_arguments(self.preload)

    def prestart(self, assignment: str) -> None:
        """Launch a kernel for the next notebook of ``assignment`` (no-op if one is waiting)."""
        if self._km is not None:
            if self.assignment == assignment and self._thread == threading.get_ident():
                return
            self.discard()
        # The kernel's working folder is named after the folder it is started in
        # (``autograded/<student>/<assignment>``): an empty stand-in of the same name.
        placeholder = self._scratch / assignment
        placeholder.mkdir(exist_ok=True)
        executor = self._executor()
        km = executor.kernel_manager_class(config=self.config)
        if km.has_trait("extra_env"):  # the environment of nbgrader's autograde step
            km.extra_env = {"NBGRADER_EXECUTION": "autograde"}
        try:
            run_sync(km.start_kernel)(cwd=str(placeholder), extra_arguments=self.kernel_arguments())
        except Exception as error:  # the notebook's own (cold) start will report it properly
            self.log.warning("could not start a kernel ahead of time: %s", error)
            _kill(km)
            return
        self._km, self.assignment, self._thread = km, assignment, threading.get_ident()
        self.started += 1

    def take(self, cwd: Path):
        """The waiting kernel, if it suits a notebook that runs in ``cwd``; else None."""
        km = self._km
        if km is None or self._thread != threading.get_ident():
            return None
        if Path(cwd).name != self.assignment or needs_staging(cwd):
            return None  # another folder name, or extra files to copy in: start one for it
        self._km = None
        if not run_sync(km.is_alive)():
            self.log.warning("the kernel started ahead of time died while waiting")
            _kill(km)
            return None
        self.handed_out += 1
        return km

    def discard(self, now: bool = False) -> None:
        """Kill the waiting kernel (unused)."""
        km, self._km = self._km, None
        if km is not None:
            _kill(km, now=now or self._thread != threading.get_ident())

    def close(self) -> None:
        self.discard(now=True)
        shutil.rmtree(self._scratch, ignore_errors=True)


def _kill(km, *, now: bool = False) -> None:
    """Shut a kernel down; ``now``: just kill its sandbox (at exit, or from another thread,
    where the kernel's event-loop objects cannot be awaited)."""
    kill_sandbox = getattr(km, "kill_sandbox", None)
    if now and kill_sandbox is not None:
        kill_sandbox()
        return
    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # already gone
        pass
    finally:
        try:
            run_sync(km.cleanup_resources)()
        except Exception:
            pass


# This process's pool (set by GradingWorker): WarmGradingExecute instances are created by
# nbconvert from the class, so they find the pool here.
_pool: KernelPool | None = None


class WarmGradingExecute(GradingExecute):
    """`GradingExecute` whose first kernel per notebook comes from this process's `KernelPool`.

    Everything else is `GradingExecute`'s: the sandbox, the time budget, restarts after a lost
    kernel (those kernels are started cold), output caps. When the notebook is done, the pool
    launches the kernel of the next notebook, unless its ``prestart_next`` is off (then a later
    notebook of the same submission, in an assignment of several, starts its kernel cold).
    """

    def preprocess(self, nb, resources=None, km=None):
        self._pool_kernel_allowed = _pool is not None and km is None
        self.used_warm_kernel = False
        try:
            return super().preprocess(nb, resources, km)
        finally:
            path = (resources or {}).get("metadata", {}).get("path")
            if _pool is not None and _pool.prestart_next and path:
                _pool.prestart(Path(path).name)

    def create_kernel_manager(self):
        if self._pool_kernel_allowed:
            self._pool_kernel_allowed = False  # only the first kernel: restarts start cold
            cwd = self.resources.get("metadata", {}).get("path")
            km = _pool.take(Path(cwd)) if cwd else None
            if km is not None:
                self.km = km
                self.used_warm_kernel = True
                return km
        return super().create_kernel_manager()


def _with_warm_kernels(step):
    """`WarmGradingExecute` in place of the course's `GradingExecute` (a class or its import
    path, kept in the same form); any other preprocessor unchanged."""
    from traitlets.utils.importstring import import_item

    resolved = import_item(step) if isinstance(step, str) else step
    if resolved is not GradingExecute:
        return step
    if isinstance(step, str):
        return f"{WarmGradingExecute.__module__}.{WarmGradingExecute.__qualname__}"
    return WarmGradingExecute


@dataclass
class SubmissionResult:
    """What grading one submission did (sent back from a worker to the coordinator)."""

    assignment: str
    student: str
    status: str  # "graded", "skipped" (already graded) or "failed"
    seconds: float = 0.0
    warm_kernel: bool = False  # the notebook got a kernel started ahead of time
    worker: str = ""  # host:pid of the worker process
    error: str = ""  # why it failed (nbgrader's log tail)
    transient: bool = False  # failed for a reason a second try may not meet

    @property
    def label(self) -> str:
        return f"{self.assignment}/{self.student}"


class GradingWorker:
    """Grade submissions of one course in this process, one at a time, with nbgrader's converter.

    The course's configuration is loaded once, as ``nbgrader autograde`` would load it (the
    course's ``nbgrader_config.py`` and Jupyter's config folders). With ``warm_kernels`` the
    course's `GradingExecute` is replaced by `WarmGradingExecute` (same class plus the kernel
    pool); any other Execute preprocessor the course configures is left as it is.
    """

    def __init__(
        self,
        course_dir: Path,
        warm_kernels: bool = True,
        preload: tuple[str, ...] = PRELOAD,
    ):
        from nbgrader.apps.autogradeapp import AutogradeApp

        self.course_dir = Path(course_dir).resolve()
        if not (self.course_dir / CONFIG_FILE).is_file():
            raise GradingError(
                f"{socket.gethostname()}: no {CONFIG_FILE} in {self.course_dir}. A worker needs "
                "the course directory at the same path as the coordinator (a shared folder on "
                "every machine, see README: Grading at scale)"
            )
        for key, value in nbgrader_env().items():  # what `run_nbgrader` gives a subprocess
            if key in ("OMP_NUM_THREADS", "PYTHONWARNINGS"):
                os.environ.setdefault(key, value)
        venv_bin_on_path()
        # nbgrader's own ORM use warns on every submission; its subprocess hid that in its log.
        warnings.filterwarnings("ignore", module="nbgrader.api")
        os.chdir(self.course_dir)  # nbgrader's CourseDirectory and the preprocessors use the cwd
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.log_buffer = io.StringIO()
        self.app = AutogradeApp()
        self.app.initialize([], root=str(self.course_dir))
        self._capture_logs()
        self.db_url = with_busy_timeout(self.app.coursedir.db_url)
        self.app.coursedir.db_url = self.db_url
        self.app.config.CourseDirectory.db_url = self.db_url
        global _pool
        _pool = None
        if warm_kernels:
            steps = list(self.app.config.Autograde.autograde_preprocessors or [])
            warm = [_with_warm_kernels(step) for step in steps]
            if warm != steps:
                self.app.config.Autograde.autograde_preprocessors = warm
                _pool = KernelPool(self.app.config, preload, log=self.app.log)
        self.pool = _pool
        self._lock = threading.Lock()  # one submission at a time, whatever calls us

    def _capture_logs(self) -> None:
        """nbgrader's log goes to a buffer (its tail explains a failure), not to the terminal."""
        log = self.app.log
        for handler in list(log.handlers):
            log.removeHandler(handler)
        handler = logging.StreamHandler(self.log_buffer)
        handler.setFormatter(logging.Formatter("[%(name)s | %(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    def grade(self, assignment: str, student: str, prestart_next: bool = True) -> SubmissionResult:
        """Autograde one submission (skipped when already graded to the end, see `is_graded`).

        ``prestart_next``: start a kernel for the next submission when this one's notebook ends
        (the coordinators pass False for the last submissions of a run).
        """
        from course_tools.grading.runner import is_graded

        with self._lock:
            result = SubmissionResult(assignment, student, "graded", worker=self.name)
            if is_graded(self.course_dir, assignment, student):
                result.status = "skipped"
                return result
            self.log_buffer.seek(0)
            self.log_buffer.truncate()
            if self.pool is not None:
                self.pool.prestart(assignment)  # no-op when one is waiting already
                self.pool.prestart_next = prestart_next
            handed_out = self.pool.handed_out if self.pool else 0
            start = time.perf_counter()
            error = self._run_converter(assignment, student)
            result.seconds = time.perf_counter() - start
            result.warm_kernel = bool(self.pool and self.pool.handed_out > handed_out)
            if error is None and not is_graded(self.course_dir, assignment, student):
                error = (
                    "nbgrader finished but the submission is not fully graded; it will be "
                    f"regraded on the next run\n{self.log_buffer.getvalue()[-3000:]}"
                )
            if error is not None:
                result.status = "failed"
                result.error = error
                result.transient = any(t in error for t in TRANSIENT_ERRORS)
            return result

    def _run_converter(self, assignment: str, student: str) -> str | None:
        """``nbgrader autograde <assignment> --student=<student> [--force]``, in-process."""
        from nbgrader.converters import Autograde
        from nbgrader.converters.base import NbGraderException

        coursedir = self.app.coursedir
        coursedir.assignment_id = assignment
        coursedir.student_id = student
        converter = Autograde(coursedir=coursedir, parent=self.app)
        # A folder left by a killed or failed run (or graded before the student handed in
        # again) is regraded; `is_graded` said this submission is not finished.
        converter.force = (self.course_dir / "autograded" / student / assignment).exists()
        try:
            converter.start()
        except NbGraderException:
            return self.log_buffer.getvalue()[-4000:]
        except Exception:
            return traceback.format_exc()[-4000:] + self.log_buffer.getvalue()[-2000:]
        finally:
            os.chdir(self.course_dir)
        return None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
