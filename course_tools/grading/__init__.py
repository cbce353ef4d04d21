"""The nbgrader pipeline of the course: release, example submissions, autograde, feedback, grades.

    python -m course_tools.grading release              # regenerate assignments/ and the examples
    python -m course_tools.grading examples             # only examples/submissions/
    python -m course_tools.grading autograde <ps>       # grade the collected submissions of <ps>
    python -m course_tools.grading demo                 # grade the examples in demo_course/
    python -m course_tools.grading export               # grades-<format>.csv for the class

One module per concern:

    course     course directories, the `nbgrader` subprocess (venv bin on PATH for `alembic`)
    release    the student release and the example submissions made from it
    gradebook  registering students, reading scores, manual grades, backups
    runner     autograding, one submission at a time, and a whole course (`grade_course`)
    export     grades.csv, feedback pages, plain-text tables
    demo       the demo course
    cli        the command line

Grading at scale (README: "Grading at scale"):

    workers      the long-lived worker: nbgrader's Autograde in-process, kernels started ahead
    parallel     many submissions at once in worker processes (``autograde <ps> --jobs N``)
    distributed  the same workers on a Dask cluster (``autograde <ps> --scheduler ADDRESS``)
    database     where the gradebook lives (SQLite or a server), copies, concurrent writers
    postgres     a PostgreSQL gradebook: URLs, creating the database, a throwaway server
    bulk_export  grades out fast: per assignment, per problem, Canvas, Moodle (``export``)
    synthetic    synthetic classes and gradebooks for the tests and benchmarks

Scores are read back from the gradebook (never from exit codes: `nbgrader validate` exits 0 even
when tests fail). Nothing here deletes student work or grades.
"""

from course_tools.grading.course import (
    CONFIG_FILE,
    COURSE_ID,
    DEMO_DIR,
    EXAMPLES_DIR,
    RELEASE_DIR,
    REPO_ROOT,
    SOURCE_DIR,
    GradingError,
    find_course_root,
    list_assignments,
    new_course,
    release_notebook,
    run_nbgrader,
    source_notebook,
)
from course_tools.grading.demo import demo
from course_tools.grading.export import (
    export_grades,
    generate_feedback,
    grade_table,
    read_grades_csv,
)
from course_tools.grading.gradebook import (
    SubmissionScore,
    backup_gradebook,
    gradebook,
    move_aside,
    read_scores,
    register,
    set_manual_grade,
)
from course_tools.grading.release import (
    EXAMPLE_STUDENTS,
    SPEC_STUDENTS,
    copy_submissions,
    expected_scores,
    generate_release,
    make_examples,
    release,
    spec_file,
)
from course_tools.grading.runner import (
    GradingRun,
    autograde,
    autograde_assignment,
    grade_course,
    submitted_students,
    timing_table,
)

__all__ = [
    "COURSE_ID",
    "CONFIG_FILE",
    "DEMO_DIR",
    "EXAMPLES_DIR",
    "EXAMPLE_STUDENTS",
    "RELEASE_DIR",
    "REPO_ROOT",
    "SOURCE_DIR",
    "SPEC_STUDENTS",
    "GradingError",
    "GradingRun",
    "SubmissionScore",
    "autograde",
    "autograde_assignment",
    "backup_gradebook",
    "copy_submissions",
    "demo",
    "find_course_root",
    "expected_scores",
    "export_grades",
    "generate_feedback",
    "generate_release",
    "grade_course",
    "grade_table",
    "gradebook",
    "list_assignments",
    "make_examples",
    "move_aside",
    "new_course",
    "read_grades_csv",
    "read_scores",
    "register",
    "release",
    "release_notebook",
    "run_nbgrader",
    "set_manual_grade",
    "source_notebook",
    "spec_file",
    "submitted_students",
    "timing_table",
]
