"""A week of the class in a browser: JupyterHub on loopback, headless Chromium, real accounts.

The steps run in order (one story; after a failed step the later ones xfail):

1. the instructor releases ps1 and ps3 from the formgrader;
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
import sys

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
    wait_for_mathjax,
    wait_kernel_idle,
)

from course_tools import grading

pytestmark = [pytest.mark.slow, pytest.mark.incremental]

PS1, PS3 = "ps1_convolution", "ps3_resnet"
TEACHER, ADA, BEN = "hub-teacher", "hub-ada", "hub-ben"
EXAMPLES = grading.REPO_ROOT / grading.EXAMPLES_DIR / "submissions"
# The course's grading command, as the instructor types it in a terminal of their JupyterLab.
GRADING_COMMAND = f"{sys.executable} -m nbgrader autograde {{assignment}}"


def _account(hub, name):
    course = hub.course
    return next(a for a in [course.instructor, *course.students] if a.name == name)


def test_1_instructor_releases_from_the_formgrader(hub, sessions):
    formgrader = sessions.tab(TEACHER, hub.user_url(TEACHER, "formgrader/manage_assignments"))
    for assignment in (PS1, PS3):
        result = formgrader_action(formgrader, assignment, "release")
        assert f"Successfully released '{assignment}'" in result, result
        released = hub.course.exchange / grading.COURSE_ID / "outbound" / assignment
        assert (released / f"{assignment}.ipynb").is_file()
    screenshot(formgrader, "1-formgrader-released")


def test_2_students_see_assignments_and_no_instructor_tools(hub, sessions):
    page = sessions.page(ADA)
    assert menu_items(page, "Nbgrader") == ["Assignment List"]
    right_sidebar = page.inner_text("#jp-right-stack") + " ".join(
        page.eval_on_selector_all("#jp-right-stack ~ * .lm-TabBar-tab, .jp-SideBar .lm-TabBar-tab",
                                  "tabs => tabs.map(t => t.title)")
    )
    assert "Create Assignment" not in right_sidebar
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
        notebook.write_bytes((EXAMPLES / "example-complete" / assignment / notebook.name).read_bytes())
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
