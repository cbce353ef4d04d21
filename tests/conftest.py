"""Shared fixtures: every device-aware test runs on CPU and, when present, on CUDA and MPS."""

from __future__ import annotations

import pytest
import torch


def _available_devices() -> list:
    params = [pytest.param("cpu", id="cpu")]
    cuda_ok = torch.cuda.is_available()
    params.append(
        pytest.param(
            "cuda", id="cuda", marks=pytest.mark.skipif(not cuda_ok, reason="no CUDA device")
        )
    )
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    params.append(
        pytest.param("mps", id="mps", marks=pytest.mark.skipif(not mps_ok, reason="no MPS device"))
    )
    return params


@pytest.fixture(params=_available_devices())
def device(request) -> torch.device:
    """A torch.device to run the test on: cpu always, cuda / mps when the machine has them."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def full_float32():
    """Turn off TF32 (10-bit mantissa) for float32 matmuls and convolutions on CUDA."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
