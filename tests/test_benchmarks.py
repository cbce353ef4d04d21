"""benchmarks/library_speed.py runs end to end (tiny settings) and its arithmetic is right."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def library_speed():
    spec = importlib.util.spec_from_file_location(
        "library_speed", ROOT / "benchmarks" / "library_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["library_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["library_speed"]


def test_slope_of_a_power_law(library_speed):
    points = [(p, 3.0 * p**1.5) for p in (10, 20, 40, 80)]
    assert math.isclose(library_speed._slope(points), 1.5)


def test_compare_reports_paired_ratios(library_speed):
    course_ms, torch_ms, ratio, q1, q3 = library_speed.compare(
        lambda: sum(range(2000)), lambda: sum(range(1000)), blocks=3, block_seconds=0.001
    )
    assert course_ms > 0 and torch_ms > 0 and q1 <= ratio <= q3


def test_every_case_builds_and_quick_rows_run(library_speed, monkeypatch, capsys):
    cases = library_speed.all_cases(quick=True)
    operations = {case.operation for case in cases}
    expected = ["conv2d fwd+bwd", "max_pool2d fwd", "avg_pool2d fwd+bwd", "batch_norm eval"]
    expected += ["Adam step (foreach)", "train.evaluate"]
    assert set(expected) <= operations
    tiny = ["--no-memory", "--blocks", "3", "--block-seconds", "0.001"]
    argv = ["library_speed.py", "--quick", "--only", "pool2d fwd", *tiny]
    monkeypatch.setattr(sys, "argv", argv)
    # pinning this test process to one core would slow every later test in it
    monkeypatch.setattr(library_speed, "_pin_and_limit_threads", lambda cpu: -1)
    library_speed.main()
    out = capsys.readouterr().out
    assert "| max_pool2d fwd |" in out and "load average" in out


def test_grading_throughput_rate_after_the_first_round():
    """benchmarks/grading_throughput.py: the finished-submission lines it counts are the ones
    the workers log, and the rate after the first round leaves the first round out."""
    from course_tools.grading.parallel import result_line
    from course_tools.grading.runner import submission_line
    from course_tools.grading.workers import SubmissionResult

    spec = importlib.util.spec_from_file_location(
        "grading_throughput", ROOT / "benchmarks" / "grading_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    line = result_line(SubmissionResult("ps1_convolution", "s0001-partial", "graded", 3.25))
    assert module.FINISHED.match(line)
    skipped = result_line(SubmissionResult("ps1_convolution", "s0002", "skipped"))
    assert not module.FINISHED.match(skipped)
    failed = result_line(SubmissionResult("ps1_convolution", "s0003", "failed", error="boom"))
    assert not module.FINISHED.match(failed)
    # the one-by-one runner ("before") logs the same line for each graded submission
    assert module.FINISHED.match(submission_line("ps1_convolution", "s0004-cheat", "graded", 12.04))
    # two workers: the first round ends at 7 s; 4 more submissions in the 8 s after it
    assert module.rate_after_first_round([6.5, 7.0, 9.0, 11.0, 13.0, 15.0], 2) == 60 * 4 / 8
    assert math.isnan(module.rate_after_first_round([5.0, 6.0], 2))


def test_sandbox_overhead_benchmark_swaps_only_the_execute_step(tmp_path):
    """benchmarks/sandbox_overhead.py's "plain" course: the course's configuration with nbgrader's
    stock Execute in place of the sandboxed GradingExecute, every other step unchanged."""
    from traitlets.config.loader import PyFileConfigLoader

    spec = importlib.util.spec_from_file_location(
        "sandbox_overhead", ROOT / "benchmarks" / "sandbox_overhead.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    course_config = (ROOT / "nbgrader_config.py").read_text()
    (tmp_path / "nbgrader_config.py").write_text(course_config + module.UNSANDBOXED)
    plain = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    sandboxed = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    steps, plain_steps = (
        sandboxed.Autograde.autograde_preprocessors,
        plain.Autograde.autograde_preprocessors,
    )
    assert "course_tools.grading.execute.GradingExecute" in steps
    assert plain_steps == [
        "nbgrader.preprocessors.Execute" if p.endswith("GradingExecute") else p for p in steps
    ]
