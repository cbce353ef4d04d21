"""The problem-set tolerance rule of `tests/tolerances.py` accepts correct methods, rejects bugs.

Each correct method here is one a student may well write (and some earlier hidden tests failed,
e.g. a summed-area-table average pool that landed within 1e-6 of a 1e-6 tolerance). The rule
must accept all of them with a margin, and reject the usual mistakes by far.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from tolerances import SAFETY, float32_tolerance

MARGIN = 4  # every correct method stays within 1/MARGIN of the tolerance


def _worst_ratio(got: torch.Tensor, expected: torch.Tensor, tol: float) -> float:
    """max |got - expected| / (tol + tol |expected|): <= 1 passes an isclose(atol=rtol=tol)."""
    excess = (got.double() - expected.double()).abs() / (tol + tol * expected.double().abs())
    return float(excess.max())


# --- average pooling: the summed-area table -------------------------------------------------


def avg_pool_windows(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    return x.unfold(2, k, s).unfold(3, k, s).mean(dim=(-1, -2))


def avg_pool_summed_area(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Prefix sums over the whole plane, then four corners per window."""
    n, c, h, w = x.shape
    table = x.new_zeros(n, c, h + 1, w + 1)
    table[:, :, 1:, 1:] = x.cumsum(2).cumsum(3)
    rows = torch.arange((h - k) // s + 1)[:, None] * s
    cols = torch.arange((w - k) // s + 1)[None, :] * s
    total = (
        table[:, :, rows + k, cols + k]
        - table[:, :, rows, cols + k]
        - table[:, :, rows + k, cols]
        + table[:, :, rows, cols]
    )
    return total / (k * k)


def avg_pool_row_then_column(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Sum each row's window, then the column of row sums (a separable box filter)."""
    rows = x.unfold(3, k, s).sum(-1)
    return rows.unfold(2, k, s).sum(-1) / (k * k)


def _pool_cases(count: int):
    rng = random.Random(22)
    gen = torch.Generator().manual_seed(22)
    for _ in range(count):
        k = rng.randint(1, 4)
        s = rng.choice([1, 2, 3, k])
        h, w = rng.randint(k, 11), rng.randint(k, 11)
        x = torch.randn(rng.randint(1, 3), rng.randint(1, 4), h, w, generator=gen)
        yield x, k, s


def test_correct_average_pools_pass_with_a_margin():
    worst = 0.0
    for x, k, s in _pool_cases(400):
        expected = F.avg_pool2d(x, k, stride=s)
        tol = float32_tolerance(x.shape[2] * x.shape[3])
        for method in (avg_pool_windows, avg_pool_summed_area, avg_pool_row_then_column):
            worst = max(worst, _worst_ratio(method(x, k, s), expected, tol))
    assert worst <= 1 / MARGIN, f"a correct average pool uses {worst:.2f} of the tolerance"


def test_average_pool_mistakes_fail_by_far():
    for x, k, s in _pool_cases(50):
        if min(x.shape[2:]) < k + 1 or k == 1:
            continue
        expected = F.avg_pool2d(x, k, stride=s)
        tol = float32_tolerance(x.shape[2] * x.shape[3])
        shifted = avg_pool_windows(x[:, :, 1:, :], k, s)  # windows start one row late
        rows = min(shifted.shape[2], expected.shape[2])
        assert _worst_ratio(shifted[:, :, :rows], expected[:, :, :rows], tol) > 100
        one_short = x.unfold(2, k, s).unfold(3, k, s).flatten(-2)[..., 1:].sum(-1) / (k * k)
        assert _worst_ratio(one_short, expected, tol) > 100


# --- convolution: any order of the C_in * K_h * K_w products -------------------------------


def conv_sequential(x, w, stride, padding):
    """Accumulate one (channel, tap) product map at a time: the longest chain of additions."""
    n, c, h, width = x.shape
    f, _, kh, kw = w.shape
    xp = F.pad(x, (padding,) * 4)
    oh, ow = (h + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    out = x.new_zeros(n, f, oh, ow)
    for ci in range(c):
        for u in range(kh):
            for v in range(kw):
                tap = xp[:, ci, u : u + stride * (oh - 1) + 1 : stride,
                         v : v + stride * (ow - 1) + 1 : stride]  # fmt: skip
                out += tap[:, None] * w[None, :, ci, u, v, None, None]
    return out


def conv_im2col(x, w, stride, padding):
    cols = F.unfold(x, w.shape[2:], stride=stride, padding=padding)
    out = torch.einsum("fk,nkl->nfl", w.flatten(1), cols)
    oh = (x.shape[2] + 2 * padding - w.shape[2]) // stride + 1
    return out.reshape(x.shape[0], w.shape[0], oh, -1)


def test_correct_convolutions_pass_with_a_margin():
    rng = random.Random(2)
    gen = torch.Generator().manual_seed(12)
    worst = 0.0
    for _ in range(200):
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        stride, padding = rng.randint(1, 3), rng.randint(0, 2)
        h, width = (
            rng.randint(max(1, kh - 2 * padding), 12),
            rng.randint(max(1, kw - 2 * padding), 12),
        )
        c = rng.randint(1, 5)
        x = torch.randn(rng.randint(1, 3), c, h, width, generator=gen)
        w = torch.randn(rng.randint(1, 5), c, kh, kw, generator=gen)
        expected = F.conv2d(x, w, stride=stride, padding=padding)
        tol = float32_tolerance(c * kh * kw)
        for method in (conv_sequential, conv_im2col):
            worst = max(worst, _worst_ratio(method(x, w, stride, padding), expected, tol))
    assert worst <= 1 / MARGIN, f"a correct convolution uses {worst:.2f} of the tolerance"


# --- batch norm: two-pass statistics -------------------------------------------------------


def test_two_pass_batch_norm_passes_and_the_one_pass_variance_is_unstable():
    gen = torch.Generator().manual_seed(31)
    worst_two_pass = worst_one_pass = 0.0
    for _ in range(100):
        for shape in [(3, 5), (5, 2, 1, 1), (8, 3, 5, 5), (2, 4, 3, 7)]:
            x = torch.randn(shape, generator=gen) * 4 - 1
            dims = [0, *range(2, x.dim())]
            m = x.numel() // x.shape[1]
            expected = F.batch_norm(x, None, None, training=True, eps=1e-3)
            mean = x.mean(dims, keepdim=True)
            two_pass = ((x - mean) ** 2).mean(dims, keepdim=True)
            one_pass = (x * x).mean(dims, keepdim=True) - mean**2
            tol = float32_tolerance(m)
            worst_two_pass = max(
                worst_two_pass,
                _worst_ratio((x - mean) / torch.sqrt(two_pass + 1e-3), expected, tol),
            )
            worst_one_pass = max(
                worst_one_pass,
                _worst_ratio((x - mean) / torch.sqrt(one_pass + 1e-3), expected, tol),
            )
    assert worst_two_pass <= 1 / MARGIN, f"two-pass batch norm uses {worst_two_pass:.2f}"
    assert worst_one_pass > 1, "the one-pass variance should be visibly less accurate"


def test_rule_values():
    eps = torch.finfo(torch.float32).eps
    assert float32_tolerance(121) == SAFETY * 121 * eps  # an 11 x 11 plane: about 2.3e-4
    assert float32_tolerance(27, scale=4.0) == 4 * float32_tolerance(27)
