"""A week of the class in a browser: JupyterHub on loopback, headless Chromium, real accounts.

The steps run in order (one story; after a failed step the later ones xfail):

1. the instructor generates the student version of ps1 and ps3 and releases them (formgrader);
2. a student sees the Assignments panel and none of the instructor's tools;
3. Ada fetches ps1, runs the blank notebook, Validate lists the failures, she submits;
4. Ben's complete ps1 runs cleanly and passes Validate; he submits ps1 and ps3;
5. the instructor collects in the formgrader and autogrades in a JupyterLab terminal with the
   course's grading command;
6. the instructor grades Ben's written answer in the formgrader (formulas typeset offline);
7. the instructor generates and releases feedback from the formgrader;
8. the students fetch their feedback and read it in JupyterLab, formulas typeset;
9. lecture 1's convolution explorer redraws when a slider moves;
and no request ever left 127.0.0.1.

Takes a few minutes (three JupyterLabs, several kernels); see tests/browser/conftest.py for what
it needs. Screenshots: test-artifacts/browser/.
"""

from __future__ import annotations

import re
import time

import pytest
from jupyterlab_ui import (
    CURRENT_NOTEBOOK,
    assignment_row,
    close_dialog,
    current_tab_is_dirty,
    dialog_text,
    error_outputs,
    formgrader_action,
    menu,
    menu_items,
    open_assignments,
    open_notebook,
    prompts,
    run_all,
    screenshot,
    sidebar_tabs,
    wait_for_mathjax,
)
from playwright.sync_api import expect

from course_tools import grading

pytestmark = [pytest.mark.slow, pytest.mark.incremental]

PS1, PS3 = "ps1_convolution", "ps3_resnet"
TEACHER, ADA, BEN = "hub-teacher", "hub-ada", "hub-ben"
EXAMPLES = grading.REPO_ROOT / grading.EXAMPLES_DIR / "submissions"
# The course's grading command, as the instructor types it in a terminal of their JupyterLab
# (docs/instructor-guide.md: the course environment is on PATH there, and nbgrader finds
# ~/cnn-course from any directory).
GRADING_COMMAND = "python -m course_tools.grading autograde {assignment}"


def _score_pattern(points: float, out_of: float) -> str:
    """The feedback header's "Score: 28.0 / 30.0", for these numbers."""
    return rf"Score:\s*{points:g}(\.0)?\s*/\s*{out_of:g}(\.0)?\b"


def _account(hub, name):
    course = hub.course
    return next(a for a in [course.instructor, *course.students] if a.name == name)


def test_1_instructor_generates_and_releases_from_the_formgrader(hub, sessions):
    formgrader = sessions.tab(TEACHER, hub.user_url(TEACHER, "formgrader/manage_assignments"))
    for assignment in (PS1, PS3):
        result = formgrader_action(formgrader, assignment, "assign")  # the "Generate" column
        assert "Successfully" in result, result
        generated = hub.course.course_dir / "assignments" / assignment / f"{assignment}.ipynb"
        assert "### BEGIN HIDDEN TESTS" not in generated.read_text()
        result = formgrader_action(formgrader, assignment, "release")
        assert f"Successfully released '{assignment}'" in result, result
        released = hub.course.exchange / grading.COURSE_ID / "outbound" / assignment
        assert (released / f"{assignment}.ipynb").is_file()
    screenshot(formgrader, "1-formgrader-released")


def test_2_students_see_assignments_and_no_instructor_tools(hub, sessions):
    page = sessions.page(ADA)
    assert menu_items(page, "Nbgrader") == ["Assignment List"]
    assert not any("Create Assignment" in tab for tab in sidebar_tabs(page)), sidebar_tabs(page)
    open_assignments(page)
    panel = page.inner_text(".nbgrader-AssignmentList, #jp-main-dock-panel")
    assert "Error" not in panel and "does not exist" not in panel, panel
    for assignment in (PS1, PS3):
        assert page.query_selector(assignment_row("released", assignment)), panel
    screenshot(page, "2-student-assignments")
    formgrader = page.context.request.get(hub.user_url(ADA, "formgrader/manage_assignments"))
    assert formgrader.status == 404, "a student's server serves the formgrader"


def test_3_blank_notebook_fails_validate_and_is_submitted(hub, sessions):
    page = sessions.page(ADA)
    open_assignments(page)
    page.click(f"{assignment_row('released', PS1)} button:text-is('Fetch')")
    page.wait_for_selector(assignment_row("fetched", PS1))
    open_notebook(page, f"{PS1}/{PS1}.ipynb")
    assert not current_tab_is_dirty(page), "the notebook opens as modified (kernel metadata?)"
    run_all(page)
    assert any("NotImplementedError" in e for e in error_outputs(page)), prompts(page)
    page.click(f"{CURRENT_NOTEBOOK} .jp-Toolbar-item:has-text('Validate')")
    result = dialog_text(page)
    screenshot(page, "3-validate-blank")
    assert "failed" in result and "NotImplementedError" in result, result
    close_dialog(page)
    open_assignments(page)
    page.click(f"{assignment_row('fetched', PS1)} button:text-is('Submit')")
    page.wait_for_selector(assignment_row("submitted", PS1))
    inbound = hub.course.exchange / grading.COURSE_ID / "inbound"
    assert any(p.name.startswith(f"{ADA}+{PS1}+") for p in inbound.iterdir())


def test_4_complete_notebook_passes_validate_and_is_submitted(hub, sessions):
    page = sessions.page(BEN)
    ben = _account(hub, BEN)
    open_assignments(page)
    for assignment in (PS1, PS3):
        page.click(f"{assignment_row('released', assignment)} button:text-is('Fetch')")
        page.wait_for_selector(assignment_row("fetched", assignment))
        # Ben's work: the reference solution, written into his copy (as if he typed it).
        notebook = ben.home / assignment / f"{assignment}.ipynb"
        notebook.write_bytes(
            (EXAMPLES / "example-complete" / assignment / notebook.name).read_bytes()
        )
    open_notebook(page, f"{PS1}/{PS1}.ipynb")
    seconds = run_all(page)
    assert error_outputs(page) == [], f"the complete {PS1} raised in the browser"
    page.click(f"{CURRENT_NOTEBOOK} .jp-Toolbar-item:has-text('Validate')")
    result = dialog_text(page)
    screenshot(page, "4-validate-complete")
    assert "Success! Your notebook passes all the tests." in result, result
    close_dialog(page)
    open_assignments(page)
    for assignment in (PS1, PS3):
        page.click(f"{assignment_row('fetched', assignment)} button:text-is('Submit')")
        page.wait_for_selector(assignment_row("submitted", assignment))
    print(f"Ben's complete {PS1} ran in {seconds:.1f} s in the browser")


def test_5_instructor_collects_and_autogrades(hub, sessions):
    course = hub.course
    formgrader = sessions.tab(TEACHER, hub.user_url(TEACHER, "formgrader/manage_assignments"))
    for assignment in (PS1, PS3):
        result = formgrader_action(formgrader, assignment, "collect")
        assert "Successfully collected" in result, result
    for student, assignment in [(ADA, PS1), (BEN, PS1), (BEN, PS3)]:
        submitted = course.course_dir / "submitted" / student / assignment / f"{assignment}.ipynb"
        assert submitted.is_file(), f"collect did not bring {student}'s {assignment}"
    # Autograde with the course's command, typed in a terminal of the instructor's JupyterLab.
    page = sessions.page(TEACHER)
    # (What students must not see is there for the instructor: the check of step 2 can fail.)
    assert any("Create Assignment" in tab for tab in sidebar_tabs(page)), sidebar_tabs(page)
    assert "Formgrader" in menu_items(page, "Nbgrader")
    menu(page, "File", "New")
    page.click(".lm-Menu-itemLabel:text-is('Terminal')")
    page.wait_for_selector(".jp-Terminal .xterm-screen")
    page.click(".jp-Terminal .xterm-screen")
    status_file = course.instructor.home / "autograde-exit-status"
    commands = " && ".join(GRADING_COMMAND.format(assignment=a) for a in (PS1, PS3))
    page.keyboard.type(f"{commands}; echo $? > {status_file}\n")
    deadline = time.monotonic() + 600
    while not status_file.exists() or not status_file.read_text().strip():
        assert time.monotonic() < deadline, "autograde did not finish in 10 minutes"
        time.sleep(2)
    screenshot(page, "5-autograde-terminal")
    assert status_file.read_text().strip() == "0", "the grading command failed (see screenshot)"
    scores = grading.read_scores(course.course_dir)
    expected = grading.expected_scores(grading.REPO_ROOT, [PS1, PS3])
    assert scores[(ADA, PS1)].auto_score == expected[("example-blank", PS1)] == 0
    assert scores[(BEN, PS1)].auto_score == expected[("example-complete", PS1)]
    assert scores[(BEN, PS3)].auto_score == expected[("example-complete", PS3)]
    assert scores[(BEN, PS3)].manual_pending > 0, "ps3's written answer should wait for a person"


def test_6_instructor_grades_a_written_answer_with_formulas_offline(hub, sessions):
    formgrader = sessions.tab(TEACHER, hub.user_url(TEACHER, f"formgrader/gradebook/{PS3}/{PS3}"))
    formgrader.click("table tbody tr td a:has-text('Submission')")
    formgrader.wait_for_selector("#notebook-container")
    mathjax = wait_for_mathjax(formgrader)
    assert mathjax["errors"] == 0 and mathjax["rendered"] > 0, mathjax
    assert all("/static/jupyter_server_mathjax/" in src for src in mathjax["src"]), mathjax
    answer = formgrader.locator(
        ".nbgrader_cell:has(#written_answer) input.score, div:has(> #written_answer) input.score"
    ).first
    answer.fill("2")
    answer.press("Tab")
    formgrader.wait_for_selector(".score-saved:visible")
    answer.scroll_into_view_if_needed()
    formgrader.wait_for_timeout(1000)  # the formgrader scrolls to the next field
    answer.scroll_into_view_if_needed()
    screenshot(formgrader, "6-formgrader-written-answer")
    scores = grading.read_scores(hub.course.course_dir)
    assert scores[(BEN, PS3)].manual_score == 2 and scores[(BEN, PS3)].manual_pending == 0


def test_7_instructor_generates_and_releases_feedback(hub, sessions):
    formgrader = sessions.tab(TEACHER, hub.user_url(TEACHER, "formgrader/manage_assignments"))
    for assignment in (PS1, PS3):
        result = formgrader_action(formgrader, assignment, "generate-feedback")
        assert "Successfully generated feedback" in result, result
        result = formgrader_action(formgrader, assignment, "release-feedback")
        assert "Successfully released feedback" in result, result
    feedback = hub.course.exchange / grading.COURSE_ID / "feedback"
    assert len(list(feedback.glob("*.html"))) == 3  # Ada's ps1, Ben's ps1 and ps3


def test_8_students_read_their_feedback_with_formulas(hub, sessions):
    # Ben: Fetch Feedback, "(view feedback)", open the HTML in JupyterLab, trust it.
    page = sessions.page(BEN)
    open_assignments(page)
    row = assignment_row("submitted", PS3)
    page.click(f"{row} button:text-is('Fetch Feedback')")
    page.click(f"{row} a:has-text('view feedback')")
    page.dblclick(f".jp-DirListing-item:has-text('{PS3}.html')")
    # JupyterLab shows HTML files without running their scripts until the reader trusts them.
    page.click(
        ".jp-HTMLViewer-toolbar .jp-Toolbar-item:has-text('Trust HTML'), "
        ".jp-Toolbar-item:has-text('Trust HTML')"
    )
    feedback = page.wait_for_selector(".jp-HTMLViewer:not(.lm-mod-hidden) iframe").content_frame()
    mathjax = wait_for_mathjax(feedback)
    screenshot(page, "8-feedback-in-jupyterlab")
    assert mathjax["errors"] == 0 and mathjax["rendered"] > 0, mathjax
    text = feedback.inner_text("body")
    # The feedback's total is what the gradebook holds: autograded points plus the 2 given by
    # hand in step 6, out of all the points of the problem set.
    scores = grading.read_scores(hub.course.course_dir)
    ben = scores[(BEN, PS3)]
    expected = _score_pattern(ben.counted_score, ben.auto_max + ben.manual_max)
    assert re.search(expected, text), text[:500]
    # Ada: her ps1 feedback, opened in a browser tab from her server.
    ada = sessions.page(ADA)
    open_assignments(ada)
    ada.click(f"{assignment_row('submitted', PS1)} button:text-is('Fetch Feedback')")
    ada.wait_for_selector(f"{assignment_row('submitted', PS1)} a:has-text('view feedback')")
    (html_file,) = (_account(hub, ADA).home / PS1 / "feedback").glob(f"*/{PS1}.html")
    relative = html_file.relative_to(_account(hub, ADA).home)
    tab = sessions.tab(ADA, hub.user_url(ADA, f"files/{relative}"))
    mathjax = wait_for_mathjax(tab)
    assert mathjax["errors"] == 0 and mathjax["rendered"] > 0, mathjax
    ada_ps1 = scores[(ADA, PS1)]
    assert re.search(_score_pattern(0, ada_ps1.auto_max), tab.inner_text("body"))


def test_9_lecture_widget_redraws_when_a_slider_moves(hub, sessions):
    page = sessions.page(ADA)
    open_notebook(page, "lectures/01_convolution.ipynb")
    seconds = run_all(page, timeout_s=600)
    explorer = page.locator(f"{CURRENT_NOTEBOOK} .widget-interact").first
    # The interact output is redrawn on every change: locators, not element handles.
    expect(explorer).to_contain_text("output shape (24, 24); rule gives 24x24", timeout=60_000)
    stride = explorer.locator(".widget-slider:has(.widget-label:text-is('stride'))")
    # stride 2 -> 3: floor((48 + 4 - 5) / 3) + 1 = 16. After "Run All" the notebook shows its
    # last cell and still has the keyboard: bring the slider into view and give its handle the
    # focus (again, if JupyterLab took it back before the key arrived) until the value moves.
    handle = stride.locator(".noUi-handle")
    for _attempt in range(3):
        handle.scroll_into_view_if_needed()
        handle.click()
        page.keyboard.press("ArrowRight")
        if stride.locator(".widget-readout").inner_text().strip() != "2":
            break
        page.wait_for_timeout(1000)
    expect(stride).to_contain_text("3")
    expect(explorer).to_contain_text("output shape (16, 16); rule gives 16x16", timeout=60_000)
    expect(explorer).not_to_contain_text("(24, 24)")
    screenshot(page, "9-lecture-explorer-stride-3")
    print(f"lecture 1 ran in {seconds:.0f} s in the browser")


def test_nothing_left_loopback_and_the_hub_log_is_clean(hub):
    assert hub.external_requests == [], hub.external_requests
    log = hub.log.read_text()
    assert "Formgrader config is not serializable" not in log
