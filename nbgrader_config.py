"""nbgrader configuration of the CNN course (the course root is the directory holding this file).

    solutions/<ps>/<ps>.ipynb     source notebooks (reference solutions, visible + hidden tests)
    assignments/<ps>/<ps>.ipynb   student release, written only by `nbgrader generate_assignment`
    submitted/<student>/<ps>/     collected work (never modified by grading)
    autograded/, feedback/        written by `nbgrader autograde` / `nbgrader generate_feedback`

`python -m course_tools.grading release` regenerates the release; `... demo` grades the shipped
example submissions in a scratch copy of the course (demo_course/).
"""

from pathlib import Path

import nbgrader

import course_tools

c = get_config()  # noqa: F821 (injected by traitlets when it loads this file)

# --- course layout -------------------------------------------------------------------------
c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# The gradebook lists the assignments and students: `course_tools.grading` adds them through the
# Gradebook API (nbgrader 0.9 has no `db_assignments` / `db_students` options any more).

# --- what students get ---------------------------------------------------------------------
c.ClearSolutions.code_stub = {
    "python": (
        "# YOUR CODE HERE\n"
        'raise NotImplementedError("Replace this line with your code: the docstring and the '
        'instructions above say what it must do.")'
    )
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# The grading rubric of a written answer sits in the locked question cell above it, between
# `=== BEGIN MARK SCHEME ===` and `=== END MARK SCHEME ===`: cut from the release (and from the
# feedback below), restored for the grader in the autograded notebook the formgrader shows.
# nbgrader would only allow mark schemes in "task" cells; a locked cell with a grade_id is
# restored just as well (tests/test_release.py checks every rubric sits in one).
c.ClearMarkScheme.enforce_metadata = False

# --- autograding: untrusted code, run in a sandbox (README: "Grading safely") ----------------
# nbgrader's steps plus the course's. Before anything runs: huge cells cut, pasted copies of test
# cells repaired, RestoreHiddenRegions before OverwriteCells (an untouched released test cell gets
# its hidden tests back silently, so "checksum has changed" means real tampering;
# course_tools/hidden_regions.py, nbgrader#1961), and the static submission policy checked. Then
# every kernel runs in a bubblewrap sandbox (GradingExecute -> SandboxedKernelManager), and the
# grading notes go into the graded notebook (the points of a policy violation held for review).
# Preprocessors are named by import path: the formgrader shows its configuration as JSON, which
# class objects are not.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "course_tools.grading.preprocessors.LimitCellSources",
    "course_tools.grading.preprocessors.RepairDuplicateCells",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "course_tools.hidden_regions.RestoreHiddenRegions",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
    "course_tools.grading.preprocessors.CheckSubmissionPolicy",
]
c.Autograde.autograde_preprocessors = [
    "course_tools.grading.execute.GradingExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "course_tools.grading.preprocessors.ReportGrading",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# A test cell the student deleted is put back (and run), rather than silently missing.
c.OverwriteCells.add_missing_cells = True

# Limits of each notebook's sandbox (defaults shown; raise them for heavier assignments).
c.SandboxedKernelManager.memory_limit = 2 * 1024**3  # bytes, whole sandbox
c.SandboxedKernelManager.process_limit = 256  # processes + threads
c.SandboxedKernelManager.cpu_time_limit = 1200  # CPU seconds per process
c.SandboxedKernelManager.file_size_limit = 64 * 1024**2  # bytes per file written
c.SandboxedKernelManager.disk_limit = 256 * 1024**2  # bytes of each writable tmpfs ($HOME, /tmp)
# Without bubblewrap grading refuses to run; only for trusted submissions:
# c.SandboxedKernelManager.allow_unsandboxed = True
c.GradingExecute.notebook_timeout = 600  # wall-clock seconds for a whole notebook
c.GradingExecute.max_output_bytes_per_cell = 500_000
c.GradingExecute.max_output_bytes_per_notebook = 5_000_000
c.LimitCellSources.max_markdown_bytes = 100_000

# Seconds per cell. Every test cell is meant to finish well under 30 s on a 2-core CPU; the
# training notebook shortens its schedule when NBGRADER_EXECUTION is set. 120 s leaves room for
# slow machines without letting an endless student loop hang the grader.
c.Execute.timeout = 120

# nbgrader gives a test cell 0 points as soon as it has *any* stderr output, so a harmless
# UserWarning or a tqdm bar would cost a student the cell. In this course a failed test always
# raises (an `error` output, which IgnorePattern never touches), so stderr carries only noise:
# drop every stderr stream from executed cells before the grades are saved. IgnorePattern is
# part of the autograde pipeline but disabled by default.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?s).*"

# --- submission policy ---------------------------------------------------------------------
# course_tools.policy checks every student code cell before grading runs it (threat model and
# rules: docs/grading-policy.md; defaults: course_tools/policy/config.py). numpy computes a
# convolution outside PyTorch's dispatcher, where the hidden tests' operator checks cannot see it.
# Problem set 5's locked data cell drops the 1,000 held-out digits; loading the set again would let
# a student train on the digits that grade them.
c.SubmissionPolicy.assignment_denied_names = {
    "ps1_convolution": ["numpy.convolve", "numpy.correlate"],
    "ps5_train_cnn": ["course_lib.data.load_mnist_5k"],
}

# --- grade export --------------------------------------------------------------------------
# nbgrader's CSV columns plus status, held_score and review_note (points held for review are
# not counted in raw_score until a person confirms them; an unfinished autograde is not a 0).
c.ExportApp.plugin_class = "course_tools.grading.export.CourseCsvExportPlugin"

# --- feedback ------------------------------------------------------------------------------
# The autograded notebook holds the full test cells (nbgrader restores them from the source),
# so the default feedback HTML would reveal the hidden tests. Strip their source, and cut the
# tracebacks of test cells down to the error message: IPython prints the lines around the
# failing line, which may be hidden asserts. Whatever the student printed, RedactSecrets replaces
# each output line that holds a hidden-test or reference-solution line.
# Named by import path, not as classes: the formgrader shows its configuration as JSON and logs
# "Formgrader config is not serializable" for class objects.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "course_tools.feedback.HideHiddenTestTracebacks",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "course_tools.feedback.RedactSecrets",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# --- formulas offline ----------------------------------------------------------------------
# Feedback HTML and formgrader pages load MathJax from the Jupyter server (jupyter_server_mathjax)
# instead of a CDN: course_tools/templates/base/mathjax.html.j2 replaces nbconvert's macro. It must
# come before nbgrader's own templates, which are listed again here because setting this option
# replaces nbgrader's default.
c.HTMLExporter.extra_template_basedirs = [
    str(Path(course_tools.__file__).parent / "templates"),
    str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"),
]
