"""Adversarial suite: each attack of issue #7 (and a few more) graded by the course's own command.

One temporary course with ps1_convolution (35 points) gets one submission per attack, built from the
release notebook (blank) or the complete example, plus control students; a single run of
``python -m course_tools.grading autograde ps1_convolution`` grades them all (in the sandbox,
with the course's nbgrader_config.py, tighter time and memory limits appended so the suite
stays fast), then feedback and the CSV export are generated. The tests then check that:

- every attack counts no undeserved points (``deserved``); where a protection acts before the
  hold (sandbox, safe import path, no partial credit) even the raw autograded score is bounded
  (``max_auto``), so removing that protection fails the test although the policy would hold it;
- honest mistakes (a pasted test cell, exit(), a timed-out cell, a cell that ignores the
  interrupt, a huge allocation or output) keep their exact score, as do the control students;
- no file of the course (submissions, sources, release, config) or of the course packages
  changes, the gradebook's hidden tests are intact, no attack process outlives grading, nothing
  reaches the network, and the run finishes in bounded time;
- the feedback pages show no hidden-test or reference-solution line.

`test_killed_run_resumes` kills a grading run mid-notebook and checks that the next run
regrades the half-done submission; `test_grading_refuses_without_sandbox` checks the refusal.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from grading_helpers import html_text, tiny_course
from nbformat.v4 import new_code_cell, new_markdown_cell

from course_tools import grading
from course_tools import notebooks as nbtools
from course_tools.grading.sandbox import probe_bwrap

pytestmark = pytest.mark.slow

REPO = grading.REPO_ROOT
ASSIGNMENT = "ps1_convolution"
FULL = 35.0  # ps1_convolution's test points
MARKER = "course-attack-marker"
# Tighter than the course's defaults, so that the availability attacks end quickly, yet loose
# enough for an honest ps1 on a busy 2-core machine. (The notebook time budget has its own test.)
TEST_LIMITS = """
# --- tests/test_adversarial.py: tighter limits --------------------------------------------
c.Execute.timeout = 30
c.GradingExecute.notebook_timeout = 300
c.SandboxedKernelManager.memory_limit = 1536 * 1024**2
c.SandboxedKernelManager.file_size_limit = 16 * 1024**2
c.SandboxedKernelManager.process_limit = 128
"""

# Eight lines that make every later cell swallow its errors (issue #7, attack 1).
TRANSFORMER = """
import ast
from IPython import get_ipython

class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        catch = ast.Name("BaseException", ast.Load())
        handler = ast.ExceptHandler(type=catch, name=None, body=[ast.Pass()])
        body = node.body or [ast.Pass()]
        node.body = [ast.Try(body=body, handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)

get_ipython().ast_transformers.append(_Swallow())
"""

READ_SOLUTIONS = """
import json
from pathlib import Path
from IPython import get_ipython

candidates = [Path("@COURSE@"), Path.cwd(), *Path.cwd().parents]
found = [p / "solutions/ps1_convolution/ps1_convolution.ipynb" for p in candidates]
found = [p for p in found if p.exists()]
print("solutions found:", [str(p) for p in found])
if found:
    for cell in json.loads(found[0].read_text())["cells"]:
        if cell["cell_type"] == "code" and "BEGIN SOLUTION" in "".join(cell["source"]):
            get_ipython().run_cell("".join(cell["source"]))
"""

TAMPER = """
import os, shutil, sqlite3
import course_lib.checks

COURSE = "@COURSE@"
OTHER = COURSE + "/submitted/zz-control-complete/ps1_convolution/ps1_convolution.ipynb"
attempts = {}

def attempt(name, action):
    try:
        action()
        attempts[name] = "DONE"
    except Exception as error:
        attempts[name] = type(error).__name__

def raise_scores():
    db = sqlite3.connect(COURSE + "/gradebook.db")
    print(db.execute("SELECT source FROM source_cell").fetchall())
    db.execute("UPDATE grade SET auto_score = 1000")
    db.execute("UPDATE source_cell SET source = 'pass'")
    db.commit()

attempt("gradebook", raise_scores)
attempt("config", lambda: open(COURSE + "/nbgrader_config.py", "a").write("c.Execute.timeout = 1"))
attempt("other submission", lambda: open(OTHER, "w").write("{}"))
attempt("other autograded", lambda: shutil.rmtree(COURSE + "/autograded/aa-control-partial"))
attempt("course_lib", lambda: open(course_lib.checks.__file__, "a").write("\\n# tampered\\n"))
attempt("solutions", lambda: os.remove(COURSE + "/solutions/ps1_convolution/ps1_convolution.ipynb"))
attempt("host tmp", lambda: open("@HOSTMARK@", "w").write("x"))
attempt("backups", lambda: shutil.rmtree(COURSE + "/gradebook_backups"))
attempt("delete gradebook", lambda: os.remove(COURSE + "/gradebook.db"))
print(attempts)
"""

DETACHED = """
import subprocess, sys

later = '''import time, sqlite3
time.sleep(5)
db = sqlite3.connect("@COURSE@/gradebook.db")
db.execute("UPDATE grade SET auto_score = 1000")
db.commit()  # @MARKER@'''
subprocess.Popen([sys.executable, "-c", later], start_new_session=True)
for _ in range(50):
    subprocess.Popen(["/bin/sh", "-c", "sleep 600; echo @MARKER@"], start_new_session=True)
print("spawned 51 detached processes")
"""

NETWORK = """
import socket
for host in ("127.0.0.1", "@HOSTIP@"):
    try:
        with socket.create_connection((host, @PORT@), timeout=3) as s:
            s.sendall(b"attack")
        print(host, "connected")
    except OSError as error:
        print(host, type(error).__name__)
"""

LEAK_STACK = """
import linecache, sys

def conv_output_size(input_size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    caller = sys._getframe(1)
    print("".join(linecache.getlines(caller.f_code.co_filename)))
    return (input_size + 2 * padding - kernel_size) // stride + 1
"""

DISPLAYHOOK = """
import sys

def conv_output_size(input_size, kernel_size, stride=1, padding=0):
    sys.displayhook(1000.0)
    raise NotImplementedError
"""

OPERATORS = {
    # a dict built in an earlier cell holds the original F.conv2d
    "conv_output_size": "OPS = {'correlate': F.conv2d}\n\n"
    "def conv_output_size(input_size, kernel_size, stride=1, padding=0):\n"
    "    return (input_size + 2 * padding - kernel_size) // stride + 1\n",
    "conv2d_loops": "def conv2d_loops(x, weight, bias=None, stride=1, padding=0):\n"
    "    return OPS['correlate'](x, weight, bias, stride=stride, padding=padding)\n",
    # a private ATen entry point
    "im2col": "def im2col(x, kernel_size, stride=1, padding=0):\n"
    "    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)\n"
    "    return torch._C._nn.im2col(x, k, (1, 1), (padding, padding), (stride, stride))\n",
    # an operator found by a computed name
    "conv2d_im2col": "def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):\n"
    "    op = getattr(torch.ops.aten, 'convol' + 'ution')\n"
    "    return op(x, weight, bias, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1)\n",
}

SHADOW_FILES = {
    "torch.py": f"print('shadow torch.py imported'){TRANSFORMER}",
    "course_lib/__init__.py": f"print('shadow course_lib imported'){TRANSFORMER}",
    "course_lib/checks.py": "def assert_close(*args, **kwargs):\n    return None\n",
    "ipykernel_launcher.py": "import sys\nprint('shadow ipykernel_launcher')\n"
    "sys.argv.append('--IPKernelApp.exec_lines=' + repr([" + repr(TRANSFORMER) + "]))\n"
    "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\n",
}


@dataclass
class Attack:
    """One submission: how it is built from the release, and what it may score."""

    student: str
    what: str
    base: str = "complete"  # "blank" (the release) or "complete" (every reference solution)
    replace: dict[str, str] = field(default_factory=dict)  # solution grade_id -> new source
    prepend: dict[str, str] = field(default_factory=dict)  # grade_id -> code put before it
    insert_after: dict[str, list] = field(default_factory=dict)  # grade_id -> new cells
    append: list = field(default_factory=list)  # cells added at the end
    files: dict[str, str] = field(default_factory=dict)  # extra files in the submission folder
    deserved: float = 0.0  # the most points it may count
    exact: float | None = None  # the raw autograded points it must get (honest mistakes)
    max_auto: float | None = None  # the most raw autograded points, before any hold
    held: bool | None = None  # True: must be held for review; False: must not be; None: either


def code(source: str):
    return new_code_cell(source)


ATTACKS = [
    Attack(
        "ast-transformer",
        "blank release + an IPython AST transformer wrapping every later cell in try/except",
        base="blank",
        prepend={"conv_output_size": TRANSFORMER},
        held=True,
    ),
    Attack(
        "shadow-modules",
        "blank release + torch.py, course_lib/ and ipykernel_launcher.py in the submission "
        "folder, each installing the transformer",
        base="blank",
        files=SHADOW_FILES,
        max_auto=0,
    ),
    Attack(
        "read-solutions",
        "solution cell walks up to solutions/ps1_convolution and runs the reference cells",
        base="blank",
        prepend={"conv_output_size": READ_SOLUTIONS},
        max_auto=0,
    ),
    Attack(
        "tamper-files",
        "edit gradebook scores and hidden tests, config, another student's submission and "
        "autograded folder, course_lib/checks.py, solutions, backups; delete the gradebook",
        base="blank",
        prepend={"conv_output_size": TAMPER},
        max_auto=0,
    ),
    Attack(
        "detached-processes",
        "a detached process that raises every grade after grading ends, and 50 sleepers",
        base="blank",
        prepend={"conv_output_size": DETACHED},
        max_auto=0,
    ),
    Attack(
        "network",
        "connect to a server the grader's machine listens on",
        base="blank",
        prepend={"conv_output_size": NETWORK},
        max_auto=0,
    ),
    Attack(
        "leak-stack",
        "print the calling test cell's source (hidden tests) from the stack",
        replace={"conv_output_size": LEAK_STACK},
        deserved=FULL,
    ),
    Attack(
        "leak-history",
        "print IPython's input history (every test cell run so far)",
        append=[code("print(In)")],
        deserved=FULL,
    ),
    Attack(
        "partial-credit",
        "show a number as the test cell's result (nbgrader would read it as partial credit)",
        base="blank",
        replace={"conv_output_size": DISPLAYHOOK},
        max_auto=0,
    ),
    Attack(
        "operator-bypass",
        "F.conv2d from a dict of an earlier cell, torch._C._nn.im2col, "
        "getattr(torch.ops.aten, 'convol' + 'ution')",
        replace=OPERATORS,
        deserved=FULL - 17.0,  # their tests: loops 3 + 4, im2col 5, conv2d_im2col 5
        max_auto=FULL - 17.0,
    ),
    Attack(
        "memory",
        "a 6 GiB tensor in a cell of its own",
        insert_after={
            "conv_output_size": [code("big = torch.ones(6 * 1024**3, dtype=torch.uint8)")]
        },
        deserved=FULL,
        exact=FULL,
    ),
    Attack(
        "output-flood",
        "a 50 MB output line",
        append=[code("print('x' * 50_000_000)")],
        deserved=FULL,
        exact=FULL,
    ),
    Attack(
        "markdown-flood",
        "a 20 MB markdown cell",
        append=[new_markdown_cell("y" * 20_000_000)],
        deserved=FULL,
        exact=FULL,
    ),
    Attack(
        "disk-fill",
        "a 100 MB file in the working folder",
        append=[code("with open('big.bin', 'wb') as f:\n    f.write(b'0' * 100 * 1024**2)")],
        deserved=FULL,
        exact=FULL,
    ),
    Attack(
        "process-bomb",
        "start sleeping processes until it cannot",
        append=[
            code(
                "import subprocess\nstarted = 0\ntry:\n    for _ in range(1000):\n"
                "        subprocess.Popen(['sleep', '600'])\n        started += 1\n"
                "except OSError as error:\n    print(type(error).__name__)\n"
                "print('started', started)"
            )
        ],
        deserved=FULL,
        exact=FULL,
    ),
    # --- honest mistakes: exact scores ----------------------------------------------------
    Attack(
        "pasted-test-cell",
        "a copy of a test cell pasted at the end",
        deserved=FULL,
        exact=FULL,
        held=False,
    ),
    Attack(
        "exit-call",
        "exit() in a cell of its own",
        insert_after={"test_im2col": [code("print('done for today')\nexit()")]},
        deserved=FULL,
        exact=FULL,
    ),
    Attack(
        "cell-timeout",
        "a cell that sleeps past the time limit",
        insert_after={
            "test_conv2d_loops_stride_padding_bias": [code("import time\ntime.sleep(100)")]
        },
        deserved=FULL,
        exact=FULL,
        held=False,
    ),
    Attack(
        "ignores-interrupt",
        "a C loop that does not answer the interrupt after the time limit",
        insert_after={"test_im2col": [code("total = sum(range(10**12))")]},
        deserved=FULL,
        exact=FULL,
        held=False,
    ),
]
CONTROLS = {  # student -> (example it copies, exact autograded points)
    "aa-control-partial": ("example-partial", 20.0),
    "zz-control-complete": ("example-complete", FULL),
    "zz-control-blank": ("example-blank", 0.0),
}


# --- building the course -------------------------------------------------------------------


def _build(attack: Attack, release, complete, course: Path, port: int, host_mark: Path):
    nb = copy.deepcopy(release if attack.base == "blank" else complete)
    cells = nbtools.cells_by_grade_id(nb)

    def fill(text: str) -> str:
        return (
            text.replace("@COURSE@", str(course))
            .replace("@PORT@", str(port))
            .replace("@HOSTIP@", _host_ip())
            .replace("@HOSTMARK@", str(host_mark))
            .replace("@MARKER@", MARKER)
        )

    for grade_id, source in attack.replace.items():
        cells[grade_id].source = fill(source)
    for grade_id, source in attack.prepend.items():
        cells[grade_id].source = fill(source) + "\n\n" + cells[grade_id].source
    for grade_id, new_cells in attack.insert_after.items():
        where = nb.cells.index(cells[grade_id]) + 1
        nb.cells[where:where] = [copy.deepcopy(c) for c in new_cells]
    nb.cells += [copy.deepcopy(c) for c in attack.append]
    if attack.student == "pasted-test-cell":
        nb.cells.append(copy.deepcopy(cells["test_conv2d_loops_basic"]))
    folder = course / "submitted" / attack.student / ASSIGNMENT
    nbtools.write_notebook(nb, folder / f"{ASSIGNMENT}.ipynb")
    for name, text in attack.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(fill(text))


def _host_ip() -> str:
    """A non-loopback address of this machine (the loopback one is tried too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _digest(paths) -> dict[str, str]:
    result = {}
    for root in paths:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                result[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _protected(course: Path) -> list[Path]:
    """What no kernel may change: course files other than grading output, the packages."""
    return [
        course / "submitted",
        course / "solutions",
        course / "assignments",
        course / grading.CONFIG_FILE,
        REPO / "course_lib",
        REPO / "course_tools",
    ]


def _digest_all(course: Path) -> dict[str, str]:
    files = [p for p in _protected(course) if p.is_file()]
    folders = [p for p in _protected(course) if p.is_dir()]
    digest = _digest(folders)
    digest.update({str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    return digest


def _source_cells(course: Path) -> list[tuple[str, str]]:
    with grading.gradebook(course) as gb:
        notebook = gb.find_notebook(ASSIGNMENT, ASSIGNMENT)
        return sorted((c.name, c.source) for c in notebook.source_cells)


def _marker_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if MARKER in cmdline and "pytest" not in cmdline:
                found.append(f"{entry.name}: {cmdline[:80]}")
    return found


class _Listener:
    """A TCP server on all interfaces that records whoever connects."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.hits: list[str] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, address = self.sock.accept()
            except OSError:
                continue
            self.hits.append(str(address))
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def _grading_command(course: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "course_tools.grading", "autograde", ASSIGNMENT]
    return subprocess.run(
        [*cmd, "--course", str(course)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=grading.course.nbgrader_env(),
        check=False,
    )


@dataclass
class Outcome:
    course: Path
    scores: dict
    rows: dict
    seconds: dict
    log: str
    before: dict
    after: dict
    source_before: list
    source_after: list
    processes: list
    hits: list
    host_mark: Path
    wall: float


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> Outcome:
    reason = probe_bwrap()
    assert reason is None, f"the adversarial suite needs the grading sandbox: {reason}"
    course = grading.new_course(
        tmp_path_factory.mktemp("adversarial") / "course", assignments=[ASSIGNMENT]
    )
    with open(course / grading.CONFIG_FILE, "a") as fh:
        fh.write(TEST_LIMITS)
    grading.generate_release(course, [ASSIGNMENT])
    release = nbtools.strip_outputs(
        nbtools.read_notebook(grading.release_notebook(course, ASSIGNMENT))
    )
    complete = nbtools.complete_submission(
        release, nbtools.read_notebook(grading.source_notebook(course, ASSIGNMENT))
    )
    listener = _Listener()
    host_mark = tmp_path_factory.mktemp("host") / "attack-was-here"
    for attack in ATTACKS:
        _build(attack, release, complete, course, listener.port, host_mark)
    examples = REPO / grading.EXAMPLES_DIR / "submissions"
    for student, (example, _) in CONTROLS.items():
        src = examples / example / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        dest = course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(src.read_bytes())
    students = [a.student for a in ATTACKS] + list(CONTROLS)
    grading.register(course, [ASSIGNMENT], students)
    before, source_before = _digest_all(course), _source_cells(course)

    start = time.perf_counter()
    proc = _grading_command(course, timeout=1800)
    wall = time.perf_counter() - start
    grading.generate_feedback(course, ASSIGNMENT)
    csv_path = grading.export_grades(course, course / "grades.csv")
    time.sleep(6)  # longer than the detached process waits before it strikes
    listener.close()
    log = proc.stdout + proc.stderr
    seconds = {}
    for line in proc.stdout.splitlines():  # "autograde ps1_convolution of <student>: 7.1 s"
        if line.startswith(f"autograde {ASSIGNMENT} of ") and line.endswith(" s"):
            student, _, value = line.split(" of ", 1)[1].rpartition(": ")
            seconds[student] = float(value[:-2])
    result = Outcome(
        course=course,
        scores=grading.read_scores(course),
        rows={r["student_id"]: r for r in grading.read_grades_csv(csv_path)},
        seconds=seconds,
        log=log,
        before=before,
        after=_digest_all(course),
        source_before=source_before,
        source_after=_source_cells(course),
        processes=_marker_processes(),
        hits=list(listener.hits),
        host_mark=host_mark,
        wall=wall,
    )
    print(f"\n{len(ATTACKS)} attacks + {len(CONTROLS)} controls graded in {wall:.0f} s")
    print(_results_table(result))
    return result


def _results_table(result: Outcome) -> str:
    lines = ["student               raw  counted  status  seconds"]
    for student in [a.student for a in ATTACKS] + list(CONTROLS):
        score = result.scores.get((student, ASSIGNMENT))
        if score is None:
            lines.append(f"{student:20s}  (no grade)")
            continue
        lines.append(
            f"{student:20s} {score.auto_score:4g} {score.counted_score:8g}  {score.status}  "
            f"{result.seconds.get(student, float('nan')):.1f}"
        )
    return "\n".join(lines)


def _autograded(result: Outcome, student: str):
    path = result.course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    return nbtools.read_notebook(path)


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("evalue", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


# --- the tests -------------------------------------------------------------------------------


def test_the_run_finishes_and_grades_everyone(outcome):
    missing = [
        s
        for s in [a.student for a in ATTACKS] + list(CONTROLS)
        if (s, ASSIGNMENT) not in outcome.scores or outcome.scores[(s, ASSIGNMENT)].incomplete
    ]
    assert not missing, f"not graded: {missing}\n{outcome.log[-3000:]}"
    # Every notebook ends within its time budget (300 s here) plus start-up and bookkeeping.
    slow = {s: t for s, t in outcome.seconds.items() if t > 360}
    assert not slow, f"notebooks past the time budget: {slow}"


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.student)
def test_attack_gets_no_undeserved_points(outcome, attack):
    score = outcome.scores[(attack.student, ASSIGNMENT)]
    assert not score.incomplete, f"{attack.student} was not graded"
    assert score.counted_score <= attack.deserved, (
        f"{attack.student} ({attack.what}) counts {score.counted_score} points, "
        f"deserves at most {attack.deserved}"
    )
    if attack.max_auto is not None:
        assert score.auto_score <= attack.max_auto, (
            f"{attack.student}: raw autograded score {score.auto_score} > {attack.max_auto}"
        )
    if attack.exact is not None:
        assert score.auto_score == attack.exact, (
            f"{attack.student} ({attack.what}): {score.auto_score}, expected {attack.exact}; "
            f"notes: {_autograded(outcome, attack.student).metadata.get('course_grading')}"
        )
    if attack.held is not None:
        assert score.flagged == attack.held, f"{attack.student}: held for review {score.flagged}"


@pytest.mark.parametrize("student", list(CONTROLS))
def test_control_students_keep_their_exact_scores(outcome, student):
    score = outcome.scores[(student, ASSIGNMENT)]
    assert score.auto_score == CONTROLS[student][1]
    assert not score.held and not score.incomplete
    assert (outcome.course / "autograded" / student / ASSIGNMENT).is_dir()


def test_no_file_outside_the_sandbox_changed(outcome):
    changed = sorted(
        path
        for path in set(outcome.before) | set(outcome.after)
        if outcome.before.get(path) != outcome.after.get(path)
    )
    assert not changed, f"files changed by grading: {changed[:10]}"
    assert outcome.source_after == outcome.source_before, "the gradebook's test sources changed"
    assert not outcome.host_mark.exists(), "a kernel wrote to the host's /tmp"
    backups = list((outcome.course / "gradebook_backups").glob("gradebook-*.db"))
    assert backups, "the gradebook was not backed up before grading"


def test_tamper_attempts_all_failed(outcome):
    text = _outputs_text(_autograded(outcome, "tamper-files"))
    assert "DONE" not in text and "'gradebook':" in text, text[-2000:]


def test_no_attack_process_outlives_grading(outcome):
    assert not outcome.processes, f"still running after grading: {outcome.processes[:5]}"
    assert "spawned 51 detached processes" in _outputs_text(
        _autograded(outcome, "detached-processes")
    ), "the attack should have started its processes (so this test can fail)"


def test_kernels_have_no_network(outcome):
    assert not outcome.hits, f"a kernel connected to the grader's machine: {outcome.hits}"
    text = _outputs_text(_autograded(outcome, "network"))
    assert "connected" not in text and "127.0.0.1" in text, text


def test_submitted_files_never_shadow_installed_modules(outcome):
    text = _outputs_text(_autograded(outcome, "shadow-modules"))
    assert "shadow" not in text, f"a submitted module was imported: {text[:500]}"


def test_resource_limits_stop_the_kernel_not_the_grading(outcome):
    memory = _outputs_text(_autograded(outcome, "memory"))
    assert "memory limit" in memory or "Error" in memory, "the 6 GiB tensor should not fit"
    disk = _outputs_text(_autograded(outcome, "disk-fill"))
    assert "File too large" in disk or "No space" in disk, disk[-500:]
    bomb = _outputs_text(_autograded(outcome, "process-bomb"))
    started = int(bomb.split("started ")[1].split()[0])
    assert started < 128, f"started {started} processes, the limit is 128"


def test_outputs_are_capped_with_a_note(outcome):
    for student in ("output-flood", "markdown-flood"):
        path = outcome.course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert path.stat().st_size < 6_000_000, f"{student}: {path.stat().st_size} bytes"
        page = outcome.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        assert page.stat().st_size < 8_000_000, f"{student} feedback: {page.stat().st_size}"
        assert "grading note" in path.read_text()


def test_feedback_shows_no_hidden_test_or_solution_line(outcome):
    source = nbtools.read_notebook(grading.source_notebook(REPO, ASSIGNMENT))
    secret = nbtools.hidden_test_lines(source) | nbtools.solution_lines(source)
    leak_text = _outputs_text(_autograded(outcome, "leak-stack"))
    assert any(line in leak_text for line in nbtools.hidden_test_lines(source)), (
        "the leak attack should print hidden tests into the graded notebook (so this can fail)"
    )
    for student in [a.student for a in ATTACKS] + list(CONTROLS):
        page = outcome.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        text = " ".join(html_text(page).split())
        submitted = outcome.course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        # A complete student typed the reference solution: the page shows their own code.
        own = "\n".join(
            " ".join(line.split())
            for cell in nbtools.read_notebook(submitted).cells
            for line in cell.source.splitlines()
        )
        flat = {line: " ".join(line.split()) for line in secret}
        shown = sorted(line for line, f in flat.items() if f in text and f not in own)
        assert not shown, f"feedback of {student} shows {shown[:3]}"


def test_held_submissions_are_shown_to_instructor_and_student(outcome):
    held = [a.student for a in ATTACKS if outcome.scores[(a.student, ASSIGNMENT)].flagged]
    assert held, "some attack breaks the submission policy"
    for student in held:
        row = outcome.rows[student]
        assert row["status"] == "held for review" and row["review_note"], row
        assert float(row["raw_score"]) == outcome.scores[(student, ASSIGNMENT)].counted_score
        page = outcome.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        assert "Held for review" in page.read_text()
        with grading.gradebook(outcome.course) as gb:
            notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            assert notebook.flagged and notebook.needs_manual_grade


# --- killed runs and missing sandboxes (a one-cell course) ------------------------------------


def _tiny_course(course_dir: Path, solution: str) -> Path:
    return tiny_course(course_dir, solution, student="ann")


def test_killed_run_resumes(tmp_path):
    """Kill the grading command while the kernel runs: the half-graded submission is not
    skipped by the next run (nbgrader alone would skip it forever at 0) but regraded."""
    course = _tiny_course(
        tmp_path / "course", "import time\ntime.sleep(4)\n\ndef add(a, b):\n    return a + b"
    )
    cmd = [sys.executable, "-m", "course_tools.grading", "autograde", "tiny", "--course"]
    proc = subprocess.Popen(
        [*cmd, str(course)],
        env=grading.course.nbgrader_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sanitized = course / "autograded" / "ann" / "tiny" / "tiny.ipynb"
    deadline = time.monotonic() + 120
    while not sanitized.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the kernel is now sleeping in the solution cell
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sanitized.exists(), "grading should have started"
    assert not grading.runner.is_graded(course, "tiny", "ann")
    plain = grading.run_nbgrader(course, "autograde", "tiny", "--student=ann")
    assert "Skipping existing assignment" in plain.stdout + plain.stderr, (
        "plain nbgrader skips the half-done submission (this is what the runner fixes)"
    )
    score = grading.read_scores(course).get(("ann", "tiny"))
    assert score is None or score.incomplete, "an unfinished grade must not look like a 0"
    rerun = _grading_command_tiny(course)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert grading.read_scores(course)[("ann", "tiny")].auto_score == 2.0
    assert len(list((course / "gradebook_backups").glob("*.db"))) >= 1


def _grading_command_tiny(course: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "course_tools.grading", "autograde", "tiny", "--course"]
    return subprocess.run(
        [*cmd, str(course)],
        capture_output=True,
        text=True,
        env=grading.course.nbgrader_env(),
        timeout=300,
        check=False,
    )


def test_notebook_time_budget_bounds_a_sleeping_notebook(tmp_path):
    """Issue #7: a sleep just under the cell limit in every cell took 15-20 minutes a notebook.
    With a notebook budget the remaining cells are not run (each gets an error, so a test cell
    after them scores 0, not full points for having no output) and grading moves on."""
    sleeper = "import time\ntime.sleep(2.5)"
    course = _tiny_course(tmp_path / "course", "def add(a, b):\n    return a + b")
    submitted = course / "submitted" / "ann" / "tiny" / "tiny.ipynb"
    nb = nbtools.read_notebook(submitted)
    nb.cells[1:1] = [code(sleeper) for _ in range(12)]  # before the test cell
    nbtools.write_notebook(nb, submitted)
    config = course / grading.CONFIG_FILE
    limits = "\nc.Execute.timeout = 3\nc.GradingExecute.notebook_timeout = 8\n"
    config.write_text(config.read_text() + limits)
    result = _grading_command_tiny(course)
    assert result.returncode == 0, result.stdout + result.stderr
    assert grading.read_scores(course)[("ann", "tiny")].auto_score == 0.0
    graded = nbtools.read_notebook(course / "autograded" / "ann" / "tiny" / "tiny.ipynb")
    assert "not run: the notebook used its whole time budget (8 s)" in _outputs_text(graded)
    sleepers = [c for c in graded.cells if c.cell_type == "code" and c.source == sleeper]
    ran = [c for c in sleepers if not any(o.output_type == "error" for o in c.outputs)]
    assert len(sleepers) == 12 and len(ran) <= 4, f"{len(ran)} sleeping cells ran in 8 s"


def test_grading_refuses_without_sandbox(tmp_path):
    """No bubblewrap: grading stops with the reason and the way out; with the explicit opt-out
    it grades (limits and the safe import path still apply)."""
    course = _tiny_course(tmp_path / "course", "def add(a, b):\n    return a + b")
    config = course / grading.CONFIG_FILE
    config.write_text(
        config.read_text() + '\nc.SandboxedKernelManager.bwrap = "/nonexistent/bwrap"\n'
    )
    refused = _grading_command_tiny(course)
    assert refused.returncode != 0
    assert "cannot create the grading sandbox" in refused.stdout + refused.stderr
    assert "allow_unsandboxed" in refused.stdout + refused.stderr
    score = grading.read_scores(course).get(("ann", "tiny"))
    assert score is None or score.incomplete
    config.write_text(config.read_text() + "\nc.SandboxedKernelManager.allow_unsandboxed = True\n")
    graded = _grading_command_tiny(course)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert grading.read_scores(course)[("ann", "tiny")].auto_score == 2.0


def test_result_table_lists_every_attack(outcome):
    """The attack count and results (printed with -s), for the README and the report."""
    table = _results_table(outcome)
    assert len(table.splitlines()) == 1 + len(ATTACKS) + len(CONTROLS)
    (outcome.course / "attack_results.json").write_text(
        json.dumps(
            {
                a.student: {
                    "what": a.what,
                    "raw": outcome.scores[(a.student, ASSIGNMENT)].auto_score,
                    "counted": outcome.scores[(a.student, ASSIGNMENT)].counted_score,
                    "status": outcome.scores[(a.student, ASSIGNMENT)].status,
                }
                for a in ATTACKS
            },
            indent=1,
        )
    )
