"""course_lib.checks: failure messages students read, forbidden calls, source inspection."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import (
    ForbiddenCallError,
    assert_close,
    calls_in_source,
    forbid,
    uses_any,
)

# ---------------------------------------------------------------------------------- assert_close


def _message(actual, expected, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, **kwargs)
    return str(info.value)


def test_assert_close_passes_within_tolerance():
    x = torch.randn(2, 3, 4, 4)
    assert_close(x + 1e-8, x)
    assert_close(x.double(), x.double(), atol=0, rtol=0)
    assert_close(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]))
    assert_close(torch.tensor([3, 4]), torch.tensor([3, 4]))
    assert_close(0.75, 0.75)
    assert_close(torch.tensor(0.75, dtype=torch.float64), 0.75)


def test_assert_close_reports_largest_difference_and_where():
    expected = torch.zeros(2, 3, 4, 4)
    actual = expected.clone()
    actual[1, 2, 3, 0] = 0.5
    actual[0, 0, 0, 0] = 0.1
    text = _message(actual, expected, name="conv2d(x, w)")
    assert text.startswith("conv2d(x, w) does not match")
    assert "2 of 96 elements differ" in text
    assert "largest absolute difference: 0.5 at index (1, 2, 3, 0)" in text
    assert "got 0.5, expected 0" in text
    assert "(2, 3, 4, 4)" in text and "torch.float32" in text


def test_assert_close_points_at_nan_first():
    expected = torch.ones(5)
    actual = expected.clone()
    actual[0] = 100.0
    actual[3] = float("nan")
    text = _message(actual, expected)
    assert "at index (3,)" in text and "1 NaN" in text


def test_assert_close_shape_dtype_device_messages():
    x = torch.randn(2, 3)
    shape_text = _message(x.T, x, name="out")
    assert "out has the wrong shape: expected (2, 3), got (3, 2)" in shape_text
    dtype_text = _message(x.float(), x.double())
    assert "wrong dtype: expected torch.float64, got torch.float32" in dtype_text
    assert "dtype=x.dtype" in dtype_text
    assert_close(x.float(), x.double(), check_dtype=False)


def test_assert_close_explains_missing_return_and_wrong_types():
    x = torch.randn(4, 2)
    none_text = _message(None, x, name="relu(x)")
    assert "relu(x) is None" in none_text and "return" in none_text and "(4, 2)" in none_text
    numpy_text = _message(x.numpy(), x)
    assert "numpy.ndarray of shape (4, 2)" in numpy_text and "torch.Tensor" in numpy_text
    list_text = _message([1.0, 2.0], x)
    assert "list of length 2" in list_text


def test_assert_close_scalar_message():
    text = _message(0.4, 0.5, name="accuracy")
    assert text.startswith("accuracy is 0.4, expected 0.5")


def test_assert_close_rtol_is_relative_to_expected():
    expected = torch.tensor([1000.0])
    assert_close(expected + 0.005, expected, atol=0, rtol=1e-5)
    _message(expected + 0.02, expected, atol=0, rtol=1e-5)


# ------------------------------------------------------------------------------------ forbid

_X = torch.randn(1, 2, 5, 5)
_W = torch.randn(3, 2, 3, 3)


FORBIDDEN_USES = {
    "torch.nn.functional.conv2d": lambda: F.conv2d(_X, _W),
    "torch.conv2d": lambda: torch.conv2d(_X, _W),
    "torch.Tensor.unfold": lambda: _X.unfold(2, 3, 1),
    "torch.optim.Adam": lambda: torch.optim.Adam([torch.zeros(1, requires_grad=True)]),
}


@pytest.mark.parametrize("target", FORBIDDEN_USES)
def test_forbid_blocks_functions_methods_and_classes(target):
    with pytest.raises(ForbiddenCallError, match=re.escape(target)) as info:
        with forbid(target):
            FORBIDDEN_USES[target]()
    assert "not allowed in this exercise" in str(info.value)
    assert isinstance(info.value, AssertionError)  # a graded cell fails


def test_forbid_lets_other_code_run_and_changes_nothing():
    originals = (F.conv2d, torch.conv2d, torch.optim.Adam, torch.Tensor.unfold)
    with forbid(*FORBIDDEN_USES):
        # nothing is replaced: the library is the same objects inside the block
        assert (F.conv2d, torch.conv2d, torch.optim.Adam, torch.Tensor.unfold) == originals
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        assert issubclass(torch.optim.Adam, torch.optim.Optimizer)
        assert (_X[:, :, :3, :3] * _W).sum().isfinite()
    assert "unfold" not in vars(torch.Tensor)
    assert _X.unfold(2, 3, 1).shape == (1, 2, 3, 5, 3)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    # nn.Conv2d runs a convolution: blocked as well
    with pytest.raises(ForbiddenCallError):
        with forbid("torch.nn.functional.conv2d"):
            torch.nn.Conv2d(2, 3, 3)(_X)


def test_forbid_restores_after_an_exception():
    original = F.conv2d
    with pytest.raises(ZeroDivisionError):
        with forbid("torch.nn.functional.conv2d"):
            1 / 0  # noqa: B018
    assert F.conv2d is original
    F.conv2d(_X, _W)


def test_forbid_sees_aliases_bound_before_entry():
    alias = F.conv2d  # the old attribute-patching forbid missed this
    with pytest.raises(ForbiddenCallError, match="torch.nn.functional.conv2d"):
        with forbid("torch.nn.functional.conv2d"):
            alias(_X, _W)


def test_a_caught_forbidden_call_still_fails_the_block():
    def sneaky(x, w):
        try:
            return F.conv2d(x, w)
        except ForbiddenCallError:
            return torch.zeros(1)

    with pytest.raises(ForbiddenCallError, match="conv2d"):
        with forbid("torch.nn.functional.conv2d"):
            sneaky(_X, _W)


def test_forbid_nested_same_target():
    with pytest.raises(ForbiddenCallError):
        with forbid("torch.nn.functional.relu"):
            with forbid("torch.nn.functional.relu"):
                F.relu(_X)
    F.relu(_X)


@pytest.mark.parametrize("target", ["conv2d", "torch.nn.functional.no_such_op", "no_such_pkg.f"])
def test_forbid_rejects_bad_targets_and_changes_nothing(target):
    original = F.conv2d
    with pytest.raises(ValueError, match="forbid"):
        with forbid("torch.nn.functional.conv2d", target):
            pass
    assert F.conv2d is original


# -------------------------------------------------------------------------- calls_in_source


def _student_conv(x, w):
    conv = F.conv2d  # alias

    def helper(t):
        return t.pad(1).unfold(2, 3, 1)

    out = torch.zeros(1)
    from torch.nn.functional import pad as p  # noqa: F401

    return conv(x, w) + helper(out) + getattr(torch, "conv2d")(x, w)  # noqa: B009


class _StudentNet(torch.nn.Module):
    def forward(self, x):
        return self.scale(torch.relu(x))

    @staticmethod
    def scale(x):
        return torch.nn.functional.max_pool2d(x, 2)


def test_calls_in_source_finds_calls_aliases_and_nested_code():
    names = calls_in_source(_student_conv)
    for expected in [
        "F.conv2d",  # referenced, then called through an alias
        "conv",
        "torch.zeros",
        "t.pad",
        "unfold",  # method called on an expression
        "torch.nn.functional.pad",  # imported inside the function
        "torch.conv2d",  # getattr(torch, "conv2d")
        "helper",
    ]:
        assert expected in names, f"{expected!r} missing from {sorted(names)}"
    assert "torch.nn" not in names  # only outermost attribute chains


def test_calls_in_source_on_a_class_includes_all_methods():
    names = calls_in_source(_StudentNet)
    assert {"torch.relu", "self.scale", "torch.nn.functional.max_pool2d"} <= names


def test_uses_any_matches_whole_dotted_suffixes():
    assert uses_any(_student_conv, ["conv2d", "unfold", "max_pool2d"]) == ["conv2d", "unfold"]
    assert uses_any(_student_conv, ["functional.pad", "functional.conv2d"]) == ["functional.pad"]
    assert uses_any(_StudentNet, ["pool2d"]) == []  # "max_pool2d" is not the suffix "pool2d"


def test_calls_in_source_of_a_function_defined_in_a_notebook_cell():
    """In IPython, inspect.getsource finds a cell's code through linecache; classes fall back."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        "import torch\nimport torch.nn.functional as F\n"
        "from course_lib.checks import calls_in_source, uses_any",
        "def my_conv(x, w):\n    c = F.conv2d\n    return c(x, w)\n\n"
        "class Net(torch.nn.Module):\n    def forward(self, x):\n        return x.unfold(2, 3, 1)",
        "print(sorted(calls_in_source(my_conv)), sorted(calls_in_source(Net)), "
        "uses_any(my_conv, ['conv2d']))",
    ]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    printed = "".join(out.get("text", "") for out in notebook.cells[-1].outputs)
    assert printed.strip() == "['F.conv2d', 'c'] ['x.unfold'] ['conv2d']"
