"""Which database a course's gradebook lives in, and what several writers need from it.

nbgrader keeps the gradebook wherever ``c.CourseDirectory.db_url`` (an SQLAlchemy URL) points:
by default the SQLite file ``<course>/gradebook.db``; for a large class, or workers on several
machines, a PostgreSQL server (``postgresql+psycopg://user@host/db``, see README: Grading at
scale). Everything in `course_tools.grading` opens the gradebook through `gradebook_url`, so
the same commands work with either.

Several worker processes writing one SQLite file: SQLite lets one writer at a time in and makes
the others wait, up to a busy timeout that is only 5 s by default; a reader in the old
rollback-journal mode also blocks writers. `prepare_for_workers` turns on write-ahead logging
(readers never block the writer; the setting stays with the file) and `with_busy_timeout`
gives every connection a generous wait. nbgrader's transactions are short (milliseconds, a few
per submission, next to seconds of kernel time), so workers queue briefly instead of failing;
a submission that still meets a locked database is retried (`workers.TRANSIENT_ERRORS`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from course_tools.grading.course import CONFIG_FILE

GRADEBOOK_FILE = "gradebook.db"
BUSY_TIMEOUT_S = 120.0

_config_cache: dict[Path, tuple[int, str | None]] = {}


def configured_db_url(course_dir: Path) -> str | None:
    """``c.CourseDirectory.db_url`` of the course's nbgrader_config.py, or None if unset."""
    from traitlets.config.loader import PyFileConfigLoader

    config_file = Path(course_dir).resolve() / CONFIG_FILE
    if not config_file.is_file():
        return None
    stamp = config_file.stat().st_mtime_ns
    cached = _config_cache.get(config_file)
    if cached is None or cached[0] != stamp:
        config = PyFileConfigLoader(CONFIG_FILE, path=str(config_file.parent)).load_config()
        url = config.CourseDirectory.get("db_url") or None
        _config_cache[config_file] = cached = (stamp, url)
    return cached[1]


def gradebook_url(course_dir: Path) -> str:
    """The course's gradebook: its configured ``db_url``, else nbgrader's default SQLite file."""
    configured = configured_db_url(course_dir)
    if configured:
        return configured
    return f"sqlite:///{Path(course_dir).resolve() / GRADEBOOK_FILE}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///path`` URL (query string dropped); None for other databases."""
    if not is_sqlite(url):
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def with_busy_timeout(url: str, seconds: float = BUSY_TIMEOUT_S) -> str:
    """An SQLite URL whose connections wait up to ``seconds`` for another writer's lock.

    Other databases (their servers queue writers themselves) come back unchanged.
    """
    if not is_sqlite(url) or "timeout=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}timeout={seconds:g}"


def prepare_for_workers(url: str) -> str | None:
    """Get a gradebook ready for concurrent writers; returns what was done, or None.

    SQLite: write-ahead logging, so readers (the coordinator checking what is graded, the
    formgrader) never block a worker's write. It is a property of the file and harmless to
    nbgrader; it needs a local file system (as SQLite itself does for locking).
    """
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return None
    with sqlite3.connect(path, timeout=BUSY_TIMEOUT_S) as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() == "wal":
            return None
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    return f"{path.name}: SQLite journal mode {mode.upper()} (concurrent readers and one writer)"


def copy_gradebook(source_url: str, target: Path | str) -> Path | str:
    """Copy every table of an nbgrader gradebook into a new one; returns ``target``.

    ``target`` is a new SQLite file (a path: the backups) or the URL of an empty database (e.g.
    moving a class's SQLite gradebook to PostgreSQL). The copy is itself a complete gradebook:
    point ``c.CourseDirectory.db_url`` at it. Rows are read in one transaction (a consistent
    snapshot on PostgreSQL) and written in foreign-key order, in one transaction.
    """
    from nbgrader.api import Base
    from sqlalchemy import MetaData, create_engine, inspect

    if isinstance(target, Path) or "://" not in str(target):
        target = Path(target)
        if target.exists():
            raise FileExistsError(f"{target} exists; a copy never overwrites a file")
        target_url = f"sqlite:///{target}"
    else:
        target_url = target
    source = create_engine(source_url)
    copy = create_engine(target_url)
    try:
        if inspect(copy).get_table_names():
            raise FileExistsError(f"{target_url} already has tables; copy into an empty database")
        tables = MetaData()
        tables.reflect(bind=source)  # nbgrader's tables plus alembic_version
        Base.metadata.create_all(bind=copy)
        for name, table in tables.tables.items():
            if name not in Base.metadata.tables:
                table.to_metadata(MetaData()).create(bind=copy)
        with source.connect() as reader, copy.begin() as writer:
            if source.dialect.name == "postgresql":
                reader.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for reflected in tables.sorted_tables:
                # nbgrader's own table objects convert values between databases (an
                # Interval is a datetime in SQLite and an interval in PostgreSQL).
                table = Base.metadata.tables.get(reflected.name, reflected)
                rows = [dict(row._mapping) for row in reader.execute(table.select())]
                if rows:
                    writer.execute(table.insert(), rows)
    finally:
        source.dispose()
        copy.dispose()
    return target
