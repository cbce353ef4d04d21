"""Pretrain the small CNN that lecture 6 reuses for transfer learning, and write its checkpoint.

    python scripts/pretrain_transfer.py                     # checkpoints/transfer_cnn_shapes.*
    python scripts/pretrain_transfer.py --output-dir /tmp/x  # elsewhere, e.g. to compare

Offline, on the CPU with one thread (about 30 s): course_lib.transfer.pretrain trains
TransferCNN on the source task (5 shape classes of course_lib.data.synthetic_cifar, 5,000
images) and records the settings and the test accuracy in the JSON next to the weights.
With the same PyTorch version on the same kind of CPU the file is reproduced byte for byte;
elsewhere rounding may differ slightly (tests/test_transfer.py checks the accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from course_lib.transfer import CHECKPOINT, pretrain, save_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output-dir", type=Path, default=CHECKPOINT.parent, help="where to write the files"
    )
    parser.add_argument("--epochs", type=int, default=8, help="passes over the source data")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # one thread: the same reduction order, run after run
    start = time.perf_counter()
    model, info = pretrain(epochs=args.epochs)
    info["command"] = "python scripts/pretrain_transfer.py" + (
        f" --epochs {args.epochs}" if args.epochs != 8 else ""
    )
    path = save_checkpoint(model, info, args.output_dir / CHECKPOINT.name)
    elapsed = time.perf_counter() - start
    print(json.dumps(json.loads(path.with_suffix(".json").read_text()), indent=2))
    print(f"wrote {path} ({path.stat().st_size:,} bytes) in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
