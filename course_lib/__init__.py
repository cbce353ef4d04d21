"""Reference implementations for the CNN course, one module per lecture topic.

    conv      convolution arithmetic, naive and im2col convolutions, counting
    pooling   max / average / global average pooling and the max-pool backward pass
    norm      batch normalization (functional and ``BatchNorm2d``)
    resnet    residual blocks, CIFAR ResNets, their plain twins, gradient norms
    optim     SGD, AdaGrad, RMSProp, Adam, AdamW as ``torch.optim.Optimizer`` subclasses
    train     devices, seeding, the fit / evaluate loop
    data      CIFAR-10 and offline real datasets, augmentations
    plot      image grids, feature maps, filters, curves, optimizer trajectories
    checks    helpers for autograded tests (clear failure messages, forbidden calls)
    source    ``show_source``: the real code of an implementation, shown in a lecture
    transfer  a pretrained CNN, linear probes and fine-tuning on a new task (lecture 6)
    receptive receptive fields layer by layer and from gradients, the effective receptive field
    weight_init  Xavier and He initialisation, per-layer signal statistics
    schedules learning-rate schedules, per-step training, mini-batch gradient noise
    architectures  Inception, pre-activation, DenseNet and depthwise-separable blocks, counts
    interpret saliency, occlusion, Grad-CAM and a task that checks them

Importing ``course_lib`` is cheap: submodules load on first use, so
``import course_lib`` never pulls in matplotlib, torchvision or scikit-learn.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = (
    "conv",
    "pooling",
    "norm",
    "resnet",
    "optim",
    "train",
    "data",
    "plot",
    "checks",
    "source",
    "transfer",
    "receptive",
    "weight_init",
    "schedules",
    "architectures",
    "interpret",
)

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> ModuleType:
    # PEP 562 lazy submodules: `course_lib.plot` imports matplotlib only when used.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")
