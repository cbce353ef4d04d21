"""A class on a JupyterHub or one shared machine: nbgrader's exchange, each role's JupyterLab.

nbgrader moves work between the instructor and the students through its *exchange*, a directory
that every account of the class can write to (``<exchange>/cnn-course/...``)::

    release_assignment (instructor) -> outbound/<ps>/ -> fetch_assignment (student)
    submit (student)                -> inbound/       -> collect (instructor)
    release_feedback (instructor)   -> feedback/      -> fetch_feedback (student)

This module creates the exchange and writes the Jupyter configuration of the two roles::

    python -m course_tools.classroom exchange /srv/nbgrader/exchange --instructor teacher  # root
    python -m course_tools.classroom student-config [DIR] [--exchange /srv/nbgrader/exchange]
    python -m course_tools.classroom instructor-config DIR --course-dir ~/cnn-course [--exchange X]

A configuration directory holds three files; Jupyter reads them from every directory on its config
path (``jupyter --paths``; the first directory listed wins):

- ``nbgrader_config.py``: the course id, the exchange and (instructors) the course directory;
- ``jupyter_server_config.json``: which nbgrader server extensions run;
- ``labconfig/page_config.json``: which nbgrader JupyterLab plugins load (what
  ``jupyter labextension disable`` writes).

Students get no formgrader, no course list and no "Create Assignment" sidebar; without an exchange
(a student on a laptop, work handed out through an LMS) they also get no Assignments panel, which
could only say "The exchange directory does not exist": they keep the Validate button. The
instructor directory turns everything back on; put it before the student one on the config path.
Hiding is for a clean interface, not for security: Unix permissions on the exchange and on the
instructor's course directory are what keep students out.

Nothing is overwritten blindly: JSON files are merged key by key, and an ``nbgrader_config.py``
that this module did not write is left alone (an error says what to add to it).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from course_tools.grading import COURSE_ID

MARKER = (
    "# Written by `python -m course_tools.classroom`; run it again rather than editing by hand."
)

# nbgrader's JupyterLab plugins and server extensions (nbgrader 0.9).
INSTRUCTOR_LAB_PLUGINS = (
    "@jupyter/nbgrader:create-assignment",  # the "Create Assignment" sidebar
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:course-list",
)
INSTRUCTOR_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
)
EXCHANGE_LAB_PLUGINS = ("@jupyter/nbgrader:assignment-list",)  # the Assignments panel
EXCHANGE_SERVER_EXTENSIONS = ("nbgrader.server_extensions.assignment_list",)
# JupyterLab's "get notified about official Jupyter news?" pop-up, which would fetch the news from
# the internet: off for the class (instructors inherit it from the student configuration).
NEWS_LAB_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)

# The exchange root is world-writable like /tmp, sticky so that nobody can remove or rename what
# another account put there; nbgrader checks only the rwx bits (it wants 0o777).
EXCHANGE_ROOT_MODE = 0o1777
# nbgrader's own mode for exchange/<course>/ (release_assignment creates it so when missing).
COURSE_EXCHANGE_MODE = 0o755


class ClassroomError(RuntimeError):
    """The class cannot be set up as asked; the message says what to change."""


# --- the exchange --------------------------------------------------------------------------


def create_exchange(root: Path, instructor: str | None = None, course_id: str = COURSE_ID) -> Path:
    """Create the exchange ``root`` (mode 1777) and ``root/<course_id>`` owned by the instructor.

    Creating the course's own directory now, owned by the instructor, stops a student from
    creating it first (nbgrader would then refuse to release: "You don't own the directory").
    ``instructor`` is a user name; giving another account than the caller's needs root. Safe to
    run again; an existing course directory owned by someone else is an error, never changed.
    Returns ``root/<course_id>``.
    """
    root = Path(root)
    try:
        owner = pwd.getpwnam(instructor) if instructor else pwd.getpwuid(os.getuid())
    except KeyError:
        raise ClassroomError(f"there is no account named {instructor!r} on this machine") from None
    if root.exists() and not root.is_dir():
        raise ClassroomError(f"the exchange {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(root.stat().st_mode) != EXCHANGE_ROOT_MODE:
        try:
            root.chmod(EXCHANGE_ROOT_MODE)
        except PermissionError as error:
            raise ClassroomError(
                f"cannot make {root} world-writable (mode 1777): {error}; run this as its owner "
                "or as root"
            ) from None
    course = root / course_id
    if not course.exists():
        course.mkdir(mode=COURSE_EXCHANGE_MODE)
        course.chmod(COURSE_EXCHANGE_MODE)
        if course.stat().st_uid != owner.pw_uid:
            os.chown(course, owner.pw_uid, owner.pw_gid)
    elif course.stat().st_uid != owner.pw_uid:
        actual = pwd.getpwuid(course.stat().st_uid).pw_name
        raise ClassroomError(
            f"{course} belongs to {actual}, not to the instructor {owner.pw_name}: nbgrader "
            f"releases only into a directory the instructor owns. Check what is in it, then "
            f"`chown -R {owner.pw_name} {course}` (or remove it)."
        )
    return course


# --- configuration of the two roles --------------------------------------------------------


@dataclass(frozen=True)
class RoleConfig:
    """What one role's JupyterLab loads: nbgrader settings, server extensions, lab plugins."""

    nbgrader_lines: tuple[str, ...]  # Python lines for nbgrader_config.py
    server_extensions: dict[str, bool]  # ServerApp.jpserver_extensions
    lab_plugins_disabled: dict[str, bool]  # page_config disabledExtensions (False = enabled)


def _nbgrader_lines(course_id: str, exchange: Path | None) -> list[str]:
    lines = [f"c.CourseDirectory.course_id = {course_id!r}"]
    if exchange is not None:
        lines.append(f"c.Exchange.root = {str(exchange)!r}")
    return lines


def student_config(exchange: Path | None = None, course_id: str = COURSE_ID) -> RoleConfig:
    """The students' view: Validate (and, with an exchange, the Assignments panel), nothing else."""
    hidden_plugins = list(INSTRUCTOR_LAB_PLUGINS + NEWS_LAB_PLUGINS)
    hidden_extensions = list(INSTRUCTOR_SERVER_EXTENSIONS)
    if exchange is None:
        hidden_plugins += EXCHANGE_LAB_PLUGINS
        hidden_extensions += EXCHANGE_SERVER_EXTENSIONS
    return RoleConfig(
        tuple(_nbgrader_lines(course_id, exchange)),
        dict.fromkeys(hidden_extensions, False),
        dict.fromkeys(hidden_plugins, True),
    )


def instructor_config(
    course_dir: str, exchange: Path | None = None, course_id: str = COURSE_ID, hub: bool = False
) -> RoleConfig:
    """Everything on, and nbgrader pointed at the course directory.

    ``course_dir`` may start with ``~``: it is expanded by each instructor's own server, so one
    configuration directory serves every instructor of a hub. The formgrader needs it inside the
    directory JupyterLab serves (the home directory on a hub).

    On a ``hub`` the formgrader does not print its configuration on the Manage Assignments page:
    JupyterHub's single-user server puts a class object (its identity provider) into it, so the
    formgrader would log "Formgrader config is not serializable" on every visit.
    """
    lines = _nbgrader_lines(course_id, exchange)
    lines.append(f"c.CourseDirectory.root = os.path.expanduser({course_dir!r})")
    if hub:
        lines.append("c.FormgradeExtension.debug = False")
    return RoleConfig(
        ("import os", *lines),
        dict.fromkeys(INSTRUCTOR_SERVER_EXTENSIONS + EXCHANGE_SERVER_EXTENSIONS, True),
        dict.fromkeys(INSTRUCTOR_LAB_PLUGINS + EXCHANGE_LAB_PLUGINS, False),
    )


def _merge_json(path: Path, update: dict) -> None:
    """Deep-merge ``update`` into the JSON object in ``path`` (created if missing)."""

    def merge(into: dict, new: dict) -> dict:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
        return into

    data = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(data, dict):
        raise ClassroomError(f"{path} does not hold a JSON object; fix or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merge(data, update), indent=2, sort_keys=True) + "\n")


def write_config(dest: Path, role: RoleConfig) -> list[Path]:
    """Write ``role`` into the Jupyter configuration directory ``dest``; returns the files.

    Files are world-readable: every account of the class loads them.
    """
    dest = Path(dest)
    nbgrader_file = dest / "nbgrader_config.py"
    if nbgrader_file.exists() and MARKER not in nbgrader_file.read_text():
        raise ClassroomError(
            f"{nbgrader_file} exists and was not written by course_tools.classroom; add these "
            "lines to it yourself:\n    " + "\n    ".join(role.nbgrader_lines)
        )
    dest.mkdir(parents=True, exist_ok=True)
    nbgrader_file.write_text(
        "\n".join([MARKER, "c = get_config()  # noqa: F821", *role.nbgrader_lines]) + "\n"
    )
    server_file = dest / "jupyter_server_config.json"
    _merge_json(server_file, {"ServerApp": {"jpserver_extensions": role.server_extensions}})
    page_file = dest / "labconfig" / "page_config.json"
    _merge_json(page_file, {"disabledExtensions": role.lab_plugins_disabled})
    written = [nbgrader_file, server_file, page_file]
    for path in [dest, page_file.parent]:
        path.chmod(0o755)
    for path in written:
        path.chmod(0o644)
    return written


def write_hub_configs(
    class_dir: Path, exchange: Path, course_dir: str = "~/cnn-course", course_id: str = COURSE_ID
) -> dict[str, Path]:
    """``class_dir/jupyter/{student,instructor}``: the two config directories a hub hands out.

    Instructors read both (`role_config_path`), so what only the hub needs goes into the
    student directory.
    """
    dirs = {
        "student": Path(class_dir) / "jupyter" / "student",
        "instructor": Path(class_dir) / "jupyter" / "instructor",
    }
    write_config(dirs["student"], student_config(exchange, course_id))
    write_config(dirs["instructor"], instructor_config(course_dir, exchange, course_id, hub=True))
    # JupyterLab's terminals on a hub start a login shell, whose /etc/profile replaces PATH: the
    # course's python and nbgrader would be missing there. A plain bash keeps the server's PATH.
    _merge_json(
        dirs["student"] / "jupyter_server_config.json",
        {"ServerApp": {"terminado_settings": {"shell_command": ["/bin/bash"]}}},
    )
    return dirs


def role_config_path(role: str, dirs: dict[str, Path]) -> str:
    """``JUPYTER_CONFIG_PATH`` of a role: instructors read their directory, then the students'."""
    order = ["instructor", "student"] if role == "instructor" else ["student"]
    return os.pathsep.join(str(dirs[name]) for name in order)


# --- command line --------------------------------------------------------------------------


def _default_config_dir() -> Path:
    """This environment's own Jupyter config directory (``<sys.prefix>/etc/jupyter``)."""
    return Path(sys.prefix) / "etc" / "jupyter"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.classroom",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    exchange = commands.add_parser("exchange", help="create the shared exchange directory")
    exchange.add_argument("root", type=Path)
    exchange.add_argument("--instructor", help="the account that releases (default: you)")
    for name, helptext in [
        ("student-config", "hide the instructor tools (and, without --exchange, the exchange)"),
        ("instructor-config", "all nbgrader tools, pointed at the course directory"),
    ]:
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument(
            "dest",
            type=Path,
            nargs="?",
            default=_default_config_dir(),
            help="Jupyter config directory to write (default: this environment's, %(default)s)",
        )
        sub.add_argument("--exchange", type=Path, help="the exchange root, if the class has one")
        if name == "instructor-config":
            sub.add_argument("--course-dir", required=True, help="the course directory (~ allowed)")
    args = parser.parse_args(argv)
    try:
        if args.command == "exchange":
            course = create_exchange(args.root, args.instructor)
            print(f"exchange ready: {args.root} (mode 1777), {course} owned by its instructor")
            return 0
        if args.command == "student-config":
            role = student_config(args.exchange)
        else:
            role = instructor_config(args.course_dir, args.exchange)
        for path in write_config(args.dest, role):
            print(f"wrote {path}")
    except ClassroomError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("restart JupyterLab to apply it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
