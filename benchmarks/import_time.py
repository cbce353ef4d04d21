"""How long `import course_lib` (and each submodule) takes beyond `import torch`.

    python benchmarks/import_time.py

Each figure is the best of five fresh interpreters. The budget is 1 s beyond torch for
`import course_lib`; submodules that need matplotlib or torchvision (plot, data) pay for
them on first use only.
"""

from __future__ import annotations

import subprocess
import sys

STATEMENTS = [
    "import course_lib",
    "import course_lib.conv, course_lib.pooling, course_lib.norm",
    "import course_lib.resnet, course_lib.optim, course_lib.train",
    "import course_lib.data",
    "import course_lib.plot",
]


def seconds_beyond_torch(statement: str, repeats: int = 5) -> float:
    code = (
        "import time, torch\n"
        "start = time.perf_counter()\n"
        f"{statement}\n"
        "print(time.perf_counter() - start)\n"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{statement!r} failed:\n{out.stderr}")
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def main() -> None:
    budget = 1.0
    print(f"{'statement':<62} {'seconds':>8} {'of budget':>10}")
    for statement in STATEMENTS:
        seconds = seconds_beyond_torch(statement)
        print(f"{statement:<62} {seconds:8.3f} {seconds / budget:9.1%}")


if __name__ == "__main__":
    main()
