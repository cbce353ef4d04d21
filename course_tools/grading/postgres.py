"""A PostgreSQL gradebook: URLs, creating the database, and a throwaway server to try it on.

nbgrader talks to any database SQLAlchemy knows through ``c.CourseDirectory.db_url``; this
course uses PostgreSQL with the psycopg (version 3) driver:

    c.CourseDirectory.db_url = "postgresql+psycopg://grader:secret@db.example.edu/cnn_course"

`create_database` creates the (empty) database on a server; nbgrader creates its tables on
first use. `TemporaryPostgres` starts a private server on loopback in a temporary folder (the
Debian/Ubuntu package ``postgresql``'s ``initdb`` and ``pg_ctl``, run as an unprivileged user),
for the tests, the benchmark and for trying the setup on a laptop; it is not how a class's
gradebook should be run (a real server has backups, a password, and survives reboots).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from course_tools.grading.course import GradingError

DRIVER = "postgresql+psycopg"


def libpq_url(url: str) -> str:
    """The libpq form (``postgresql://...``) of an SQLAlchemy URL (``postgresql+psycopg://``)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url`` (unless it exists); its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = server_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


def server_binaries() -> Path | None:
    """The folder with ``initdb``/``pg_ctl``/``postgres`` (newest installed version), or None."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    folders = [f for f in folders if os.access(Path(f) / "initdb", os.X_OK)]
    return Path(folders[-1]) if folders else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TemporaryPostgres:
    """A PostgreSQL server of its own, on 127.0.0.1, in a temporary folder; use it in a ``with``.

    PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` account the
    Debian package creates (else ``nobody``). Authentication is ``trust`` on loopback only, and
    durability is off (``fsync=off``): a scratch server for tests and benchmarks.
    """

    user = "grader"

    def __init__(self, port: int | None = None):
        self.bin = server_binaries()
        if self.bin is None:
            raise GradingError(
                "no PostgreSQL server programs (initdb, pg_ctl) found: install them with "
                "`apt-get install -y postgresql` (Debian/Ubuntu; .ci/run does this on CI)"
            )
        # Directly in the system's temporary folder: the server's account must reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="course-postgres-"))
        self.port = port or _free_port()
        self.data = self.folder / "data"
        self.log_file = self.folder / "server.log"
        self._as_user: list[str] = []

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if proc.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise GradingError(
                f"`{' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}"
            )
        return proc

    def start(self) -> TemporaryPostgres:
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            uid, gid = account.pw_uid, account.pw_gid
            os.chown(self.folder, uid, gid)
            os.chmod(self.folder, 0o700)
            setpriv = shutil.which("setpriv") or "setpriv"
            self._as_user = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            "start",
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(libpq_url(self.url("postgres")), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"{DRIVER}://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        return create_database(self.url(), name)

    def stop(self) -> None:
        if self.data.is_dir():
            subprocess.run(
                [*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate"]
                + ["-w", "stop"],
                capture_output=True,
                check=False,
                timeout=120,
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
