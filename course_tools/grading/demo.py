"""`python -m course_tools.grading demo`: grade the shipped example submissions in a scratch course.

An existing ``demo_course/`` is moved aside to ``demo_course.bak-<timestamp>``, never deleted.
"""

from __future__ import annotations

from pathlib import Path

from course_tools.grading.course import DEMO_DIR, EXAMPLES_DIR, REPO_ROOT, new_course
from course_tools.grading.export import grade_table
from course_tools.grading.gradebook import move_aside, read_scores
from course_tools.grading.release import expected_scores
from course_tools.grading.runner import GradingRun, grade_course, timing_table


def demo(
    repo_root: Path = REPO_ROOT, course_dir: Path | None = None, jobs: int | None = None
) -> GradingRun:
    """Grade the shipped example submissions in a fresh ``demo_course/`` and print the grades.

    ``jobs``: grade that many submissions at once in long-lived workers (`parallel`); None
    for one `nbgrader autograde` process per submission.
    """
    repo_root = Path(repo_root)
    course_dir = Path(course_dir) if course_dir else repo_root / DEMO_DIR
    backup = move_aside(course_dir)
    if backup:
        print(f"moved the previous {course_dir.name}/ to {backup.name}/")
    new_course(course_dir, repo_root)
    run = grade_course(course_dir, repo_root / EXAMPLES_DIR / "submissions", jobs=jobs)
    scores = read_scores(course_dir)
    print()
    print("Grades (autograded score/max; written answers wait for a human grader):")
    print(grade_table(scores, run.assignments))
    wrong = [
        f"{student} {assignment}: {scores[(student, assignment)].auto_score:g}, expected {points:g}"
        for (student, assignment), points in expected_scores(repo_root, run.assignments).items()
        if (student, assignment) in scores and scores[(student, assignment)].auto_score != points
    ]
    print("UNEXPECTED: " + "; ".join(wrong) if wrong else "every example got its expected score")
    for (student, assignment), score in sorted(scores.items()):
        if score.flagged or score.incomplete:
            print(f"{student} {assignment}: {score.status}. {score.note}".rstrip())
    print()
    if jobs is None:
        print("Autograde time per notebook (seconds, including nbgrader and kernel start-up):")
    else:
        print(f"Autograde time per notebook (seconds, {jobs} worker(s), kernels started ahead):")
    print(timing_table(run))
    print()
    print(f"feedback:   {course_dir / 'feedback'}/<student>/<ps>/<ps>.html")
    print(f"grades CSV: {run.csv_path}")
    print(f"gradebook:  {course_dir / 'gradebook.db'} (written answers: `nbgrader formgrader`)")
    if run.failures:
        print(f"FAILED: {', '.join(run.failures)} (see the messages above)")
    return run
