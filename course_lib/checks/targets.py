"""Dotted names of forbidden things ("torch.nn.functional.conv2d", "torch.Tensor.unfold",
"course_lib.resnet.BasicBlock") and the objects they name."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable

MISSING = object()


def resolve_owner(target: str) -> tuple[object, str]:
    """Split ``"pkg.module.Owner.attr"`` into the object that holds ``attr`` and ``attr``.

    The longest importable prefix is the module; the rest is followed with ``getattr``
    (so ``"torch.Tensor.unfold"`` gives ``(torch.Tensor, "unfold")``).
    """
    parts = target.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"forbid() needs a dotted name like 'torch.conv2d'; got {target!r}")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for part in parts[split:-1]:
            if not hasattr(owner, part):
                raise ValueError(f"cannot forbid {target!r}: {owner!r} has no attribute {part!r}")
            owner = getattr(owner, part)
        if not hasattr(owner, parts[-1]):
            raise ValueError(f"cannot forbid {target!r}: it does not exist")
        return owner, parts[-1]
    raise ValueError(f"cannot forbid {target!r}: no importable module in that name")


def resolve_target(target: str) -> tuple[object, str, object]:
    """``(owner, attribute name, the object itself)``; raises ValueError for a bad name."""
    owner, attr = resolve_owner(target)
    return owner, attr, inspect.getattr_static(owner, attr)


def resolve_targets(targets: Iterable[str]) -> dict[str, object]:
    """Dotted target -> the object it names; targets missing from the installed version are
    left out (nothing to catch)."""
    resolved: dict[str, object] = {}
    for target in targets:
        try:
            resolved[target] = resolve_target(target)[2]
        except ValueError:
            continue
    return resolved


def import_dotted(name: str) -> object:
    """The object an absolute dotted name (``"course_lib.conv.conv2d"``) names, or MISSING."""
    try:
        return resolve_target(name)[2]
    except (ValueError, ImportError):
        try:
            return importlib.import_module(name)
        except ImportError:
            return MISSING
