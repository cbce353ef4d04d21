"""Tolerances shared by the tests that compare course_lib with PyTorch's operators.

The issue's contract: float64 results agree to 1e-10, float32 results to 1e-5.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, settings

DTYPES = [torch.float64, torch.float32]
TOLERANCE = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
}
# `device` is a function-scoped fixture; it does not change between hypothesis examples.
PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
