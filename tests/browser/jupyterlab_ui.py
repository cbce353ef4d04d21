"""What a person does in JupyterLab and the formgrader, as Playwright steps (for the tests here).

Waits are on what a person sees: the status bar's "| Idle", a cell prompt without "*", a dialog.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from classroom_helpers import REPO
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

SCREENSHOTS = REPO / "test-artifacts" / "browser"
# The notebook on screen (other open notebooks are hidden dock panels).
CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
KERNEL_IDLE = "() => document.querySelector('#jp-main-statusbar')?.innerText.includes('| Idle')"
NO_RUNNING_CELL = (
    "() => !Array.from(document.querySelectorAll("
    f"'{CURRENT_NOTEBOOK} .jp-InputArea-prompt')).some(e => e.textContent.includes('*'))"
)


def screenshot(page, name: str) -> Path:
    """``test-artifacts/browser/<name>.png``: kept on success too, for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_menu(page, top: str) -> None:
    """Open ``top`` of JupyterLab's menu bar (a click on a menu bar that still has the keyboard
    focus after Escape can toggle instead of open: click until the menu is there)."""
    for _ in range(3):
        page.click(f"#jp-MainMenu .lm-MenuBar-itemLabel:text-is('{top}')")
        try:
            page.wait_for_selector(".lm-Menu", timeout=5_000)
            return
        except PlaywrightTimeoutError:
            continue
    raise AssertionError(f"the {top} menu does not open")


def menu(page, top: str, item: str) -> None:
    """Click ``top`` in JupyterLab's menu bar, then ``item``."""
    open_menu(page, top)
    page.click(f".lm-Menu-itemLabel:text-is('{item}')")


def menu_items(page, top: str) -> list[str]:
    """The visible entries of a menu-bar menu (closed again afterwards)."""
    open_menu(page, top)
    items = page.eval_on_selector_all(
        ".lm-Menu .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel",
        "nodes => nodes.map(n => n.textContent).filter(t => t)",
    )
    page.keyboard.press("Escape")
    page.wait_for_selector(".lm-Menu", state="detached")
    return items


def sidebar_tabs(page) -> list[str]:
    """Labels and tooltips of the tabs in JupyterLab's left and right sidebars."""
    return page.eval_on_selector_all(
        ".jp-SideBar .lm-TabBar-tab",
        "tabs => tabs.map(t => (t.textContent + ' ' + (t.title || '')).trim())",
    )


def open_assignments(page) -> None:
    """nbgrader's Assignments panel (Nbgrader > Assignment List) in front, loaded."""
    menu(page, "Nbgrader", "Assignment List")  # opens it, or brings the open one to the front
    page.wait_for_selector("#released_assignments_list", state="visible")
    page.wait_for_selector("#released_assignments_list_loading", state="hidden")
    page.wait_for_selector("#fetched_assignments_list_loading", state="hidden")


def assignment_row(section: str, assignment: str) -> str:
    """Selector of ``assignment``'s row in ``released``/``fetched``/``submitted`` assignments."""
    return f"#{section}_assignments_list > .list_item:has(.item_name :text-is('{assignment}'))"


def wait_kernel_idle(page, timeout_s: float = 300) -> None:
    page.wait_for_function(KERNEL_IDLE, timeout=timeout_s * 1000)


def open_notebook(page, path: str) -> None:
    """Open ``path`` (relative to the server root) and wait for its kernel."""
    page.goto(re.sub(r"/lab.*$", "", page.url) + f"/lab/tree/{path}")
    page.wait_for_selector(f"{CURRENT_NOTEBOOK} .jp-Cell")
    wait_kernel_idle(page)


def run_all(page, timeout_s: float = 300) -> float:
    """Run > Run All Cells; wait until no cell is queued or running. Returns the seconds taken."""
    start = time.monotonic()
    menu(page, "Run", "Run All Cells")
    page.wait_for_timeout(500)
    page.wait_for_function(NO_RUNNING_CELL, timeout=timeout_s * 1000)
    wait_kernel_idle(page, timeout_s)
    return time.monotonic() - start


def prompts(page) -> list[str]:
    """The execution prompts ("[3]:", "[ ]:", "[*]:") of the notebook on screen."""
    return page.eval_on_selector_all(
        f"{CURRENT_NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt",
        "nodes => nodes.map(n => n.textContent)",
    )


def current_tab_is_dirty(page) -> bool:
    return bool(
        page.query_selector(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
    )


def error_outputs(page) -> list[str]:
    """Texts of the error outputs (tracebacks) in the notebook on screen."""
    stderr = "application/vnd.jupyter.stderr"
    return page.eval_on_selector_all(
        f"{CURRENT_NOTEBOOK} .jp-OutputArea-output[data-mime-type='{stderr}']",
        "nodes => nodes.map(n => n.textContent)",  # innerText is empty off screen
    )


def dialog_text(page, timeout_s: float = 300) -> str:
    """The text of the JupyterLab dialog that opens, once it is there."""
    page.wait_for_selector(".jp-Dialog-content", timeout=timeout_s * 1000)
    return page.inner_text(".jp-Dialog-content")


def close_dialog(page) -> None:
    page.click(".jp-Dialog-content .jp-Dialog-button.jp-mod-accept")
    page.wait_for_selector(".jp-Dialog-content", state="detached")


def formgrader_action(page, assignment: str, column: str) -> str:
    """Click ``column`` (release, collect, generate-feedback, ...) of ``assignment`` on the
    formgrader's Manage Assignments page; returns the text of the result it shows."""
    page.click(f"tr:has(td.name[data-order='{assignment}']) td.{column} a")
    page.wait_for_selector(".modal-dialog .modal-body", timeout=300_000)
    text = page.inner_text(".modal-dialog .modal-body")
    page.click(".modal-dialog .modal-footer button:has-text('OK')")
    page.wait_for_selector(".modal-dialog", state="detached")
    return text


def mathjax_report(frame) -> dict:
    """What MathJax 2 did on a page (or iframe): typeset formulas, errors, where it came from."""
    return frame.evaluate(
        """() => ({
            loaded: typeof MathJax !== 'undefined' && !!MathJax.Hub,
            src: Array.from(document.scripts).map(s => s.src).filter(s => s.includes('MathJax')),
            typeset: typeof MathJax !== 'undefined' && MathJax.Hub
                ? MathJax.Hub.getAllJax().length : 0,
            rendered: document.querySelectorAll('.MathJax, .MathJax_Display').length,
            errors: document.querySelectorAll('.MathJax_Error, merror').length,
        })"""
    )


def wait_for_mathjax(frame, timeout_s: float = 120) -> dict:
    """Wait until MathJax has typeset the page (its queue is empty) and report."""
    frame.wait_for_function(
        """() => typeof MathJax !== 'undefined' && MathJax.Hub && MathJax.Hub.queue
            && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running
            && MathJax.Hub.getAllJax().length > 0""",
        timeout=timeout_s * 1000,
    )
    return mathjax_report(frame)
