"""course_lib.checks.refers_to_any: forbidden objects reached through aliases."""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.functional import unfold as my_unfold

import course_lib.resnet as resnet_alias
from course_lib.checks import refers_to_any, uses_any

aliased_conv = F.conv2d


def _via_import_alias(x):
    return my_unfold(x, 2)


def _via_assignment_alias(x, w):
    return aliased_conv(x, w)


def _via_module_alias(x):
    return F.max_pool2d(x, 2)


def _clean(x, w):
    windows = x.unfold(2, 2, 1)  # a local variable: not resolvable, not reported
    return windows.sum() + (w * 2).sum()


class _Borrowed(resnet_alias.BasicBlock):
    pass


class _Own(nn.Module):
    def forward(self, x):
        return F.relu(x)


def test_import_alias_is_found_where_uses_any_is_blind():
    assert uses_any(_via_import_alias, ["unfold"]) == []
    assert refers_to_any(_via_import_alias, ["torch.nn.functional.unfold"]) == [
        "torch.nn.functional.unfold"
    ]


def test_assignment_and_module_aliases():
    targets = ["torch.nn.functional.conv2d", "torch.nn.functional.max_pool2d"]
    assert refers_to_any(_via_assignment_alias, targets) == ["torch.nn.functional.conv2d"]
    assert refers_to_any(_via_module_alias, targets) == ["torch.nn.functional.max_pool2d"]


def test_clean_function_and_unknown_targets():
    targets = ["torch.nn.functional.unfold", "torch.nn.functional.conv2d", "torch.no_such_op"]
    assert refers_to_any(_clean, targets) == []


def test_base_classes_count():
    targets = ["course_lib.resnet.BasicBlock", "course_lib.resnet.CifarResNet"]
    assert refers_to_any(_Borrowed, targets) == ["course_lib.resnet.BasicBlock"]
    assert refers_to_any(_Own, targets) == []
    assert refers_to_any(_Own, ["torch.nn.functional.relu"]) == ["torch.nn.functional.relu"]


def test_order_follows_targets():
    targets = ["torch.nn.functional.max_pool2d", "torch.nn.functional.conv2d"]
    assert refers_to_any(_via_module_alias, targets[::-1]) == ["torch.nn.functional.max_pool2d"]
