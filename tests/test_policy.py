"""course_tools.policy: honest submissions pass, each way around the rules is caught.

Every attack is a cell a determined student could add to the complete example submission; the
check must name the rule it breaks. The honest examples (complete, alternative, partial, cheat,
blank) and the reference solutions themselves must pass untouched.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from course_tools.policy import (
    PolicyError,
    SubmissionPolicy,
    Violation,
    check_notebook,
    format_violations,
)

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(path.name for path in (ROOT / "solutions").iterdir() if path.is_dir())
STUDENTS = sorted(path.name for path in (ROOT / "examples" / "submissions").iterdir())

_SOURCES: dict[str, nbformat.NotebookNode] = {}


def source(ps: str) -> nbformat.NotebookNode:
    if ps not in _SOURCES:
        _SOURCES[ps] = nbformat.read(ROOT / "solutions" / ps / f"{ps}.ipynb", as_version=4)
    return _SOURCES[ps]


def submission(student: str, ps: str) -> nbformat.NotebookNode:
    path = ROOT / "examples" / "submissions" / student / ps / f"{ps}.ipynb"
    return nbformat.read(path, as_version=4)


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def with_cell(ps: str, code: str, after: str = "setup", student: str = "example-complete"):
    """The student's notebook with a new code cell right after the cell ``after``."""
    nb = copy.deepcopy(submission(student, ps))
    index = next(i for i, cell in enumerate(nb.cells) if grade_id(cell) == after)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def rules(ps: str, code: str, after: str = "setup") -> list[str]:
    return sorted(
        {v.rule for v in check_notebook(with_cell(ps, code, after), ps, source=source(ps))}
    )


# ------------------------------------------------------------------- no false positives


def _existing(student: str, ps: str) -> bool:
    return (ROOT / "examples" / "submissions" / student / ps / f"{ps}.ipynb").is_file()


@pytest.mark.parametrize(
    ("student", "ps"),
    [(student, ps) for student in STUDENTS for ps in ASSIGNMENTS if _existing(student, ps)],
)
def test_every_example_student_passes(student, ps):
    """Honest work in every style passes; the cheats call library code by allowed means (an
    alias, getattr with a literal name, a subclass of an allowed class), which the operator
    checks of the hidden tests catch at run time: no policy rule is broken."""
    violations = check_notebook(submission(student, ps), ps, source=source(ps))
    assert violations == [], format_violations(violations)


@pytest.mark.parametrize("ps", ASSIGNMENTS)
def test_reference_solutions_pass(ps):
    violations = check_notebook(source(ps), ps, source=source(ps))
    assert violations == [], format_violations(violations)


LEGIT = {
    "module subclass": """
class Net(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self._cache = {}
        self.layers = nn.ModuleList([nn.ReLU() for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        for layer in self.layers:
            out = layer(out)
        return out

net = Net()
print(f"{sum(p.numel() for p in net.parameters()):,} parameters, {type(net).__name__}")
""",
    "old-style super and base __init__": """
class A(nn.Module):
    def __init__(self):
        super(A, self).__init__()

class B(nn.Module):
    def __init__(self):
        nn.Module.__init__(self)
""",
    "dunder methods a dataset needs": """
from dataclasses import dataclass

class Windows:
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]

    def __call__(self, k):
        return self.x[:k]

    def __repr__(self):
        return f"Windows({len(self)})"

@dataclass
class Config:
    lr: float = 0.1
""",
    "optimizer state and .data updates": """
class MySGD(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                state["step"] += 1
                p.data = p.data - group["lr"] * p.grad.data
                p.grad = None
""",
    "comprehensions, walrus, lambdas, closures": """
def f(xs):
    total = 0
    squares = {k: v * v for k, v in enumerate(xs) if (total := total + 1)}
    scale = lambda t, s=2: t * s
    def inner():
        nonlocal total
        total += 1
        return total
    return [scale(v) for v in squares.values()], inner()
""",
    "library helpers and type hints": """
import math
import random
import itertools
import functools
import collections
from typing import Optional
import numpy as np
import matplotlib.pyplot as plt
from tqdm.auto import tqdm

def helper(x: Optional[torch.Tensor] = None, sizes: tuple[int, ...] = ()) -> list[torch.Tensor]:
    assert isinstance(x, (torch.Tensor, np.ndarray)) or x is None
    relu = functools.partial(F.relu, inplace=False)
    counts = collections.Counter(itertools.chain([1], [2]))
    nn.init.kaiming_normal_(torch.empty(2, 2))
    return [relu(torch.zeros(2, dtype=torch.float64)), torch.from_numpy(np.ones(2))]

plt.rcParams["figure.figsize"] = (4, 3)
print(torch.__version__, math.pi, random.random(), getattr(nn.Conv2d(1, 1, 1), "bias", None))
""",
    "one-line cells that look like magics but are Python": """
time = 3
""",
    "matplotlib magic and printing types": """
%matplotlib inline
x = torch.zeros(2)
print(type(x), x.__class__.__name__)
""",
    "own variables named like builtins": """
input = torch.randn(2, 3)
type = "max"
print(input.shape, type)
""",
    "own global state": """
counter = 0

def bump():
    global counter
    counter += 1
    return counter
""",
    "autograd function": """
class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.scale = 2.0
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.scale * x * grad

y = Square.apply(torch.ones(2, requires_grad=True))
""",
    "generators and own private helpers": """
def batches(x, size):
    for start in range(0, len(x), size):
        yield x[start : start + size]

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self._scale = 2.0

    def _helper(self, x):
        return x * self._scale

    def forward(self, x):
        return self._helper(x)
""",
    "scratch cell that binds its own data": """
x = torch.randn(1, 1, 5, 5)
w = torch.randn(1, 1, 3, 3)
print(max_pool_forward(x, 2).shape, x.unfold(2, 3, 1).shape, w.sum())
""",
}


@pytest.mark.parametrize("name", LEGIT)
def test_honest_patterns_pass(name):
    assert rules("ps2_pooling_batchnorm", LEGIT[name]) == []


# ------------------------------------------------------------------- attacks

_CLASS_FROM_ANNOTATION = """
import typing

def f(x: torch.Tensor):
    return x

tensor_class = typing.get_type_hints(f)["x"]
tensor_class.add = print
"""
_CLASS_FROM_FIELD = """
import dataclasses

@dataclasses.dataclass
class Box:
    x: torch.Tensor

dataclasses.fields(Box)[0].type.add = print
"""
_MODULE_HOOKS_VIA_SELF = """
class Block(nn.Module):
    def forward(self, x):
        self._forward_hooks.clear()  # nn.Module's own state: the test's hooks
        return x
"""
_GENERATOR_FINALLY = """
def later(out, x, w):
    try:
        yield
    finally:
        out.copy_(F.conv2d(x, w))  # runs when the generator is freed, after the checks
"""

# (id, code, the rule that must catch it); each cell is added right after the setup cell of
# problem set 2 (whose setup imports torch, F and nn).
ATTACKS = [
    # IPython internals: AST transformers, magics, shell, history.
    ("ast transformer", "get_ipython().ast_transformers.append(object())", "ipython"),
    (
        "line magic",
        "%timeit max_pool_forward(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 2))",
        "ipython",
    ),
    ("cell magic", "%%capture\nprint(1)", "ipython"),
    ("shell", "!cat ../../solutions/ps1_convolution/ps1_convolution.ipynb", "ipython"),
    ("automagic run of an extra file", "run extra_file_in_the_submission.py", "ipython"),
    ("automagic shell alias", "ls ../..", "ipython"),
    ("automagic without arguments", "pwd", "ipython"),
    ("input history", "def peek():\n    return In[-1]", "ipython"),
    ("last output", "def peek():\n    return _", "ipython"),
    # Code from strings, files, the interpreter.
    ("open", "print(open('../../gradebook.db', 'rb').read(10))", "forbidden-builtin"),
    ("eval", "eval('1 + 1')", "forbidden-builtin"),
    ("exec alias", "run = exec", "forbidden-builtin"),
    (
        "builtin used before a later shadowing",
        "eval('1')\n\ndef eval(text):\n    return text",
        "forbidden-builtin",
    ),
    (
        "builtin unshadowed by del",
        "def eval(text):\n    return text\n\ndel eval\neval('1')",
        "forbidden-builtin",
    ),
    ("compile", "compile('x = 1', 'x', 'exec')", "forbidden-builtin"),
    ("globals", "globals()['assert_close'] = print", "forbidden-builtin"),
    ("vars", "vars(F)['conv2d'] = print", "forbidden-builtin"),
    ("setattr", "setattr(F, 'conv2d', print)", "forbidden-builtin"),
    ("delattr", "delattr(F, 'conv2d')", "forbidden-builtin"),
    ("type()", "type(torch.zeros(1)).add = print", "forbidden-builtin"),
    ("__import__", "__import__('os').system('id')", "dunder-name"),
    ("__builtins__", "__builtins__['print']", "dunder-name"),
    # Forbidden modules, however reached.
    ("import os", "import os", "forbidden-import"),
    ("import sys", "import sys", "forbidden-import"),
    ("import subprocess", "import subprocess", "forbidden-import"),
    ("import builtins", "import builtins", "forbidden-import"),
    ("import importlib", "import importlib", "forbidden-import"),
    ("import inspect", "import inspect", "forbidden-import"),
    ("import ctypes", "import ctypes", "forbidden-import"),
    ("import gc", "import gc", "forbidden-import"),
    ("import pickle", "import pickle", "forbidden-import"),
    ("import operator", "from operator import attrgetter", "forbidden-import"),
    ("import threading", "import threading", "forbidden-import"),
    ("import scipy", "import scipy.signal", "forbidden-import"),
    (
        "torch.utils.cpp_extension",
        "from torch.utils.cpp_extension import load_inline",
        "forbidden-import",
    ),
    ("torch.library", "import torch.library", "forbidden-import"),
    ("relative import", "from . import course_lib", "forbidden-import"),
    ("star import", "from torch.nn.functional import *", "star-import"),
    ("sys through torch", "torch.sys.modules", "forbidden-module"),
    ("os through torch", "torch.os.system('id')", "forbidden-module"),
    (
        "inspect through course_lib",
        "import course_lib.checks.source\ncourse_lib.checks.source.inspect.stack()",
        "forbidden-module",
    ),
    ("numpy.ctypeslib", "import numpy as np\nnp.ctypeslib.as_array", "forbidden-module"),
    (
        "sliding_window_view",
        "import numpy as np\nnp.lib.stride_tricks.sliding_window_view",
        "forbidden-module",
    ),
    ("torch.jit", "torch.jit.script(max_pool_forward)", "forbidden-module"),
    ("torch.overrides", "torch.overrides.TorchFunctionMode", "forbidden-module"),
    # Denied functions and private internals.
    ("torch.load of a crafted file", "torch.load('weights.pt', weights_only=False)", "denied-name"),
    ("torch.load imported", "from torch import load as restore", "denied-name"),
    ("numpy pickle", "import numpy as np\nnp.load('x.npy', allow_pickle=True)", "denied-name"),
    ("torch.compile", "torch.compile(max_pool_forward)", "denied-name"),
    ("default dtype", "torch.set_default_dtype(torch.float64)", "denied-name"),
    (
        "global module hook",
        "torch.nn.modules.module.register_module_forward_hook(print)",
        "denied-name",
    ),
    ("torch.ops", "torch.ops.aten.convolution", "denied-name"),
    ("torch.ops by string", "getattr(torch.ops.aten, 'convol' + 'ution')", "computed-attribute"),
    ("torch._C", "torch._C._nn.im2col", "private-attribute"),
    ("private import", "from torch.optim.adam import _single_tensor_adam", "private-attribute"),
    ("private getattr", "getattr(torch, '_C')", "private-attribute"),
    ("mro", "torch.nn.Conv2d.mro()[1].forward = print", "denied-name"),
    # Dunder and computed attribute access.
    ("__class__", "torch.zeros(1).__class__.add = print", "dunder-attribute"),
    ("__globals__", "f = lambda: 0\nf.__globals__", "dunder-attribute"),
    (
        "__traceback__",
        "try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame",
        "dunder-attribute",
    ),
    ("__subclasses__", "object.__subclasses__()", "dunder-attribute"),
    (
        "__init__ on a module",
        "class A:\n    def f(self):\n        object.__init__(torch.testing)",
        "dunder-attribute",
    ),
    ("computed getattr", "getattr(F, 'conv' + '2d')", "computed-attribute"),
    ("format globals", "print('{0.__globals__}'.format(max_pool_forward))", "format-string"),
    (
        "format template variable",
        "template = '{0.x}'\nprint(template.format(max_pool_forward))",
        "format-string",
    ),
    # Changing library code or test infrastructure.
    (
        "patch assert_close",
        "import course_lib.checks\ncourse_lib.checks.assert_close = print",
        "assign-attribute",
    ),
    (
        "patch torch.testing alias",
        "import torch.testing as t\nt.assert_close = print",
        "assign-attribute",
    ),
    ("patch F.conv2d", "F.conv2d = print", "assign-attribute"),
    ("patch Tensor method", "torch.Tensor.add = print", "assign-attribute"),
    ("delete attribute", "del F.pad", "assign-attribute"),
    ("augmented patch", "torch.Tensor.__add__ += 1", "dunder-attribute"),
    (
        "module in a local",
        "def f():\n    m = torch.testing\n    m.assert_close = print",
        "module-value",
    ),
    (
        "module as argument",
        "def f(m):\n    m.assert_close = print\nf(torch.testing)",
        "module-value",
    ),
    ("module in a container", "mods = [torch.nn.functional]", "module-value"),
    ("module as default", "def f(m=torch.nn.functional):\n    m.conv2d = print", "module-value"),
    ("class in a variable", "T = torch.Tensor\nT.add = print", "class-value"),
    ("class as argument", "def f(c):\n    c.forward = print\nf(nn.Conv2d)", "class-value"),
    (
        "decorator patches",
        "def deco(f):\n    F.conv2d = f\n    return f\n\n@deco\ndef g():\n    pass",
        "assign-attribute",
    ),
    ("library list", "import warnings\nwarnings.filters.clear()", "mutate-data"),
    ("attribute of a call result", "nn.Conv2d(1, 1, 1).forward.x = 1", "assign-attribute"),
    ("class out of an annotation", _CLASS_FROM_ANNOTATION, "denied-name"),
    ("class out of a dataclass field", _CLASS_FROM_FIELD, "denied-name"),
    (
        "kernel stream of tqdm",
        "from tqdm.auto import tqdm\nbar = tqdm(range(1))\nbar.fp.session",
        "denied-name",
    ),
    (
        "kernel through widgets",
        "from tqdm.auto import tqdm\ntqdm(range(1)).container.comm",
        "denied-name",
    ),
    # Rebinding what the tests use (the setup's imports, builtins, helpers).
    ("rebind assert_close", "def assert_close(*args, **kwargs):\n    pass", "protected-name"),
    ("rebind zip", "zip = lambda *args, **kwargs: []", "protected-name"),
    ("rebind F", "import numpy as F", "protected-name"),
    ("walrus rebind", "(assert_close := print)", "protected-name"),
    ("del a protected name", "del assert_close", "protected-name"),
    (
        "global rebind",
        "def f():\n    global assert_close\n    assert_close = print",
        "global-statement",
    ),
    ("import rebinds builtin", "from math import floor as range", "protected-name"),
    # Classes that lie to the tests.
    ("metaclass", "class A(nn.Module, metaclass=type):\n    pass", "class-keyword"),
    (
        "tensor subclass",
        "class T(torch.Tensor):\n    def all(self):\n        return True",
        "class-base",
    ),
    ("dict subclass", "class D(dict):\n    pass", "class-base"),
    ("computed base", "class A(*[nn.Module]):\n    pass", "class-base"),
    ("__eq__", "class A:\n    def __eq__(self, other):\n        return True", "dunder-method"),
    ("__torch_function__", "class A(nn.Module):\n    __torch_function__ = None", "dunder-name"),
    (
        "__getattr__",
        "class A:\n    def __getattr__(self, name):\n        return 0",
        "dunder-method",
    ),
    (
        "override parameters",
        "class Net(nn.Module):\n    def parameters(self, recurse=True):\n        return iter([])",
        "override",
    ),
    (
        "override through self",
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.modules = lambda: iter([])",
        "override",
    ),
    ("override state_dict", "class Opt(torch.optim.Optimizer):\n    state_dict = dict", "override"),
    ("class decorator", "@torch.no_grad()\nclass A:\n    pass", "class-decorator"),
    # Frames, hooks, rich output, code that runs when Python frees a generator.
    ("generator frame", "def g():\n    yield 1\n\ng().gi_frame.f_globals", "denied-name"),
    ("tensor hook", "def f(x):\n    x.register_hook(lambda grad: grad * 0)", "hook"),
    ("module hook", "def f(model):\n    model.register_forward_hook(print)", "hook"),
    ("library internals via self", _MODULE_HOOKS_VIA_SELF, "private-attribute"),
    (
        "raw html output",
        "class A:\n    def _repr_html_(self):\n        return '<script>'",
        "rich-output",
    ),
    ("display", "display(1)", "ipython"),
    ("yield in finally", _GENERATOR_FINALLY, "generator-cleanup"),
    ("code from a string", "import torch.utils.benchmark", "forbidden-import"),
    ("print a function's source", "from course_lib.source import show_source", "denied-name"),
    (
        "__wrapped__ on a library function",
        "import functools\nfunctools.update_wrapper(F.pad, print)",
        "denied-name",
    ),
    ("profiler replaces the profile function", "import torch.profiler", "forbidden-import"),
    (
        "parametrization swaps a module's class",
        "def f(m):\n    torch.nn.utils.parametrize.register_parametrization(m, 'weight', m)",
        "forbidden-module",
    ),
    ("weight norm hook", "def f(m):\n    return nn.utils.weight_norm(m)", "hook"),
]


@pytest.mark.parametrize(("name", "code", "rule"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_caught(name, code, rule):
    found = rules("ps2_pooling_batchnorm", code)
    assert rule in found, f"{name}: expected {rule!r}, got {found}"


def test_reading_test_variables_is_caught():
    # `return expected`: the hidden test binds `expected` just before calling the student.
    code = "def conv2d_loops(x, weight, bias=None, stride=1, padding=0):\n    return expected"
    assert rules("ps1_convolution", code, after="conv2d_loops") == ["test-variable"]
    # A generator expression runs when it is consumed: inside a test, like a function.
    assert rules("ps1_convolution", "later = (expected for _ in range(1))", after="setup") == [
        "test-variable"
    ]
    # Top level, after a test cell: its (hidden) data.
    assert rules("ps1_convolution", "print(x.sum(), gen)", after="test_conv2d_loops_basic") == [
        "test-variable"
    ]
    # Held-out data of problem set 5, from inside a function the test calls.
    code = "def predict(model, images, batch_size=256):\n    return held_out_score"
    assert rules("ps5_train_cnn", code, after="predict") == ["test-variable"]


def test_rebinding_between_test_cells_is_caught_only_where_a_test_reads_it():
    # test_accuracy_90 reads held_out_score, computed by test_accuracy_80.
    assert rules("ps5_train_cnn", "held_out_score = 1.0", after="test_accuracy_80") == [
        "protected-name"
    ]
    # The compute budget is the instructor's: the training cell and a hidden test read it.
    assert rules("ps5_train_cnn", "BUDGET = 10**12", after="training_choices") == ["protected-name"]
    # EPOCHS is the student's own choice, in their cell or any later one.
    assert rules("ps5_train_cnn", "EPOCHS = 50", after="training_choices") == []
    # Looking at the trained model after the training cell is fine.
    assert rules("ps5_train_cnn", "print(model)", after="train") == []


def test_instructor_helpers_and_data_are_protected():
    assert rules("ps4_optimizers", "FORBIDDEN_NAMES.clear()", after="test_helpers") == [
        "mutate-data"
    ]
    code = "def compare_with_torch(*args, **kwargs):\n    return [1.0, 0.0]"
    assert rules("ps4_optimizers", code, after="test_helpers") == ["protected-name"]
    # Importing again what the setup imports is harmless.
    code = "import torch\nimport torch.nn.functional as F\nfrom course_lib.checks import forbid"
    assert rules("ps4_optimizers", code, after="test_helpers") == []


# ------------------------------------------------------------------- which cells are checked


def _set_source(nb, grade, text):
    for cell in nb.cells:
        if grade_id(cell) == grade:
            cell.source = text
    return nb


def test_test_and_read_only_cells_are_the_instructors():
    """A test cell keeps its grade_id: nbgrader restores the instructor's source, so what the
    student wrote there never runs and is not judged; only the restored code counts."""
    ps = "ps1_convolution"
    nb = _set_source(copy.deepcopy(submission("example-complete", ps)), "test_im2col", "eval('1')")
    assert check_notebook(nb, ps, source=source(ps)) == []


def test_cells_without_instructor_metadata_are_the_students():
    ps = "ps1_convolution"
    nb = copy.deepcopy(submission("example-complete", ps))
    test_cell = next(cell for cell in nb.cells if grade_id(cell) == "test_im2col")
    del test_cell.metadata["nbgrader"]  # stripped: it runs as the student's code
    test_cell.source = "eval('1')"
    invented = nbformat.v4.new_code_cell("exec('1')")
    invented.metadata["nbgrader"] = {"grade": True, "locked": True, "grade_id": "my_test"}
    nb.cells.append(invented)  # a grade_id the source does not have: not the instructor's
    found = check_notebook(nb, ps, source=source(ps))
    assert [(v.cell, v.rule) for v in found] == [
        (f"cell {nb.cells.index(test_cell)}", "forbidden-builtin"),
        ("my_test", "forbidden-builtin"),
    ]


def test_violation_fields_and_report():
    ps = "ps1_convolution"
    nb = with_cell(ps, "x = 1\ny = eval('2')")
    (violation,) = check_notebook(nb, ps, source=source(ps))
    index = next(i for i, cell in enumerate(nb.cells) if cell.source.startswith("x = 1"))
    assert violation == Violation(f"cell {index}", 2, "forbidden-builtin", violation.message)
    assert "eval" in violation.message and "not allowed" in violation.message
    assert format_violations([violation]).startswith(f"cell {index}, line 2 [forbidden-builtin]")


def test_a_cell_that_does_not_compile_runs_nothing():
    assert rules("ps1_convolution", "def f(:\n    eval('1')") == []


# ------------------------------------------------------------------- configuration


def test_allow_list_is_configurable_per_assignment():
    ps = "ps1_convolution"
    nb = with_cell(ps, "import sklearn\nimport numpy as np")
    config = Config()
    config.SubmissionPolicy.assignment_allowed_imports = {ps: ["sklearn"]}
    config.SubmissionPolicy.assignment_denied_imports = {ps: ["numpy"]}
    found = check_notebook(nb, ps, config, source=source(ps))
    assert [v.rule for v in found] == ["forbidden-import"] and "numpy" in found[0].message
    other = check_notebook(nb, "ps9_other", config, source=source(ps))
    assert [v.rule for v in other] == ["forbidden-import"] and "sklearn" in other[0].message


def test_denied_names_per_assignment_and_disabled_policy():
    ps = "ps1_convolution"
    nb = with_cell(ps, "import numpy as np\nnp.convolve([1, 2], [1])")
    config = Config()
    config.SubmissionPolicy.assignment_denied_names = {ps: ["numpy.convolve"]}
    assert [v.rule for v in check_notebook(nb, ps, config, source=source(ps))] == ["denied-name"]
    assert check_notebook(nb, ps, source=source(ps)) == []
    assert check_notebook(with_cell(ps, "eval('1')"), ps, SubmissionPolicy(enabled=False)) == []


def test_hooks_can_be_allowed_per_assignment():
    ps = "ps2_pooling_batchnorm"
    nb = with_cell(ps, "def f(model):\n    model.register_forward_hook(print)")
    assert [v.rule for v in check_notebook(nb, ps, source=source(ps))] == ["hook"]
    policy = SubmissionPolicy(hooks_allowed_in=[ps])
    assert check_notebook(nb, ps, policy, source=source(ps)) == []


def test_source_notebook_from_the_course_directory(tmp_path):
    ps = "ps1_convolution"
    folder = tmp_path / "solutions" / ps
    folder.mkdir(parents=True)
    nbformat.write(source(ps), str(folder / f"{ps}.ipynb"))
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.source_directory = "solutions"
    assert [v.rule for v in check_notebook(with_cell(ps, "eval('1')"), ps, config)] == [
        "forbidden-builtin"
    ]
    with pytest.raises(PolicyError, match="no source notebook"):
        check_notebook(with_cell(ps, "1"), "ps_missing", config)


def test_the_course_config_configures_the_policy():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    policy = SubmissionPolicy(config=config)
    assert "numpy.convolve" in policy.denied_names_for("ps1_convolution")
    assert "numpy.convolve" not in policy.denied_names_for("ps5_train_cnn")
    ps = "ps1_convolution"
    nb = with_cell(ps, "import numpy as np\nnp.correlate([1, 2], [1])")
    assert [v.rule for v in check_notebook(nb, ps, config, source=source(ps))] == ["denied-name"]
    # Problem set 5's locked data cell drops the 1,000 held-out digits: loading the set again
    # (to train on them) is denied in the student's cells.
    ps = "ps5_train_cnn"
    code = "from course_lib.data import load_mnist_5k\nall_images, all_labels = load_mnist_5k()"
    nb = with_cell(ps, code, after="training_choices")
    assert "denied-name" in {v.rule for v in check_notebook(nb, ps, config, source=source(ps))}
