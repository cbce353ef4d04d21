"""The first code a grading kernel runs, inside its sandbox: limits, private files, then ipykernel.

    python -P -s -m course_tools.sandbox_kernel --limits '{"RLIMIT_CPU": 1200, ...}' \\
        --copy-from /tmp/course-sandbox-x/submission -f /tmp/course-sandbox-x/kernel.json

`course_tools.grading.sandbox.SandboxedKernelManager` starts it (inside bubblewrap when it can).
It stays small and imports nothing of the course: it runs before any student code.

1. Resource limits (`resource.setrlimit`) are set here, inside the sandbox's new user
   namespace, so that RLIMIT_NPROC counts only this sandbox's processes, not every process of
   the user on the machine.
2. The submission's files are copied from the read-only staging folder into the working
   folder (a size-limited tmpfs in the sandbox), so the kernel works on a private copy.
3. The kernel starts with no current-folder entry on ``sys.path`` (`python -P`, and IPython's
   ``ignore_cwd``): a submitted ``torch.py``, ``course_lib/`` or ``ipykernel_launcher.py`` can
   never shadow an installed module.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys


def apply_limits(limits: dict[str, int]) -> None:
    """``setrlimit`` each ``RLIMIT_<NAME>: value`` (soft = hard, so the code cannot raise it)."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def copy_submission(source: str, dest: str) -> None:
    """Copy the staged submission files into the (writable, private) working folder."""
    shutil.copytree(source, dest, symlinks=False, dirs_exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -P -m course_tools.sandbox_kernel")
    parser.add_argument("--limits", default="{}", help="JSON {RLIMIT_NAME: value}")
    parser.add_argument("--copy-from", help="read-only folder with the submission's files")
    args, kernel_args = parser.parse_known_args(argv)
    if args.copy_from:
        copy_submission(args.copy_from, os.getcwd())
    apply_limits(json.loads(args.limits))
    # ipykernel exits when its parent process is gone or is PID 1; in the sandbox's PID namespace
    # its parent *is* PID 1 (bubblewrap's init). `--die-with-parent` ties it to the grader instead.
    os.environ.pop("JPY_PARENT_PID", None)
    # `-P` keeps the current folder off sys.path; drop any '' a PYTHONPATH may have added.
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]

    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance(argv=[*kernel_args, "--IPKernelApp.ignore_cwd=True"])


if __name__ == "__main__":
    main()
