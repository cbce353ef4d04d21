"""course_lib.resnet: block structure, parameter counts, shapes, the gradient experiment."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    block_macs,
    count_parameters,
    deep_cnn,
    layer_gradient_norms,
    resnet18_cifar,
    stage_shapes,
)


def randomize_batch_norms(model: nn.Module) -> None:
    """Non-trivial BN parameters and running statistics, so eval-mode outputs test something."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def tv_resnet():
    """torchvision.models.resnet, imported once (the import alone takes ~2 s on a busy CPU)."""
    return pytest.importorskip("torchvision.models.resnet")


def projection_parameters(in_channels: int, out_channels: int) -> int:
    """1x1 conv without bias + BN (gamma, beta)."""
    return in_channels * out_channels + 2 * out_channels


# ----------------------------------------------------------------------------------------------
# ResNet-18 for CIFAR
# ----------------------------------------------------------------------------------------------
def test_resnet18_cifar_has_11_173_962_parameters():
    model = resnet18_cifar()
    assert count_parameters(model) == 11_173_962
    # the fc layer is the only part that depends on the number of classes: 512 weights + 1 bias
    assert count_parameters(resnet18_cifar(num_classes=100)) == 11_173_962 + 90 * 513


def test_resnet18_cifar_matches_torchvision_with_a_cifar_stem(tv_resnet):
    reference = tv_resnet.resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
    ours = resnet18_cifar()
    ours_shapes = [tuple(p.shape) for p in ours.parameters()]
    reference_shapes = [tuple(p.shape) for p in reference.parameters()]
    assert ours_shapes == reference_shapes  # same layers, same order
    assert count_parameters(reference) == 11_173_962


def test_resnet18_cifar_output_shape(device):
    model = resnet18_cifar().to(device)
    logits = model(torch.randn(2, 3, 32, 32, device=device))
    assert logits.shape == (2, 10)
    assert logits.device.type == device.type


def test_bottleneck_resnet_output_shape(device):
    model = CifarResNet(Bottleneck, [1, 1, 1, 1], num_classes=7, in_channels=1, width=4).to(device)
    assert model.fc.in_features == 4 * 8 * 4  # 8 * width channels, expanded 4 times
    assert model(torch.randn(3, 1, 16, 16, device=device)).shape == (3, 7)


def test_stage_shapes_for_a_32x32_input():
    model = resnet18_cifar()
    model.train()
    buffers_before = {k: v.clone() for k, v in model.state_dict().items()}
    shapes = stage_shapes(model, (1, 3, 32, 32))
    assert shapes == [
        ("stem", (1, 64, 32, 32)),
        ("layer1", (1, 64, 32, 32)),
        ("layer2", (1, 128, 16, 16)),
        ("layer3", (1, 256, 8, 8)),
        ("layer4", (1, 512, 4, 4)),
        ("pool", (1, 512)),
        ("fc", (1, 10)),
    ]
    # probing leaves the model as it was: training flag, BN running statistics
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, buffers_before[key]), key


def test_stage_shapes_on_a_sequential(device):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten()).to(device)
    assert stage_shapes(model, (2, 1, 10, 10)) == [
        ("0", (2, 4, 8, 8)),
        ("1", (2, 4, 4, 4)),
        ("2", (2, 64)),
    ]


# ----------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------
def test_basic_block_identity_and_projection_shortcuts(device):
    assert BasicBlock(16, 16).downsample is None
    block = BasicBlock(16, 32, stride=2).to(device)
    conv, bn = block.downsample
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and conv.bias is None
    assert all(m.bias is None for m in block.modules() if isinstance(m, nn.Conv2d))
    assert block(torch.randn(2, 16, 8, 8, device=device)).shape == (2, 32, 4, 4)
    assert BasicBlock(16, 32).downsample is not None  # a channel change alone needs it too


def test_basic_block_computes_relu_of_f_plus_projection(device):
    block = BasicBlock(4, 8, stride=2).to(device).double().eval()
    randomize_batch_norms(block)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, device=device)
    f = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    expected = F.relu(f + block.downsample(x))
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "ours, torchvision_name, planes, stride, x_shape",
    [
        (lambda: BasicBlock(8, 16, stride=2), "BasicBlock", 16, 2, (2, 8, 6, 6)),
        (lambda: BasicBlock(8, 8), "BasicBlock", 8, 1, (2, 8, 5, 5)),
        (lambda: Bottleneck(16, 8, stride=2), "Bottleneck", 8, 2, (2, 16, 6, 6)),
        (lambda: Bottleneck(32, 8), "Bottleneck", 8, 1, (2, 32, 5, 5)),
    ],
    ids=["basic-projection", "basic-identity", "bottleneck-projection", "bottleneck-identity"],
)
def test_blocks_equal_torchvision_blocks(
    ours, torchvision_name, planes, stride, x_shape, tv_resnet
):
    block = ours().double().eval()
    randomize_batch_norms(block)
    downsample = None
    if block.downsample is not None:
        out_channels = block.downsample[0].out_channels
        downsample = nn.Sequential(
            nn.Conv2d(x_shape[1], out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    reference = getattr(tv_resnet, torchvision_name)(x_shape[1], planes, stride, downsample)
    reference = reference.double().eval()
    reference.load_state_dict(block.state_dict())  # same names: conv1, bn1, ..., downsample.0
    x = torch.randn(x_shape, dtype=torch.float64)
    torch.testing.assert_close(block(x), reference(x), atol=1e-12, rtol=0)


def test_bottleneck_shapes_and_expansion(device):
    block = Bottleneck(64, 32, stride=2).to(device)
    assert Bottleneck.expansion == 4 and BasicBlock.expansion == 1
    assert [m.kernel_size for m in (block.conv1, block.conv2, block.conv3)] == [
        (1, 1),
        (3, 3),
        (1, 1),
    ]
    assert block.conv2.stride == (2, 2)  # the 3x3 conv carries the stride, as in torchvision
    assert block(torch.randn(2, 64, 8, 8, device=device)).shape == (2, 128, 4, 4)
    assert Bottleneck(256, 64).downsample is None  # 256 == 4 * 64: identity shortcut


# ----------------------------------------------------------------------------------------------
# plain twins
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block_cls, args", [(BasicBlock, (16, 16)), (Bottleneck, (64, 16))])
def test_plain_block_is_the_same_main_path_without_the_shortcut(block_cls, args):
    residual = block_cls(*args).double().eval()
    plain = block_cls(*args, residual=False).double().eval()
    randomize_batch_norms(residual)
    plain.load_state_dict(residual.state_dict())  # identity shortcut: identical parameters
    assert count_parameters(plain) == count_parameters(residual)
    x = torch.randn(2, args[0], 4, 4, dtype=torch.float64)
    last_bn = residual.bn2 if block_cls is BasicBlock else residual.bn3
    captured = {}
    handle = last_bn.register_forward_hook(lambda m, i, out: captured.setdefault("f", out))
    out = residual(x)
    handle.remove()
    torch.testing.assert_close(out, F.relu(captured["f"] + x), atol=1e-12, rtol=0)
    torch.testing.assert_close(plain(x), F.relu(captured["f"]), atol=1e-12, rtol=0)


def test_plain_resnet18_lacks_exactly_the_three_projections():
    residual, plain = resnet18_cifar(), resnet18_cifar(residual=False)
    projections = sum(projection_parameters(c, 2 * c) for c in (64, 128, 256))
    assert projections == 173_824
    assert count_parameters(plain) == count_parameters(residual) - projections == 11_000_138
    assert all(
        block.downsample is None for block in plain.modules() if isinstance(block, BasicBlock)
    )


def test_deep_cnn_plain_and_residual_twins_have_identical_parameters():
    plain, residual = deep_cnn(12, residual=False), deep_cnn(12, residual=True)
    assert count_parameters(plain) == count_parameters(residual)
    assert [(n, p.shape) for n, p in plain.named_parameters()] == [
        (n, p.shape) for n, p in residual.named_parameters()
    ]
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 12 and all(c.kernel_size == (3, 3) for c in convs)
    with_bn = deep_cnn(12, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 12
    assert all(c.bias is None for c in with_bn.modules() if isinstance(c, nn.Conv2d))


def first_layer_gradient(model: nn.Module, device) -> dict[str, float]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 16, 16, generator=generator).to(device)
    targets = torch.randint(0, 10, (8,), generator=generator).to(device)
    F.cross_entropy(model(x), targets).backward()
    return layer_gradient_norms(model)


def test_residual_connections_keep_the_first_layer_gradient_alive(device):
    # 30 conv layers, no batch norm, PyTorch's default init, the same weights in both nets
    torch.manual_seed(0)
    plain = deep_cnn(30, residual=False).to(device)
    residual = deep_cnn(30, residual=True).to(device)
    residual.load_state_dict(plain.state_dict())
    plain_norms = first_layer_gradient(plain, device)
    residual_norms = first_layer_gradient(residual, device)
    first = next(iter(plain_norms))
    assert first == "stem.0"
    assert residual_norms[first] > 1e-2  # still learning
    assert plain_norms[first] < 1e-8 * residual_norms[first]  # vanished
    # near the output the plain net's gradient is fine: it is the depth that kills it
    assert plain_norms["fc"] > 1e-3


# ----------------------------------------------------------------------------------------------
# inspection helpers
# ----------------------------------------------------------------------------------------------
def test_layer_gradient_norms_are_weight_grad_norms_in_forward_order():
    model = deep_cnn(4, channels=4)
    with pytest.raises(ValueError, match="backward"):
        layer_gradient_norms(model)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    norms = layer_gradient_norms(model)
    assert list(norms) == ["stem.0", "layers.0.conv", "layers.1.conv", "layers.2.conv", "fc"]
    assert norms["fc"] == pytest.approx(model.fc.weight.grad.norm().item())
    assert all(isinstance(v, float) for v in norms.values())


def test_count_parameters_trainable_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 16 + 10
    assert count_parameters(model) == 26
    model[0].requires_grad_(False)
    assert count_parameters(model) == 10
    assert count_parameters(model, trainable_only=False) == 26


def test_block_macs_bottleneck_argument():
    # per output position (1x1 input): one 3x3 conv 256 -> 256 versus the bottleneck
    plain_conv = nn.Conv2d(256, 256, 3, padding=1, bias=False)
    assert block_macs(plain_conv, (256, 1, 1)) == 256 * 256 * 3 * 3 == 589_824
    assert block_macs(Bottleneck(256, 64), (256, 1, 1)) == 16_384 + 36_864 + 16_384 == 69_632


def test_block_macs_totals_per_image_and_per_batch():
    block = BasicBlock(64, 64)
    per_image = block_macs(block, (64, 32, 32))
    assert per_image == 2 * (64 * 9 * 64) * 32 * 32 == 75_497_472
    assert block_macs(block, (4, 64, 32, 32)) == 4 * per_image
    # a projection block: the 1x1 stride-2 shortcut on the 16x16 output counts too
    down = BasicBlock(64, 128, stride=2)
    expected = (64 * 9 * 128 + 128 * 9 * 128 + 64 * 128) * 16 * 16
    assert block_macs(down, (64, 32, 32)) == expected
    linear = nn.Linear(10, 3)  # linear layers count as well
    assert block_macs(nn.Sequential(nn.Flatten(), linear), (10, 1, 1)) == 30
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    assert block_macs(grouped, (8, 5, 5)) == 8 * 25 * (2 * 9)


def test_block_macs_leaves_batch_norm_statistics_alone():
    block = BasicBlock(8, 8).train()
    before = block.bn1.running_mean.clone()
    block_macs(block, (8, 4, 4))
    assert block.training and torch.equal(block.bn1.running_mean, before)


# ----------------------------------------------------------------------------------------------
# bad input for every public function
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: BasicBlock(0, 8), ValueError, "in_channels"),
        (lambda: BasicBlock(8, 8, stride=0), ValueError, "stride"),
        (lambda: BasicBlock(8, 8.0), TypeError, "out_channels"),
        (lambda: BasicBlock(8, 8, residual="yes"), TypeError, "residual"),
        (lambda: BasicBlock(8, 8)(torch.randn(2, 4, 5, 5)), ValueError, "expects 8 input channels"),
        (lambda: BasicBlock(8, 8)(torch.randn(8, 5, 5)), ValueError, r"4-D tensor \(N, C, H, W\)"),
        (lambda: BasicBlock(8, 8)(torch.ones(1, 8, 3, 3, dtype=torch.long)), TypeError, "floating"),
        (lambda: Bottleneck(8, 0), ValueError, "mid_channels"),
        (lambda: Bottleneck(16, 4)([1.0]), TypeError, "torch.Tensor"),
        (lambda: CifarResNet(nn.Conv2d, [1, 1, 1, 1]), TypeError, "BasicBlock or Bottleneck"),
        (lambda: CifarResNet(BasicBlock, [2, 2, 2]), ValueError, "4 entries"),
        (lambda: CifarResNet(BasicBlock, 2), TypeError, "list of 4"),
        (lambda: CifarResNet(BasicBlock, [2, 0, 2, 2]), ValueError, "num_blocks"),
        (lambda: CifarResNet(BasicBlock, [1, 1, 1, 1], width=0), ValueError, "width"),
        (lambda: resnet18_cifar(num_classes=0), ValueError, "num_classes"),
        (lambda: resnet18_cifar(residual=None), TypeError, "residual"),
        (lambda: deep_cnn(0), ValueError, "depth"),
        (lambda: deep_cnn(5, channels=2.5), TypeError, "channels"),
        (lambda: deep_cnn(5, batch_norm=1), TypeError, "batch_norm"),
        (lambda: deep_cnn(3)(torch.randn(2, 1, 8, 8)), ValueError, "expects 3 input channels"),
        (lambda: count_parameters("model"), TypeError, "nn.Module"),
        (lambda: count_parameters(nn.Linear(2, 2), trainable_only=0), TypeError, "trainable_only"),
        (lambda: layer_gradient_norms([nn.Linear(2, 2)]), TypeError, "nn.Module"),
        (lambda: layer_gradient_norms(nn.ReLU()), ValueError, "backward"),
        (lambda: stage_shapes(None, (1, 3, 8, 8)), TypeError, "nn.Module"),
        (lambda: stage_shapes(deep_cnn(2), (3, 8, 8)), ValueError, r"\(N, C, H, W\)"),
        (lambda: stage_shapes(deep_cnn(2), (1, 3, 0, 8)), ValueError, "input_shape"),
        (lambda: stage_shapes(deep_cnn(2), "1x3x8x8"), TypeError, "input_shape"),
        (lambda: stage_shapes(nn.ReLU(), (1, 3, 8, 8)), ValueError, "no child modules"),
        (lambda: block_macs(3, (3, 8, 8)), TypeError, "block"),
        (
            lambda: block_macs(BasicBlock(8, 8), (8, 8)),
            ValueError,
            r"\(C, H, W\) or \(N, C, H, W\)",
        ),
        (lambda: block_macs(BasicBlock(8, 8), (8, 4, 4.0)), TypeError, "input_shape"),
        (lambda: block_macs(nn.ReLU(), (8, 4, 4)), ValueError, "no conv / linear"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
