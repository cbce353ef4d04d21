"""Autograde seconds per notebook with and without the grading sandbox, measured in one run.

    python benchmarks/sandbox_overhead.py            # every assignment's complete example, 2 rounds
    python benchmarks/sandbox_overhead.py --rounds 3 --assignments ps1_convolution ps4_optimizers

Two scratch courses are built from the repository: one with the course's nbgrader_config.py
(every kernel in the bubblewrap sandbox, `GradingExecute`), one whose autograde step uses
nbgrader's stock ``Execute`` instead (no sandbox; the kernel killed when done, as
`GradingExecute` does, so that only the sandbox differs). Each round grades
the complete example of every assignment in both, alternating which goes first, with
`nbgrader autograde <ps> --student=<s> --force` timed from outside (nbgrader and kernel start-up
included, as the demo table reports). Prints the seconds, the ratio per notebook and the median
ratio (target: under 1.2), with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from course_tools import grading

UNSANDBOXED = """
# --- benchmarks/sandbox_overhead.py: nbgrader's stock Execute, no sandbox ------------------
# The course's config names its steps by import path (the formgrader shows them as JSON).
_SANDBOXED = "course_tools.grading.execute.GradingExecute"
if _SANDBOXED not in c.Autograde.autograde_preprocessors:
    raise RuntimeError(f"nbgrader_config.py no longer runs {_SANDBOXED}: update this benchmark")
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute" if p == _SANDBOXED else p
    for p in c.Autograde.autograde_preprocessors
]
# GradingExecute kills a finished kernel at once; do the same so only the sandbox differs.
c.Execute.shutdown_kernel = "immediate"
"""
STUDENT = "example-complete"


def _course(root: Path, name: str, assignments: list[str], sandboxed: bool) -> Path:
    course = grading.new_course(root / name, assignments=assignments)
    if not sandboxed:
        with open(course / grading.CONFIG_FILE, "a") as fh:
            fh.write(UNSANDBOXED)
    grading.generate_release(course, assignments)
    examples = grading.REPO_ROOT / grading.EXAMPLES_DIR / "submissions"
    grading.copy_submissions(examples, course, assignments)
    grading.register(course, assignments, [STUDENT])
    return course


def _grade(course: Path, assignment: str) -> float:
    start = time.perf_counter()
    grading.run_nbgrader(course, "autograde", assignment, f"--student={STUDENT}", "--force")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--assignments", nargs="*", default=None)
    args = parser.parse_args()
    assignments = args.assignments or grading.list_assignments()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        courses = {
            "sandbox": _course(Path(tmp), "sandbox", assignments, sandboxed=True),
            "plain": _course(Path(tmp), "plain", assignments, sandboxed=False),
        }
        seconds: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for assignment in assignments:
                order = ["sandbox", "plain"] if round_ % 2 == 0 else ["plain", "sandbox"]
                for kind in order:
                    seconds.setdefault((kind, assignment), []).append(
                        _grade(courses[kind], assignment)
                    )
        sandboxed_scores = grading.read_scores(courses["sandbox"])
        plain_scores = grading.read_scores(courses["plain"])
    print(f"load average after:  {os.getloadavg()}")
    print(f"\n{'assignment':24s} {'plain s':>8s} {'sandbox s':>10s} {'ratio':>6s}  score")
    ratios = []
    for assignment in assignments:
        plain = statistics.median(seconds[("plain", assignment)])
        boxed = statistics.median(seconds[("sandbox", assignment)])
        ratios.append(boxed / plain)
        same = (
            sandboxed_scores[(STUDENT, assignment)].auto_score
            == plain_scores[(STUDENT, assignment)].auto_score
        )
        print(
            f"{assignment:24s} {plain:8.1f} {boxed:10.1f} {boxed / plain:6.2f}  "
            f"{sandboxed_scores[(STUDENT, assignment)].summary()}{'' if same else ' (DIFFERS)'}"
        )
    print(f"\nmedian ratio sandbox / plain: {statistics.median(ratios):.2f} (target < 1.2)")


if __name__ == "__main__":
    main()
