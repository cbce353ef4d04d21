"""course_lib against PyTorch, operation by operation: time ratios, growth with size, peak memory.

    python benchmarks/library_speed.py               # the full table (quiet machine, ~10 min)
    python benchmarks/library_speed.py --quick       # smaller sizes, fewer blocks (a few minutes)
    python benchmarks/library_speed.py --only pool   # the rows whose operation contains "pool"

Method. Every row times a ``course_lib`` call and its PyTorch counterpart on the same inputs,
in one process pinned to one CPU core (``os.sched_setaffinity``, like ``taskset``) with one
PyTorch thread, by default on the process's CPU-time clock (``time.process_time``: with one
thread it equals the elapsed time on a quiet machine, and it does not count the time other
processes hold the core; ``--clock wall`` measures elapsed time instead). After a warm-up, the
two alternate block by block (course, torch, torch, course, ...; a block is as many calls as
fill ``--block-seconds``), and the row reports the median of the paired ratios course/torch
with their interquartile range: a slow moment on a shared machine hits one pair, not the
whole comparison. The convolution is also timed over a sweep of image sizes; the slope of
log(time) against log(pixels) says how each grows (1.0 is linear). Peak memory is measured for
the forward+backward rows in fresh processes: the high-water mark of the resident set during
one call, minus the resident set before it (inputs already allocated; Linux only). The load
average is printed before and after, since other processes slow both sides of a pair but not
necessarily equally.

Targets (issue #12): conv2d forward+backward at most 2.5x F.conv2d, with a size-sweep slope
at most 10% above F.conv2d's (its time grows no faster with the image size) and at most 2.5x
its peak memory; max/avg pooling and batch norm at
most 2x (forward, forward+backward, eval); the optimizers' foreach path at most 1.1x
torch.optim's foreach=True, bit-identical; rows without a target check for regressions.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import conv, norm, optim, pooling, train

Thunk = Callable[[], object]


@dataclass
class Case:
    """One row: ``make()`` builds the inputs and returns (course call, torch call)."""

    operation: str
    shape: str
    make: Callable[[], tuple[Thunk, Thunk]]
    target: float | None = None
    memory: bool = False
    note: Callable[[], str] | None = None
    sweep: str | None = None  # rows of one size sweep share this name ...
    pixels: int = 0  # ... and are fitted against their pixel count


@dataclass
class Result:
    case: Case
    course_ms: float
    torch_ms: float
    ratio: float
    q1: float
    q3: float
    memory: tuple[float, float] | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------
def _forward_backward(op: Callable[..., torch.Tensor], inputs: list, grad_out: torch.Tensor):
    def call() -> None:
        for tensor in inputs:
            tensor.grad = None
        op().backward(grad_out)

    return call


def conv_case(n, c_in, size, c_out, stride=1, backward=True, sweep=None, target=2.5) -> Case:
    def make():
        torch.manual_seed(0)
        x = torch.randn(n, c_in, size, size, requires_grad=backward)
        w = torch.randn(c_out, c_in, 3, 3, requires_grad=backward)
        b = torch.randn(c_out, requires_grad=backward)
        if not backward:
            return (
                lambda: conv.conv2d(x, w, b, stride, 1),
                lambda: F.conv2d(x, w, b, stride, 1),
            )
        grad = torch.randn_like(F.conv2d(x, w, b, stride, 1))
        return (
            _forward_backward(lambda: conv.conv2d(x, w, b, stride, 1), [x, w, b], grad),
            _forward_backward(lambda: F.conv2d(x, w, b, stride, 1), [x, w, b], grad),
        )

    kind = "fwd+bwd" if backward else "fwd"
    shape = f"{n}x{c_in}x{size}x{size} -> {c_out}, 3x3" + (f" s{stride}" if stride > 1 else "")
    memory = backward and sweep is None
    return Case(f"conv2d {kind}", shape, make, target, memory, sweep=sweep, pixels=size * size)


def pool_case(kind, shape, kernel, stride, padding, backward) -> Case:
    ours = pooling.max_pool2d if kind == "max" else pooling.avg_pool2d
    theirs = F.max_pool2d if kind == "max" else F.avg_pool2d

    def make():
        torch.manual_seed(0)
        x = torch.randn(shape, requires_grad=backward)
        if not backward:
            return (
                lambda: ours(x, kernel, stride, padding),
                lambda: theirs(x, kernel, stride, padding),
            )
        grad = torch.randn_like(theirs(x, kernel, stride, padding))
        return (
            _forward_backward(lambda: ours(x, kernel, stride, padding), [x], grad),
            _forward_backward(lambda: theirs(x, kernel, stride, padding), [x], grad),
        )

    pad = f" p{padding}" if padding else ""
    return Case(
        f"{kind}_pool2d {'fwd+bwd' if backward else 'fwd'}",
        f"{'x'.join(map(str, shape))}, {kernel}x{kernel} s{stride}{pad}",
        make,
        2.0,
        memory=backward,
    )


def batch_norm_case(shape: tuple[int, ...], mode: str) -> Case:
    def make():
        torch.manual_seed(0)
        channels = shape[1]
        backward = mode == "train fwd+bwd"
        x = (torch.randn(shape) * 2 + 1).requires_grad_(backward)
        gamma = (torch.rand(channels) + 0.5).requires_grad_(backward)
        beta = torch.randn(channels).requires_grad_(backward)
        ours_stats = [torch.zeros(channels), torch.ones(channels)]
        torch_stats = [torch.zeros(channels), torch.ones(channels)]
        training = mode != "eval"

        def ours():
            return norm.batch_norm(x, gamma, beta, *ours_stats, training=training)

        def theirs():
            return F.batch_norm(x, *torch_stats, gamma, beta, training=training)

        if not backward:
            return ours, theirs
        grad = torch.randn_like(x)
        return (
            _forward_backward(ours, [x, gamma, beta], grad),
            _forward_backward(theirs, [x, gamma, beta], grad),
        )

    return Case(
        f"batch_norm {mode}", "x".join(map(str, shape)), make, 2.0, memory=mode == "train fwd+bwd"
    )


def _resnet18_like_parameters() -> list[torch.Tensor]:
    """The 62 parameter tensors of a CIFAR ResNet-18 (11.2 M numbers)."""
    from course_lib.resnet import resnet18_cifar

    torch.manual_seed(0)
    return [p.detach().clone() for p in resnet18_cifar().parameters()]


def optimizer_case(name, ours_cls, torch_cls, kwargs, foreach: bool, label: str) -> Case:
    """One step of an optimizer over ResNet-18's parameters with fixed gradients."""

    def setup(cls, extra):
        params = [nn.Parameter(p) for p in _resnet18_like_parameters()]
        generator = torch.Generator().manual_seed(1)
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer = cls(params, **kwargs, **extra)
        optimizer.step()  # create the state
        return params, optimizer

    def make():
        _, ours = setup(ours_cls, {"foreach": foreach})
        _, theirs = setup(torch_cls, {"foreach": foreach})
        return ours.step, theirs.step

    def identical() -> str:
        runs = []
        for cls in (ours_cls, torch_cls):
            params, optimizer = setup(cls, {"foreach": foreach})
            for _ in range(3):
                optimizer.step()
            runs.append(params)
        same = all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
        return "bit-identical" if same else "DIFFERENT"

    path = "foreach" if foreach else "loop"
    target = 1.1 if foreach else None
    return Case(f"{name} step ({path})", label, make, target, note=identical)


def _small_cnn(course: bool) -> nn.Module:
    """Conv-BN-ReLU-pool twice and a linear layer; course_lib's layers or torch.nn's."""
    conv_layer = conv.Conv2d if course else nn.Conv2d
    bn_layer = norm.BatchNorm2d if course else nn.BatchNorm2d

    class MaxPool(nn.Module):
        def forward(self, x):
            return pooling.max_pool2d(x, 2) if course else F.max_pool2d(x, 2)

    torch.manual_seed(0)
    block1 = [conv_layer(3, 32, 3, padding=1), bn_layer(32), nn.ReLU(), MaxPool()]
    block2 = [conv_layer(32, 64, 3, padding=1), bn_layer(64), nn.ReLU(), MaxPool()]
    return nn.Sequential(*block1, *block2, nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


def model_step_case(batch: int) -> Case:
    def make():
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,))
        calls = []
        for course in (True, False):
            model = _small_cnn(course)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(model=model, optimizer=optimizer):
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                optimizer.step()

            calls.append(step)
        return calls[0], calls[1]

    return Case("CNN training step", f"{batch}x3x32x32, course vs torch layers", make, 2.5)


def loop_case(which: str) -> Case:
    """course_lib.train's loops against a plain PyTorch loop over the same loader."""

    def make():
        torch.manual_seed(0)
        images, labels = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
        data = torch.utils.data.TensorDataset(images, labels)
        loader = torch.utils.data.DataLoader(data, batch_size=32)
        model = _small_cnn(course=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        loss_fn = nn.CrossEntropyLoss()
        if which == "train_one_epoch":

            def ours():
                train.train_one_epoch(model, loader, optimizer, loss_fn, "cpu")

            def plain():
                model.train()
                total = 0.0
                for x, y in loader:
                    optimizer.zero_grad()
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    optimizer.step()
                    total += loss.item()
                return total

            return ours, plain

        def ours_eval():
            train.evaluate(model, loader, loss_fn, "cpu")

        def plain_eval():
            model.eval()
            total = 0.0
            with torch.no_grad():
                for x, y in loader:
                    total += loss_fn(model(x), y).item()
            return total

        return ours_eval, plain_eval

    return Case(f"train.{which}", "512 images, batch 32 (vs a plain loop)", make, None)


def all_cases(quick: bool) -> list[Case]:
    n = 8 if quick else 32
    cases = [
        conv_case(n, 64, 32, 64, backward=False),
        conv_case(n, 64, 32, 64),
        conv_case(n, 64, 56, 64),
        conv_case(4 * n, 3, 32, 64),
        conv_case(4 * n, 128, 8, 128),
        conv_case(n, 64, 56, 128, stride=2),
    ]
    sweep_n, sizes = (4, (16, 32, 48)) if quick else (16, (16, 24, 32, 48, 64, 96))
    cases += [conv_case(sweep_n, 64, s, 64, sweep="conv2d fwd+bwd") for s in sizes]
    pool_shape = (n, 64, 56, 56)
    small_pool = (2 * n, 32, 32, 32)
    for backward in (False, True):
        cases += [
            pool_case("max", pool_shape, 3, 2, 1, backward),
            pool_case("max", small_pool, 2, 2, 0, backward),
            pool_case("avg", pool_shape, 3, 2, 1, backward),
            pool_case("avg", small_pool, 2, 2, 0, backward),
        ]
    for shape in [(n, 64, 56, 56), (4 * n, 256, 8, 8), (8 * n, 512), (8 * n, 4096)]:
        for mode in ("train fwd", "train fwd+bwd", "eval"):
            cases.append(batch_norm_case(shape, mode))
    resnet_label = "ResNet-18 parameters (62 tensors, 11.2M)"
    for name, ours_cls, torch_cls, kwargs in [
        ("SGD", optim.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.9, weight_decay=5e-4)),
        ("AdaGrad", optim.AdaGrad, torch.optim.Adagrad, dict(lr=0.01)),
        ("RMSProp", optim.RMSProp, torch.optim.RMSprop, dict(lr=0.01)),
        ("Adam", optim.Adam, torch.optim.Adam, dict(lr=1e-3)),
        ("AdamW", optim.AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.05)),
    ]:
        cases.append(optimizer_case(name, ours_cls, torch_cls, kwargs, True, resnet_label))
    for name, ours_cls, torch_cls, kwargs in [
        ("SGD", optim.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.9)),
        ("Adam", optim.Adam, torch.optim.Adam, dict(lr=1e-3)),
    ]:
        cases.append(optimizer_case(name, ours_cls, torch_cls, kwargs, False, resnet_label))
    cases += [model_step_case(n), loop_case("train_one_epoch"), loop_case("evaluate")]
    return cases


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def _block_seconds(fn: Thunk, calls: int) -> float:
    start = clock()
    for _ in range(calls):
        fn()
    return clock() - start


def compare(course: Thunk, reference: Thunk, blocks: int, block_seconds: float) -> tuple:
    """Median times (ms) and the median and quartiles of the paired per-block ratios."""
    for _ in range(2):  # warm-up: allocator, caches, lazy initialisation
        course()
        reference()
    single = min(_block_seconds(course, 1), _block_seconds(reference, 1))
    calls = max(1, math.ceil(block_seconds / max(single, 1e-6)))
    course_times, reference_times = [], []
    for block in range(blocks):
        # alternate which side goes first, so a drift in speed favours neither
        if block % 2 == 0:
            course_times.append(_block_seconds(course, calls) / calls)
            reference_times.append(_block_seconds(reference, calls) / calls)
        else:
            reference_times.append(_block_seconds(reference, calls) / calls)
            course_times.append(_block_seconds(course, calls) / calls)
    ratios = [c / r for c, r in zip(course_times, reference_times, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return (
        statistics.median(course_times) * 1e3,
        statistics.median(reference_times) * 1e3,
        statistics.median(ratios),
        q1,
        q3,
    )


def _status_bytes(field_name: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (resident high-water mark) from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def peak_memory_child(index: int, side: int, quick: bool) -> None:
    """In a fresh process: the peak extra resident memory of one call (MiB), printed."""
    _pin_and_limit_threads(None)
    fns = all_cases(quick)[index].make()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset the high-water mark to the current resident size
    before = _status_bytes("VmRSS")
    fns[side]()
    print((_status_bytes("VmHWM") - before) / 2**20)


def peak_memory(index: int, quick: bool) -> tuple[float, float]:
    """Peak extra memory of one course call and one torch call, each in its own process."""
    values = []
    for side in (0, 1):
        command = [sys.executable, __file__, "--peak-memory", str(index), str(side)]
        if quick:
            command.append("--quick")
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        values.append(float(out.stdout.strip().splitlines()[-1]))
    return values[0], values[1]


def _pin_and_limit_threads(cpu: int | None) -> int:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        chosen = allowed[-1] if cpu is None else cpu
        os.sched_setaffinity(0, {chosen})
        return chosen
    return -1


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) against log(pixels)."""
    xs = [math.log(p) for p, _ in points]
    ys = [math.log(t) for _, t in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return cov / sum((x - mean_x) ** 2 for x in xs)


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------
def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return "yes" if value <= target else "NO"


def print_table(results: list[Result]) -> None:
    header = (
        "| operation | shape | course ms | torch ms | course/torch (median) | IQR | "
        "peak MiB course / torch | target | met |"
    )
    print(header)
    print("|" + "---|" * 9)
    for r in results:
        memory = f"{r.memory[0]:.0f} / {r.memory[1]:.0f}" if r.memory else ""
        note = f" {r.note}" if r.note else ""
        target = f"<= {r.case.target:g}x" if r.case.target else ""
        met = _verdict(r.ratio, r.case.target)
        if r.memory and r.case.operation.startswith("conv2d") and r.memory[1] > 0:
            met += "" if r.memory[0] / r.memory[1] <= 2.5 else " (memory NO)"
        if r.note == "DIFFERENT":
            met = "NO"
        print(
            f"| {r.case.operation}{note} | {r.case.shape} | {r.course_ms:.2f} | "
            f"{r.torch_ms:.2f} | {r.ratio:.2f}x | {r.q1:.2f}-{r.q3:.2f} | {memory} | "
            f"{target} | {met} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer blocks")
    parser.add_argument("--only", default="", help="run the rows whose operation contains this")
    parser.add_argument("--blocks", type=int, default=None, help="paired blocks per row")
    parser.add_argument("--block-seconds", type=float, default=None, help="length of a block")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: this process's CPU time (default; robust on a shared machine), wall: elapsed",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--peak-memory", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_memory:
        peak_memory_child(*args.peak_memory, args.quick)
        return

    global clock
    clock = CLOCKS[args.clock]
    cpu = _pin_and_limit_threads(args.cpu)
    blocks = args.blocks or (5 if args.quick else 9)
    block_seconds = args.block_seconds or (0.05 if args.quick else 0.2)
    print(
        f"torch {torch.__version__}, 1 thread pinned to CPU {cpu}, {args.clock} clock, {blocks} "
        f"paired blocks of >= {block_seconds:g} s per row; load average {_load()} (before)"
    )
    cases = all_cases(args.quick)
    results, highest_load = [], os.getloadavg()[0]
    for index, case in enumerate(cases):
        if args.only and args.only not in case.operation:
            continue
        course, reference = case.make()
        timing = compare(course, reference, blocks, block_seconds)
        del course, reference
        memory = peak_memory(index, args.quick) if case.memory and not args.no_memory else None
        note = case.note() if case.note else ""
        results.append(Result(case, *timing, memory=memory, note=note))
        highest_load = max(highest_load, os.getloadavg()[0])
        print(f"  measured {case.operation} {case.shape}: {timing[2]:.2f}x", file=sys.stderr)

    print_table(results)
    sweeps: dict[str, list[Result]] = {}
    for r in results:
        if r.case.sweep:
            sweeps.setdefault(r.case.sweep, []).append(r)
    for name, rows in sweeps.items():
        if len(rows) < 2:
            continue
        course = _slope([(r.case.pixels, r.course_ms) for r in rows])
        reference = _slope([(r.case.pixels, r.torch_ms) for r in rows])
        sizes = ", ".join(r.case.shape.split(" ")[0] for r in rows)
        verdict = "yes" if course <= 1.10 * reference else "NO"
        print(
            f"\n{name} size sweep ({sizes}): slope of log(time) vs log(pixels) "
            f"course {course:.3f}, torch {reference:.3f}, ratio {course / reference:.3f} "
            f"(target: course grows at most 10% faster than torch: {verdict}; a slope of 1 "
            "is linear)"
        )
    print(f"\nload average {_load()} (after); highest 1-minute load seen: {highest_load:.2f}")


if __name__ == "__main__":
    main()
