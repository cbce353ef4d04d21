"""Speed of the course's convolutions and pools relative to PyTorch's, on every device present.

    python benchmarks/conv_speed.py            # CPU, and CUDA / MPS when available
    python benchmarks/conv_speed.py --quick    # smaller sizes

Prints median times and ratios (ours / PyTorch's): the loop convolution exists to teach, so
its ratio is in the hundreds; the im2col convolution should stay within a small factor of
``F.conv2d``. Also prints im2col's memory blow-up (column matrix bytes / input bytes), the
price of turning a convolution into one matrix multiply.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_lib import conv, pooling


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels, allocator, caches
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def available_devices() -> list[torch.device]:
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append(torch.device("mps"))
    return devices


def bench_device(device: torch.device, quick: bool) -> None:
    batch = 8 if quick else 32
    x = torch.randn(batch, 64, 32, 32, device=device)
    w = torch.randn(128, 64, 3, 3, device=device)
    b = torch.randn(128, device=device)
    repeats = 5 if quick else 20
    print(f"\n== {device} ({torch.get_num_threads()} CPU threads) ==")
    print(f"conv 3x3, x {tuple(x.shape)}, weight {tuple(w.shape)}, padding 1")
    t_torch = median_seconds(lambda: F.conv2d(x, w, b, padding=1), device, repeats)
    t_ours = median_seconds(lambda: conv.conv2d(x, w, b, padding=1), device, repeats)
    print(f"  F.conv2d            {t_torch * 1e3:9.2f} ms   1.0x")
    print(f"  conv.conv2d (im2col){t_ours * 1e3:9.2f} ms   {t_ours / t_torch:6.1f}x F.conv2d")

    small = torch.randn(1, 3, 16, 16, device=device)
    small_w = torch.randn(4, 3, 3, 3, device=device)
    t_naive = median_seconds(lambda: conv.conv2d_naive(small, small_w, padding=1), device, 2)
    t_small = median_seconds(lambda: F.conv2d(small, small_w, padding=1), device, repeats)
    print(
        f"  conv2d_naive on {tuple(small.shape)}: {t_naive * 1e3:.1f} ms = "
        f"{t_naive / t_small:,.0f}x F.conv2d on the same input"
    )

    cols = conv.im2col(x, 3, padding=1)
    blow_up = cols.numel() / x.numel()
    mebibytes = cols.numel() * cols.element_size() / 2**20
    print(f"  im2col memory: columns are {blow_up:.1f}x the input ({mebibytes:.1f} MiB)")

    print("max pool 2x2 stride 2, avg pool 2x2 stride 2 on x")
    for name, ours, theirs in [
        ("max_pool2d", lambda: pooling.max_pool2d(x, 2), lambda: F.max_pool2d(x, 2)),
        ("avg_pool2d", lambda: pooling.avg_pool2d(x, 2), lambda: F.avg_pool2d(x, 2)),
    ]:
        t_o = median_seconds(ours, device, repeats)
        t_t = median_seconds(theirs, device, repeats)
        print(
            f"  {name:<12} ours {t_o * 1e3:8.2f} ms, torch {t_t * 1e3:8.2f} ms, "
            f"ratio {t_o / t_t:5.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    torch.manual_seed(0)
    for device in available_devices():
        bench_device(device, args.quick)


if __name__ == "__main__":
    main()
