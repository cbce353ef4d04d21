"""An operating-system sandbox around every grading kernel (bubblewrap), as a jupyter KernelManager.

nbgrader executes a submission through nbclient, which starts the kernel with a
``kernel_manager_class``. `SandboxedKernelManager` is that class for this course (set by
`course_tools.grading.execute.GradingExecute`, the Execute preprocessor in nbgrader_config.py).
The kernel it starts:

- is the grader's own Python (``sys.executable``) running ipykernel, whatever kernel the
  notebook's metadata names;
- runs inside ``bwrap`` (bubblewrap, unprivileged Linux namespaces) with a new user, PID, IPC,
  UTS, cgroup and network namespace: no network at all (the grader talks to it over Unix-domain
  ZMQ sockets, ``transport="ipc"``, in a private runtime folder bound into the sandbox);
- sees a read-only system (/usr, /etc, the Python installation, the virtual environment, the
  ``course_lib``/``course_tools`` packages and nothing else of the course root), an empty
  size-limited tmpfs as $HOME and /tmp, and a private copy of its submission folder without
  the notebooks (the autograded copy holds the hidden tests);
- when the grader runs as root, runs as an unprivileged user (``kernel_uid``, default nobody);
- has limits on memory (a cgroup when the grader may create one, else RLIMIT_DATA per process),
  processes (a pids cgroup, and RLIMIT_NPROC inside its own user namespace), CPU seconds, file
  size, open files and disk (tmpfs size);
- dies with its whole process tree when the notebook ends: the sandbox's PID namespace ends when
  its first process does, and ``--die-with-parent`` kills it if the grader itself dies;
- starts Python with ``-P`` and IPython with ``ignore_cwd``, so files in the submission never
  shadow installed modules.

When bubblewrap cannot create the sandbox (no bwrap, no user namespaces, not Linux), starting a
kernel raises `SandboxUnavailable` with the reason, unless the instructor sets
``c.SandboxedKernelManager.allow_unsandboxed = True`` (then only the limits, the clean
environment and the safe import path remain).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Dict, Integer, List, Unicode

GiB = 1024**3
MiB = 1024**2
SANDBOX_HOME = "/home/student"
CGROUP_PREFIX = "course-sandbox-"
STALE_CGROUP_SECONDS = 3600  # a grader killed with SIGKILL leaves its (empty) cgroups behind
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The environment a kernel gets: nothing else of the grader's environment (tokens, paths) leaks.
PASSED_ENV = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NBGRADER_EXECUTION")
PASSED_ENV_PREFIXES = ("COURSE_",)


class SandboxUnavailable(RuntimeError):
    """The kernel sandbox cannot be created here; the message says why and what to do."""


def _run_quietly(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False, **kwargs)


@functools.cache
def probe_bwrap(bwrap: str = "bwrap", kernel_uid: int = 65534) -> str | None:
    """None when bubblewrap can create a sandbox here, else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"the grading sandbox needs Linux namespaces (bubblewrap); this is {sys.platform}"
    path = shutil.which(bwrap)
    if path is None:
        return f"bubblewrap ({bwrap!r}) is not installed: `apt-get install bubblewrap`"
    cmd = [path, "--unshare-all", "--unshare-user", "--die-with-parent", "--ro-bind", "/", "/"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    if os.geteuid() == 0:
        cmd = [*_drop_root(kernel_uid), *cmd]
    proc = _run_quietly(cmd)
    if proc.returncode != 0:
        return f"`{shlex.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}"
    return None


def _drop_root(uid: int) -> list[str]:
    """``setpriv`` arguments that run the rest of a command line as ``uid`` with no privileges."""
    return [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]


def _world_reachable(path: Path) -> bool:
    """Whether any user can enter ``path`` and each folder above it (o+x on all of them)."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup-v1 folder of ``controller``, or None (no v1 hierarchy)."""
    mount = CGROUP_ROOT / controller
    if not (mount / "cgroup.procs").is_file():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return mount / path.lstrip("/")
    return None


def _package_dir(name: str) -> Path | None:
    """Where ``import name`` finds the package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def readonly_paths(extra: list[str] = ()) -> list[Path]:
    """Host folders a kernel sees read-only: the system, Python, the venv and the course packages.

    The course root itself is never bound: only its ``course_lib``/``course_tools`` packages
    (which the hidden tests import) and, when the virtual environment lives inside it (CI:
    ``<clone>/.venv``), the environment.
    """
    paths = [Path("/usr"), Path("/etc")]
    for prefix in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        paths.append(Path(prefix).resolve())
    paths.append(Path(sys.executable).resolve().parent)
    for package in ("course_lib", "course_tools"):
        location = _package_dir(package)
        if location is not None:
            paths.append(location)
    paths += [Path(p).resolve() for p in extra]
    unique: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if path.exists() and not any(path.is_relative_to(seen) for seen in unique):
            unique.append(path)
    return unique


def sandbox_problem(config=None) -> str | None:
    """Why grading with this configuration would refuse to start a kernel, or None.

    None also when the sandbox is missing but ``allow_unsandboxed`` is set.
    """
    manager = SandboxedKernelManager(config=config)
    reason = probe_bwrap(manager.bwrap, manager.kernel_uid)
    if reason is None or manager.allow_unsandboxed:
        return None
    return refusal(reason)


def refusal(reason: str) -> str:
    return (
        f"cannot create the grading sandbox: {reason}.\nGrading refuses to run student code "
        "without it. Install bubblewrap on Linux (Debian/Ubuntu: `apt-get install bubblewrap`), "
        "or, only for submissions you trust, set "
        "`c.SandboxedKernelManager.allow_unsandboxed = True` in nbgrader_config.py."
    )


class SandboxedKernelManager(AsyncKernelManager):
    """Start each grading kernel inside a bubblewrap sandbox with resource limits.

    Configure the limits in nbgrader_config.py, e.g.
    ``c.SandboxedKernelManager.memory_limit = 4 * 1024**3``.
    """

    memory_limit = Integer(
        2 * GiB, help="Bytes of memory for the whole sandbox (cgroup) or each process (RLIMIT_DATA)"
    ).tag(config=True)
    process_limit = Integer(
        256, help="Processes and threads in the sandbox (pids cgroup and RLIMIT_NPROC)"
    ).tag(config=True)
    cpu_time_limit = Integer(
        1200, help="CPU seconds per process (RLIMIT_CPU); the kernel is killed past it"
    ).tag(config=True)
    file_size_limit = Integer(64 * MiB, help="Largest file a kernel may write (RLIMIT_FSIZE)").tag(
        config=True
    )
    disk_limit = Integer(
        256 * MiB, help="Size of each of the sandbox's writable tmpfs ($HOME, /tmp)"
    ).tag(config=True)
    open_files_limit = Integer(1024, help="Open file descriptors (RLIMIT_NOFILE)").tag(config=True)
    kernel_uid = Integer(
        65534, help="When grading as root, the unprivileged user id the kernel runs as (nobody)"
    ).tag(config=True)
    allow_unsandboxed = Bool(
        False,
        help="Grade without the OS sandbox when it cannot be created (only for trusted "
        "submissions: a kernel can then read and change every file the grader can)",
    ).tag(config=True)
    allow_gpu = Bool(True, help="Expose NVIDIA GPU devices (/dev/nvidia*) to the kernel").tag(
        config=True
    )
    extra_readonly_paths = List(
        Unicode(), help="More host folders the kernel may read (e.g. a shared dataset folder)"
    ).tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable").tag(config=True)
    # Set by the grading workers, not in the configuration: a kernel started ahead of its
    # notebook gets NBGRADER_EXECUTION=autograde here, without touching os.environ, which
    # nbgrader's own setenv manages on another thread at the same time.
    extra_env = Dict(help="Variables added to the kernel's clean environment")

    def __init__(self, *args, **kwargs):
        # The grader chooses the kernel, never the notebook: whatever kernel_name nbclient passes
        # (from the notebook's metadata), this manager starts its own Python with ipykernel.
        kwargs["kernel_name"] = "python3"
        super().__init__(*args, **kwargs)
        self.transport = "ipc"
        self.sandboxed = False
        self.runtime_dir: Path | None = None
        self._cgroups: list[Path] = []
        self._root_mounts: list[tuple[Path, Path]] = []
        self._prefix: list[str] = []
        self._launcher_args: list[str] = []

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-P", "-s", "-m", "course_tools.sandbox_kernel"],
            display_name="Python 3 (grading sandbox)",
            language="python",
            interrupt_mode="message",  # a signal to bwrap would not reach the kernel
            name="python3",
        )

    # --- what the kernel gets -----------------------------------------------------------------

    def _limits(self, cgroup_memory: bool) -> dict[str, int]:
        limits = {
            "RLIMIT_NPROC": self.process_limit,
            "RLIMIT_CPU": self.cpu_time_limit,
            "RLIMIT_FSIZE": self.file_size_limit,
            "RLIMIT_NOFILE": self.open_files_limit,
            "RLIMIT_CORE": 0,
        }
        if not cgroup_memory:
            limits["RLIMIT_DATA"] = self.memory_limit
        return limits

    def _kernel_env(self) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": SANDBOX_HOME,
            "TMPDIR": "/tmp",
            "IPYTHONDIR": f"{SANDBOX_HOME}/.ipython",
            "MPLCONFIGDIR": f"{SANDBOX_HOME}/.config/matplotlib",
            "PYTHONSAFEPATH": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for key, value in os.environ.items():
            if key in PASSED_ENV or key.startswith(PASSED_ENV_PREFIXES):
                env[key] = value
        # In a development checkout PYTHONPATH may point at the course root; the sandbox binds
        # only the course packages below it, so the path gives access to nothing else.
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.setdefault("LANG", "C.UTF-8")
        env.update(self.extra_env)
        return env

    def _stage_submission(self, cwd: Path) -> Path:
        """Copy the submission folder (minus notebooks) into the runtime folder, for the kernel.

        The autograded notebook in ``cwd`` already holds the restored hidden tests, so no
        ``.ipynb`` file is copied; everything else (data files, the student's extra files) is.
        """
        staged = self.runtime_dir / "submission"
        shutil.copytree(
            cwd,
            staged,
            symlinks=False,
            ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"),
        )
        for path in [staged, *staged.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return staged

    def _join_cgroups(self) -> list[str]:
        """Create this kernel's memory and pids cgroups (cgroup v1, nested in ours) if allowed.

        Returns the ``cgroup.procs`` files the launcher writes its pid to. Without write access
        (an ordinary user, cgroup v2) the limits fall back to per-process rlimits.
        """
        procs = []
        for controller, settings in (
            ("memory", {"memory.limit_in_bytes": self.memory_limit}),
            ("pids", {"pids.max": self.process_limit}),
        ):
            parent = _own_cgroup(controller)
            if parent is None or not os.access(parent, os.W_OK):
                continue
            remove_stale_cgroups(parent)
            group = parent / f"{CGROUP_PREFIX}{uuid.uuid4().hex[:12]}"
            try:
                group.mkdir()
                for name, value in settings.items():
                    (group / name).write_text(str(value))
            except OSError:
                remove_cgroup(group)
                continue
            self._cgroups.append(group)
            procs.append(str(group / "cgroup.procs"))
        return procs

    def _reachable(self, path: Path) -> Path:
        """``path`` itself, or where it is bind-mounted for a kernel user that cannot reach it.

        A grader running as root may use a Python installed below /root (mode 0700), which the
        kernel's user (nobody) cannot enter, so bubblewrap, running as that user, could not bind
        it. Such a folder is first bind-mounted (as root, in a private mount namespace of the
        launch command) onto ``<runtime>/mnt/<n>``, which the kernel's user can reach.
        """
        if os.geteuid() != 0 or _world_reachable(path):
            return path
        mountpoint = self.runtime_dir / "mnt" / str(len(self._root_mounts))
        mountpoint.mkdir(parents=True)
        self._root_mounts.append((path, mountpoint))
        return mountpoint

    def _bwrap_args(self, workdir: str) -> list[str]:
        args = [
            shutil.which(self.bwrap) or self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "grading-sandbox",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
        # The writable tmpfs first: a read-only folder below /tmp (a course cloned there) is
        # then bound on top of it instead of being hidden by it.
        args += ["--size", str(self.disk_limit), "--tmpfs", "/tmp"]
        args += ["--size", str(self.disk_limit), "--tmpfs", SANDBOX_HOME]
        for path in readonly_paths(self.extra_readonly_paths):
            args += ["--ro-bind", str(self._reachable(path)), str(path)]
        if self.allow_gpu:
            for device in sorted(Path("/dev").glob("nvidia*")):
                args += ["--dev-bind", str(device), str(device)]
        args += ["--dir", workdir, "--chdir", workdir]
        # The runtime folder (connection file, sockets, staged files) at the same path inside.
        args += ["--bind", str(self.runtime_dir), str(self.runtime_dir)]
        return [*args, "--"]

    def _as_root_then_drop(self, cgroup_procs: list[str]) -> list[str]:
        """The launch prefix of a grader running as root.

        As root: join the kernel's cgroups and make the unreachable folders reachable (private
        mount namespace, see `_reachable`); then drop to ``kernel_uid`` with no capabilities and
        run bubblewrap as that user.
        """
        steps = [f"echo $$ > {shlex.quote(p)}" for p in cgroup_procs]
        steps += [
            f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dest))}"
            for src, dest in self._root_mounts
        ]
        prefix = []
        if self._root_mounts:
            prefix = [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private"]
        if steps:
            prefix += ["/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "sh"]
        return prefix + _drop_root(self.kernel_uid)

    # --- jupyter_client hooks ------------------------------------------------------------------

    async def _async_pre_start_kernel(self, **kw):
        cwd = Path(kw.pop("cwd", None) or os.getcwd())
        root = os.geteuid() == 0
        reason = probe_bwrap(self.bwrap, self.kernel_uid)
        if reason is not None and not self.allow_unsandboxed:
            raise SandboxUnavailable(refusal(reason))
        self.sandboxed = reason is None
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
        self.connection_file = str(self.runtime_dir / "kernel.json")
        staged = self._stage_submission(cwd)
        cgroup_procs = self._join_cgroups() if self.sandboxed and root else []
        memory_in_cgroup = any("memory" in Path(p).parts for p in cgroup_procs)
        self._launcher_args = ["--limits", json.dumps(self._limits(memory_in_cgroup))]
        self._launcher_args += ["--copy-from", str(staged)]
        if self.sandboxed:
            if root:
                os.chown(self.runtime_dir, self.kernel_uid, self.kernel_uid)
            self._prefix = self._bwrap_args(workdir=f"{SANDBOX_HOME}/{cwd.name}")
            if root:
                self._prefix = self._as_root_then_drop(cgroup_procs) + self._prefix
            host_cwd = self.runtime_dir
        else:
            self.log.warning("grading WITHOUT the OS sandbox (allow_unsandboxed): %s", reason)
            self._prefix = []
            host_cwd = self.runtime_dir / "work" / cwd.name
            host_cwd.mkdir(parents=True)
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        kw["cwd"] = str(host_cwd)
        kw["env"] = self._kernel_env()
        return kernel_cmd, kw

    def format_kernel_cmd(self, extra_arguments=None):
        """``[sandbox] python -P -s -m course_tools.sandbox_kernel <limits> -f <file> ...``"""
        launcher = self.kernel_spec.argv
        return [
            *self._prefix,
            *launcher,
            *self._launcher_args,
            "-f",
            self.connection_file,
            *(extra_arguments or []),
        ]

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        if os.geteuid() == 0 and self.sandboxed:
            os.chown(self.connection_file, self.kernel_uid, self.kernel_uid)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            await super()._async_cleanup_resources(restart=restart)
        finally:
            self.kill_sandbox()

    # AsyncKernelManager binds its public coroutine names to the base class's functions.
    cleanup_resources = _async_cleanup_resources

    def kill_sandbox(self) -> None:
        """Kill whatever is left of the kernel's processes; remove its cgroups and runtime folder.

        In the sandbox the PID namespace already ends with the kernel; the cgroups catch any
        process that was still being set up. Without the sandbox the kernel's process group
        (its own session) is killed.
        """
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            if not self.sandboxed:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if process.poll() is None:
                process.kill()
                process.wait()
        for group in self._cgroups:
            remove_cgroup(group)
        self._cgroups.clear()
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None


def remove_stale_cgroups(parent: Path) -> None:
    """Remove empty kernel cgroups older than an hour that a killed grader left in ``parent``.

    Only empty ones: ``rmdir`` fails on a cgroup that still has processes (another grader's).
    """
    for group in parent.glob(f"{CGROUP_PREFIX}*"):
        try:
            if time.time() - group.stat().st_mtime > STALE_CGROUP_SECONDS:
                group.rmdir()
        except OSError:
            pass


def remove_cgroup(group: Path, attempts: int = 50) -> bool:
    """Kill every process in a cgroup-v1 folder and remove it; True once it is gone."""
    for _ in range(attempts):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return not group.exists()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            group.rmdir()
            return True
        except OSError:
            time.sleep(0.02)
    return False
