"""Tolerances for comparing floating-point results: the library contract and the problem-set rule.

Library contract (``TOLERANCE``, used by the tests of ``course_lib`` against PyTorch's operators):
float64 results agree to 1e-10, float32 results to 1e-5. ``course_lib`` is one fixed
implementation whose error was measured; the problem sets grade many.

Problem-set rule (``float32_tolerance``), for every float32 comparison in a graded test:

1. A correct method may add its terms in any order and through any intermediate: window by
   window, im2col and a matrix product, running sums, a summed-area table (prefix sums over the
   whole plane). Its rounding error grows like ``n * eps`` times the size of the partial sums,
   where ``n`` is the number of terms on the longest chain of additions a correct method may use:
   ``C_in * K_h * K_w`` for one convolution output, ``H * W`` for pooling a plane (a summed-area
   table adds the whole plane), ``m`` for a statistic over ``m`` values (batch norm).
2. Compare with ``atol = rtol = SAFETY * n * eps(float32)`` for inputs of unit scale
   (``torch.randn``); multiply ``atol`` by the inputs' scale for larger inputs.
   ``SAFETY = 16``: the correct methods measured in ``tests/test_tolerances.py`` (direct and
   sequential loops, im2col + einsum, summed-area tables, two-pass variances) stay within 3.3
   ``n * eps``, so the rule leaves a margin of about 5; real mistakes (a shifted window, a
   missing term) miss by orders of magnitude more.
3. Never set a tolerance from the reference solution's own error: another correct method may be
   less lucky. Exact operations (copying windows, max, arg-max routing without overlap) compare
   with ``atol = rtol = 0``.
4. float64 comparisons use ``FLOAT64_TOLERANCE`` = 1e-10: five orders of magnitude above float64
   rounding, so no correct method fails, and tight enough that computing in float32 inside
   (errors ~1e-7) does.

The graded notebooks cannot import this module (the grader runs them in the student's folder),
so their hidden tests write the rule out: ``tol = 16 * n * torch.finfo(torch.float32).eps``,
with a comment pointing here. A numerically unstable formula is not a correct method: the
one-pass variance ``E[x^2] - mu^2`` cancels catastrophically in float32 (problem set 2 says so).
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, settings

DTYPES = [torch.float64, torch.float32]
TOLERANCE = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
}
SAFETY = 16
FLOAT64_TOLERANCE = 1e-10


def float32_tolerance(n_terms: int, scale: float = 1.0) -> float:
    """``atol`` (= ``rtol``) for a float32 result whose longest sum adds ``n_terms`` values.

    ``scale`` is the size of the inputs (1 for ``torch.randn``). See the rule in the module doc.
    """
    if n_terms < 1:
        raise ValueError(f"n_terms must be at least 1, got {n_terms}")
    return SAFETY * n_terms * torch.finfo(torch.float32).eps * scale


# `device` is a function-scoped fixture; it does not change between hypothesis examples.
PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
