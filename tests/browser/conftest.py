"""A class JupyterHub on loopback and a headless Chromium driven by Playwright.

Prerequisites (`.ci/run` installs them and sets COURSE_CLASS_TESTS=required, which turns a
missing one into a failure; elsewhere the tests skip and say what to install):

- Debian's Chromium: ``apt-get install -y chromium`` (Playwright's own browser download is not
  used; any Chromium at ``$COURSE_CHROMIUM`` works);
- the hub's proxy: ``npm ci --prefix deploy`` (or ``npm install -g configurable-http-proxy``);
- root, for the class's Unix accounts (tests/classroom_helpers.py).

Screenshots go to ``test-artifacts/browser/`` (git-ignored): ``FAILED-<test>-<n>.png`` of every
open page when a test fails, and a few named ones along the way.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: classroom_helpers
from classroom_helpers import (  # noqa: E402
    REPO,
    Classroom,
    make_class,
    missing_prerequisite,
)
from jupyterlab_ui import SCREENSHOTS  # noqa: E402

CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
# Root needs --no-sandbox; the rest keeps Chromium from calling home (updates, sync, safe browsing).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
]
LOOPBACK = ("http://127.0.0.1:", "data:", "blob:", "about:")
INSTRUCTOR, STUDENTS = "hub-teacher", ["hub-ada", "hub-ben"]
ASSIGNMENTS = ["ps1_convolution", "ps3_resnet"]


def _proxy_command() -> str | None:
    local = REPO / "deploy" / "node_modules" / ".bin" / "configurable-http-proxy"
    return str(local) if local.exists() else shutil.which("configurable-http-proxy")


def _check_prerequisites() -> None:
    if not Path(CHROMIUM).exists():
        missing_prerequisite(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (Debian/Ubuntu), or set "
            "COURSE_CHROMIUM to a Chromium binary"
        )
    try:
        import jupyterhub  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as error:
        missing_prerequisite(f"{error.name} is not installed: `pip install -e '.[dev]'`")
    if _proxy_command() is None:
        missing_prerequisite(
            "JupyterHub's proxy is missing: `npm ci --prefix deploy` (or "
            "`npm install -g configurable-http-proxy`)"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Hub:
    """A running class hub: its URL, the shared test password and the class behind it."""

    url: str
    password: str
    course: Classroom
    log: Path
    process: subprocess.Popen
    external_requests: list[str] = field(default_factory=list)

    def user_url(self, user: str, path: str = "") -> str:
        return f"{self.url}/user/{user}/{path}"


@pytest.fixture(scope="module")
def hub() -> Hub:
    """JupyterHub with deploy/jupyterhub_config.py on 127.0.0.1, one instructor, two students.

    The instructor's course directory holds the sources of ps1 and ps3; Ada's home holds
    lecture 1. The users' servers are started at once (through the hub's API), so that they come
    up while the first test runs.
    """
    _check_prerequisites()
    course = make_class(INSTRUCTOR, STUDENTS, ASSIGNMENTS)
    ada = course.students[0]
    lectures = ada.home / "lectures"
    lectures.mkdir()
    shutil.copy(REPO / "lectures" / "01_convolution.ipynb", lectures)
    for path in [lectures, lectures / "01_convolution.ipynb"]:
        os.chown(path, ada.uid, ada.gid)

    password, api_token = secrets.token_urlsafe(16), secrets.token_hex(32)
    port, hub_port, api_port = _free_port(), _free_port(), _free_port()
    config = course.root / "jupyterhub_test_config.py"
    config.write_text(
        "c = get_config()  # noqa: F821\n"
        f"load_subconfig({str(REPO / 'deploy' / 'jupyterhub_config.py')!r})  # noqa: F821\n"
        "# The test logs in with a throwaway password instead of PAM.\n"
        'c.JupyterHub.authenticator_class = "dummy"\n'
        f"c.DummyAuthenticator.password = {password!r}\n"
        f'c.JupyterHub.bind_url = "http://127.0.0.1:{port}"\n'
        'c.JupyterHub.hub_ip = "127.0.0.1"\n'
        f"c.JupyterHub.hub_port = {hub_port}\n"
        f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"\n'
        f"c.ConfigurableHTTPProxy.command = [{_proxy_command()!r}]\n"
        "# The test starts the users' servers through the API.\n"
        f'c.JupyterHub.services = [{{"name": "class-test", "api_token": {api_token!r}}}]\n'
        'c.JupyterHub.load_roles = [{"name": "class-test", "scopes": ["servers"], '
        '"services": ["class-test"]}]\n'
    )
    config.chmod(0o600)
    env = {
        **os.environ,
        "CNN_COURSE_CLASS_DIR": str(course.root),
        "CNN_COURSE_INSTRUCTORS": INSTRUCTOR,
        "CNN_COURSE_STUDENTS": ",".join(STUDENTS),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    log = course.root / "jupyterhub.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=course.root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"JupyterHub exited with {process.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                urllib.request.urlopen(f"{url}/hub/api", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterHub did not answer in 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        for user in [INSTRUCTOR, *STUDENTS]:
            request = urllib.request.Request(
                f"{url}/hub/api/users/{user}/server",
                method="POST",
                headers={"Authorization": f"token {api_token}"},
            )
            urllib.request.urlopen(request, timeout=30)
        yield Hub(url, password, course, log, process)
    finally:
        # SIGTERM: the hub stops the users' servers (cleanup_servers) and its proxy, then exits.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(course.root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium under Playwright (old screenshots removed first)."""
    _check_prerequisites()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


_open_pages: list = []  # every page opened, for screenshots on failure


class Sessions:
    """Each user's browser session on the hub: ``page(user)`` is their JupyterLab (logged in on
    first use), ``tab(user, url)`` another tab of theirs (the formgrader, a feedback file).

    Each user gets a browser context of their own (their own cookies). Every request that would
    leave loopback is aborted and recorded in ``hub.external_requests``.
    """

    def __init__(self, browser, hub: Hub):
        self.browser, self.hub = browser, hub
        self.pages: dict[str, object] = {}

    def _context(self, user: str):
        context = self.browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(60_000)

        def only_loopback(route):
            if route.request.url.startswith(LOOPBACK):
                route.continue_()
            else:
                self.hub.external_requests.append(f"{user}: {route.request.url}")
                route.abort()

        context.route("**/*", only_loopback)
        return context

    def page(self, user: str):
        if user not in self.pages:
            page = self._context(user).new_page()
            self.pages[user] = page
            _open_pages.append(page)
            page.goto(f"{self.hub.url}/hub/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", self.hub.password)
            page.click("[type=submit]")
            # The first login spawns the user's JupyterLab (PyTorch and nbgrader take a while).
            page.wait_for_selector("#jp-main-dock-panel", timeout=240_000)
        return self.pages[user]

    def tab(self, user: str, url: str):
        tab = self.page(user).context.new_page()
        _open_pages.append(tab)
        tab.goto(url)
        return tab

    def close(self) -> None:
        for page in self.pages.values():
            page.context.close()
        _open_pages.clear()


@pytest.fixture(scope="module")
def sessions(browser, hub):
    """The users' browser sessions (see `Sessions`), closed at the end of the module."""
    sessions = Sessions(browser, hub)
    yield sessions
    sessions.close()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "incremental: steps of one story; after a failed step the later ones xfail"
    )


def pytest_runtest_setup(item):
    failed = getattr(item.parent, "_failed_step", None)
    if failed is not None and item.get_closest_marker("incremental"):
        pytest.xfail(f"an earlier step failed: {failed}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Screenshot every open page when a test here fails; remember the failed step."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        if item.get_closest_marker("incremental"):
            item.parent._failed_step = item.name
        if _open_pages:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            for number, page in enumerate(_open_pages):
                path = SCREENSHOTS / f"FAILED-{item.name}-{number}.png"
                try:
                    page.screenshot(path=str(path), full_page=True)
                    report.sections.append(("screenshot", str(path)))
                except Exception as error:  # a closed page or a crashed browser
                    report.sections.append(("screenshot", f"{path}: not taken ({error})"))
