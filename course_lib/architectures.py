"""An architecture tour beyond VGG and ResNet, with parameter and multiply-add counts (lecture 07).

A convolution with C_in input and C_out output channels, a K x K kernel and ``groups`` groups
has ``C_out (C_in / groups) K^2`` weights (+ C_out biases) and costs
``H_out W_out C_out (C_in / groups) K^2`` multiply-adds: every output value is one dot product
of length ``(C_in / groups) K^2``. Batch norm has 2 C learned parameters per layer (its running
statistics are buffers, not parameters).

    counting             conv_params, conv_macs
    GoogLeNet (2014)     InceptionModule, inception_params, inception_macs
    pre-activation       PreActBlock, preact_block_params            (He et al., 2016)
    DenseNet (2017)      DenseLayer, DenseBlock, dense_block_params
    MobileNet (2017)     DepthwiseSeparableConv, depthwise_separable_params,
                         depthwise_separable_macs, mobilenet_v1

Each ``*_params`` / ``*_macs`` function is the closed form of the matching module; the tests
check it against ``count_parameters`` and the hook-based ``course_lib.resnet.block_macs``.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib._validate import check_int

__all__ = [
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparableConv",
    "InceptionModule",
    "PreActBlock",
    "conv_macs",
    "conv_params",
    "dense_block_params",
    "depthwise_separable_macs",
    "depthwise_separable_params",
    "inception_macs",
    "inception_params",
    "mobilenet_v1",
    "preact_block_params",
]


# ----------------------------------------------------------------------------------------------
# counting
# ----------------------------------------------------------------------------------------------


def _check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    check_int(groups, "groups", 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups must divide both channel counts; got C_in={in_channels}, "
            f"C_out={out_channels}, groups={groups}"
        )


def conv_params(
    in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, bias: bool = True
) -> int:
    """``C_out (C_in / groups) K^2 (+ C_out)``: the weights and biases of one ``nn.Conv2d``."""
    for value, name in (
        (in_channels, "in_channels"),
        (out_channels, "out_channels"),
        (kernel_size, "kernel_size"),
    ):
        check_int(value, name, 1)
    _check_groups(in_channels, out_channels, groups)
    return out_channels * (in_channels // groups) * kernel_size**2 + (out_channels if bias else 0)


def conv_macs(
    in_channels: int, out_channels: int, kernel_size: int, output_size: int, groups: int = 1
) -> int:
    """``H_out W_out C_out (C_in / groups) K^2`` multiply-adds (``output_size`` = H_out = W_out)."""
    check_int(output_size, "output_size", 1)
    weights = conv_params(in_channels, out_channels, kernel_size, groups, bias=False)
    return output_size**2 * weights


# ----------------------------------------------------------------------------------------------
# GoogLeNet's Inception module (Szegedy et al., 2015)
# ----------------------------------------------------------------------------------------------


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2), nn.ReLU()
    )


class InceptionModule(nn.Module):
    """Four branches side by side, concatenated on the channel axis (GoogLeNet, "Inception v1").

    ``branch1``: 1x1 conv to ``c1``; ``branch3``: 1x1 "reduce" to ``c3_reduce``, then 3x3 to
    ``c3``; ``branch5``: 1x1 reduce to ``c5_reduce``, then 5x5 to ``c5``; ``branch_pool``:
    3x3 max pool (stride 1), then 1x1 "pool projection" to ``pool_proj``. Every conv has a
    bias and a ReLU, as in the paper. Input ``(N, C_in, H, W)``, output
    ``(N, c1 + c3 + c5 + pool_proj, H, W)``. The cheap 1x1 reductions in front of the 3x3 and
    5x5 convolutions are what make the module affordable.
    """

    def __init__(
        self,
        in_channels: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        c5_reduce: int,
        c5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = _conv_relu(in_channels, c1, 1)
        self.branch3 = nn.Sequential(
            _conv_relu(in_channels, c3_reduce, 1), _conv_relu(c3_reduce, c3, 3)
        )
        self.branch5 = nn.Sequential(
            _conv_relu(in_channels, c5_reduce, 1), _conv_relu(c5_reduce, c5, 5)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), _conv_relu(in_channels, pool_proj, 1)
        )
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


def inception_params(
    in_channels: int,
    c1: int,
    c3_reduce: int,
    c3: int,
    c5_reduce: int,
    c5: int,
    pool_proj: int,
    bias: bool = True,
) -> int:
    """Parameters of :class:`InceptionModule`: six convolutions (``bias=False``: weights only,
    as the GoogLeNet paper's table counts them)."""
    return (
        conv_params(in_channels, c1, 1, bias=bias)
        + conv_params(in_channels, c3_reduce, 1, bias=bias)
        + conv_params(c3_reduce, c3, 3, bias=bias)
        + conv_params(in_channels, c5_reduce, 1, bias=bias)
        + conv_params(c5_reduce, c5, 5, bias=bias)
        + conv_params(in_channels, pool_proj, 1, bias=bias)
    )


def inception_macs(
    in_channels: int,
    c1: int,
    c3_reduce: int,
    c3: int,
    c5_reduce: int,
    c5: int,
    pool_proj: int,
    size: int,
) -> int:
    """Multiply-adds of :class:`InceptionModule` on a ``size x size`` input."""
    weights = inception_params(in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, bias=False)
    return size**2 * weights


# ----------------------------------------------------------------------------------------------
# pre-activation residual block (He, Zhang, Ren and Sun, "Identity mappings", 2016)
# ----------------------------------------------------------------------------------------------


class PreActBlock(nn.Module):
    """``x + conv(relu(bn(conv(relu(bn(x))))))``: batch norm and ReLU *before* each convolution.

    Nothing follows the addition, so the shortcut is a clean identity from block to block
    (the original ResNet block ends with a ReLU after the sum). When the shape changes
    (``stride != 1`` or ``in_channels != out_channels``) the shortcut is a bias-free 1x1
    convolution with that stride, applied to the pre-activated input ``relu(bn1(x))``.
    Input ``(N, C_in, H, W)``, output ``(N, C_out, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            if needs_projection
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


def preact_block_params(in_channels: int, out_channels: int, stride: int = 1) -> int:
    """Parameters of :class:`PreActBlock`: two BNs, two bias-free 3x3 convs, a 1x1 projection?"""
    projection = stride != 1 or in_channels != out_channels
    return (
        2 * in_channels
        + conv_params(in_channels, out_channels, 3, bias=False)
        + 2 * out_channels
        + conv_params(out_channels, out_channels, 3, bias=False)
        + (conv_params(in_channels, out_channels, 1, bias=False) if projection else 0)
    )


# ----------------------------------------------------------------------------------------------
# DenseNet (Huang, Liu, van der Maaten and Weinberger, 2017)
# ----------------------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-1x1 conv to ``bn_size * k`` channels, BN-ReLU-3x3 conv to ``k``.

    Input: the concatenation of every earlier feature map ``(N, C_in, H, W)``; output: ``k``
    (the *growth rate*) new channels ``(N, k, H, W)``. Attribute names follow torchvision's
    ``_DenseLayer``, so its weights load into this class.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; layer ``l`` sees the concatenation of the input and all
    ``l - 1`` earlier outputs (``C_in + (l - 1) k`` channels).

    Input ``(N, C_in, H, W)``, output ``(N, C_in + num_layers * k, H, W)``: the block only
    *adds* channels. Children ``denselayer1 ..`` as in torchvision's ``_DenseBlock``.
    """

    def __init__(
        self, in_channels: int, growth_rate: int, num_layers: int, bn_size: int = 4
    ) -> None:
        check_int(num_layers, "num_layers", 1)
        super().__init__(
            {
                f"denselayer{i + 1}": DenseLayer(
                    in_channels + i * growth_rate, growth_rate, bn_size
                )
                for i in range(num_layers)
            }
        )
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


def dense_block_params(
    in_channels: int, growth_rate: int, num_layers: int, bn_size: int = 4
) -> int:
    """Parameters of :class:`DenseBlock`: per layer ``l`` with ``c = C_in + (l - 1) k`` inputs,
    ``2c + c (bn_size k) + 2 (bn_size k) + (bn_size k) k 9``."""
    total = 0
    width = bn_size * growth_rate
    for layer in range(num_layers):
        c = in_channels + layer * growth_rate
        total += 2 * c + conv_params(c, width, 1, bias=False) + 2 * width
        total += conv_params(width, growth_rate, 3, bias=False)
    return total


# ----------------------------------------------------------------------------------------------
# MobileNet's depthwise-separable convolution (Howard et al., 2017)
# ----------------------------------------------------------------------------------------------


class DepthwiseSeparableConv(nn.Module):
    """A K x K convolution split in two: *depthwise* (one K x K filter per channel,
    ``groups = C_in``) then *pointwise* (a 1x1 convolution mixing the channels), each followed by
    BN and ReLU, as in MobileNet v1.

    Weights: ``C_in K^2 + C_in C_out`` instead of ``C_in C_out K^2``, a fraction
    ``1 / C_out + 1 / K^2`` of a standard convolution (multiply-adds likewise).
    Input ``(N, C_in, H, W)``, output ``(N, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=in_channels,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.depthwise(x)))
        return torch.relu(self.bn2(self.pointwise(x)))


def depthwise_separable_params(in_channels: int, out_channels: int, kernel_size: int = 3) -> int:
    """Parameters of :class:`DepthwiseSeparableConv`: ``C_in K^2 + 2C_in + C_in C_out + 2C_out``."""
    depthwise = conv_params(in_channels, in_channels, kernel_size, groups=in_channels, bias=False)
    pointwise = conv_params(in_channels, out_channels, 1, bias=False)
    return depthwise + 2 * in_channels + pointwise + 2 * out_channels


def depthwise_separable_macs(
    in_channels: int, out_channels: int, output_size: int, kernel_size: int = 3
) -> int:
    """Multiply-adds: ``H_out W_out (C_in K^2 + C_in C_out)``."""
    depthwise = conv_macs(in_channels, in_channels, kernel_size, output_size, groups=in_channels)
    return depthwise + conv_macs(in_channels, out_channels, 1, output_size)


# (output channels, stride) of MobileNet v1's 13 depthwise-separable layers (Howard et al., Table 1)
MOBILENET_V1_LAYERS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)  # fmt: skip


def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3) -> nn.Sequential:
    """MobileNet v1 (width 1.0): a 3x3 stride-2 conv to 32 channels, 13 depthwise-separable
    layers (:data:`MOBILENET_V1_LAYERS`), global average pooling and one linear layer.

    On a 224x224 image: 4,231,976 parameters and 568.7 million multiply-adds (the paper's
    "4.2 M" and "569 M"). The paper's Table 1 gives the second-to-last depthwise layer stride 2,
    but its output stays 7x7: it is stride 1.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
    ]
    channels = 32
    for out_channels, stride in MOBILENET_V1_LAYERS:
        layers.append(DepthwiseSeparableConv(channels, out_channels, stride))
        channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
