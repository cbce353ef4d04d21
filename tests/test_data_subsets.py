"""course_lib.data.class_subset and few_per_class: new tasks and few-label draws from a dataset."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from course_lib.data import class_subset, few_per_class


def _dataset() -> TensorDataset:
    labels = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3, 2, 2])
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    return TensorDataset(images, labels)


def test_class_subset_keeps_order_and_relabels_in_the_given_order():
    subset = class_subset(_dataset(), (2, 0))
    images, labels = subset.tensors
    assert images.flatten().tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 9.0]
    assert labels.tolist() == [1, 0, 0, 1, 0, 0]


def test_class_subset_rejects_bad_classes_and_inputs():
    with pytest.raises(ValueError, match="do not occur"):
        class_subset(_dataset(), (1, 7))
    with pytest.raises(ValueError, match="distinct"):
        class_subset(_dataset(), (1, 1))
    with pytest.raises(TypeError, match="TensorDataset"):
        class_subset([(torch.zeros(1), 0)], (0,))


def test_few_per_class_draws_per_class_and_nests_with_the_same_seed():
    one = few_per_class(_dataset(), 1, seed=3)
    two = few_per_class(_dataset(), 2, seed=3)
    assert sorted(one.tensors[1].tolist()) == [0, 1, 2, 3]
    assert sorted(two.tensors[1].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert set(one.tensors[0].flatten().tolist()) <= set(two.tensors[0].flatten().tolist())
    assert torch.equal(one.tensors[0], few_per_class(_dataset(), 1, seed=3).tensors[0])


def test_few_per_class_says_which_class_is_too_small():
    with pytest.raises(ValueError, match="class 0 has only 2"):
        few_per_class(_dataset(), 3)
    with pytest.raises(ValueError, match="per_class"):
        few_per_class(_dataset(), 0)
