"""course_lib.architectures: closed-form counts against the modules, torchvision and the papers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.architectures import (
    DenseBlock,
    DepthwiseSeparableConv,
    InceptionModule,
    PreActBlock,
    conv_macs,
    conv_params,
    dense_block_params,
    depthwise_separable_macs,
    depthwise_separable_params,
    inception_macs,
    inception_params,
    mobilenet_v1,
    preact_block_params,
)
from course_lib.resnet import block_macs, count_parameters


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "groups"), [(3, 8, 3, 1), (16, 32, 1, 1), (12, 12, 3, 12), (8, 16, 5, 4)]
)
def test_conv_counts_match_nn_conv2d(c_in: int, c_out: int, k: int, groups: int) -> None:
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups)
    assert conv_params(c_in, c_out, k, groups) == count_parameters(conv)
    assert conv_params(c_in, c_out, k, groups, bias=False) == conv.weight.numel()
    assert conv_macs(c_in, c_out, k, 7, groups) == block_macs(conv, (c_in, 7, 7))


# GoogLeNet, Table 1: (input channels, size, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_3A = (192, 64, 96, 128, 16, 32, 32)
INCEPTION_3B = (256, 128, 128, 192, 32, 96, 64)


@pytest.mark.parametrize("config", [INCEPTION_3A, INCEPTION_3B, (10, 2, 3, 4, 1, 5, 6)])
def test_inception_module_counts_and_shape(config) -> None:
    module = InceptionModule(*config)
    assert count_parameters(module) == inception_params(*config)
    assert block_macs(module, (config[0], 9, 9)) == inception_macs(*config, size=9)
    out = module(torch.randn(2, config[0], 9, 9))
    assert out.shape == (2, module.out_channels, 9, 9)
    assert module.out_channels == config[1] + config[3] + config[5] + config[6]


def test_inception_3a_and_3b_match_the_paper() -> None:
    # "params 159K, ops 128M" and "380K, 304M" (K = 1024, weights only, 28x28 input)
    assert inception_params(*INCEPTION_3A, bias=False) / 1024 == 159.5
    assert round(inception_macs(*INCEPTION_3A, size=28) / 1e6) == 128
    assert inception_params(*INCEPTION_3B, bias=False) / 1024 == 379.0  # the paper says 380K
    assert round(inception_macs(*INCEPTION_3B, size=28) / 1e6) == 304


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(16, 16, 1), (16, 32, 2), (8, 24, 1)])
def test_preact_block_counts_and_shape(c_in: int, c_out: int, stride: int) -> None:
    block = PreActBlock(c_in, c_out, stride)
    assert count_parameters(block) == preact_block_params(c_in, c_out, stride)
    assert block(torch.randn(2, c_in, 8, 8)).shape == (2, c_out, 8 // stride, 8 // stride)


def test_preact_block_is_a_clean_identity_when_the_branch_is_zero() -> None:
    block = PreActBlock(4, 4).eval()
    nn.init.zeros_(block.conv2.weight)
    x = torch.randn(3, 4, 5, 5)  # negative values survive: no ReLU after the addition
    assert torch.equal(block(x), x)


@pytest.mark.parametrize(("c_in", "k", "layers"), [(64, 32, 6), (8, 4, 3)])
def test_dense_block_counts_shape_and_torchvision(c_in: int, k: int, layers: int) -> None:
    block = DenseBlock(c_in, k, layers)
    assert count_parameters(block) == dense_block_params(c_in, k, layers)
    x = torch.randn(2, c_in, 6, 6)
    out = block(x)
    assert out.shape == (2, c_in + layers * k, 6, 6) and block.out_channels == c_in + layers * k
    assert torch.equal(out[:, :c_in], x)  # the input is passed on unchanged
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.densenet._DenseBlock(layers, c_in, 4, k, drop_rate=0.0)
    block.load_state_dict(reference.state_dict())  # same names and shapes as torchvision
    block.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x))


def test_densenet121_blocks_match_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        features = torchvision.models.densenet121().features
    channels = 64
    for index, layers in enumerate((6, 12, 24, 16), start=1):
        block = getattr(features, f"denseblock{index}")
        assert count_parameters(block) == dense_block_params(channels, 32, layers)
        channels = (channels + 32 * layers) // 2  # the transition layer halves the channels


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(32, 64, 1), (64, 128, 2), (8, 8, 1)])
def test_depthwise_separable_counts(c_in: int, c_out: int, stride: int) -> None:
    layer = DepthwiseSeparableConv(c_in, c_out, stride)
    assert count_parameters(layer) == depthwise_separable_params(c_in, c_out)
    out_size = 14 // stride
    assert block_macs(layer, (c_in, 14, 14)) == depthwise_separable_macs(c_in, c_out, out_size)
    assert layer(torch.randn(1, c_in, 14, 14)).shape == (1, c_out, out_size, out_size)
    # the fraction of a standard 3x3 convolution's multiply-adds is 1/C_out + 1/K^2
    ratio = depthwise_separable_macs(c_in, c_out, out_size) / conv_macs(c_in, c_out, 3, out_size)
    assert ratio == pytest.approx(1 / c_out + 1 / 9)


def test_mobilenet_v1_matches_the_paper() -> None:
    with torch.device("meta"):
        model = mobilenet_v1()
    assert count_parameters(model) == 4_231_976  # "4.2 million parameters"
    assert round(block_macs(model, (3, 224, 224)) / 1e6) == 569  # "569 million mult-adds"


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="groups must divide"):
        conv_params(6, 4, 3, groups=4)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        conv_params(6, 4, 0)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        DenseBlock(4, 2, 0)


def test_blocks_run_on_every_device(device) -> None:
    blocks = [
        InceptionModule(8, 2, 3, 4, 1, 5, 6),
        PreActBlock(8, 16, stride=2),
        DenseBlock(8, 4, 2),
        DepthwiseSeparableConv(8, 12, stride=2),
    ]
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    for block in blocks:
        block = block.double().eval()
        with torch.no_grad():
            expected = block(x)
            result = block.to(device)(x.to(device))
        torch.testing.assert_close(result.cpu(), expected)
