"""Residual networks: blocks, a CIFAR-style ResNet, plain twins and tools to look inside them.

A residual block learns a correction ``F(x)`` to its input instead of a whole new mapping::

    H(x) = F(x) + x            dH/dx = J_F(x) + I

Chained over ``k`` blocks the gradient reaching the first layer is multiplied by
``prod_i (I + J_F_i)`` instead of the plain network's ``prod_i J_f_i``; the identity term keeps
the product from shrinking geometrically, which is why very deep ResNets still train.
:func:`deep_cnn` and :func:`layer_gradient_norms` let the lecture measure exactly that.

The layers are ``torch.nn.Conv2d`` / ``torch.nn.BatchNorm2d`` (fast library kernels); convolutions
followed by batch norm have no bias, since BN's ``beta`` would cancel it anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from course_lib._validate import check_int, check_tensor

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "resnet18_cifar",
    "deep_cnn",
    "DeepCNN",
    "count_parameters",
    "layer_gradient_norms",
    "stage_shapes",
    "block_macs",
]


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return value


def _check_module(model: object, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(model).__name__}")
    return model


def _check_images(x: object, channels: int, owner: str) -> torch.Tensor:
    """x must be a floating (N, C, H, W) tensor with ``channels`` channels."""
    check_tensor(x, "x", 4)
    if x.shape[1] != channels:
        raise ValueError(
            f"{owner} expects {channels} input channels in x (N, C, H, W); "
            f"got x.shape = {tuple(x.shape)}"
        )
    return x


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1 (keeps H, W at stride 1), no bias (a BN follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias: mixes channels at each position (and subsamples if stride > 1)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """The shortcut: None (identity) if the shape is kept, else a 1x1 conv with stride + BN."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def _check_block_args(in_channels, planes, planes_name: str, stride, residual) -> None:
    check_int(in_channels, "in_channels", 1)
    check_int(planes, planes_name, 1)
    check_int(stride, "stride", 1)
    _check_bool(residual, "residual")


# ----------------------------------------------------------------------------------------------
# residual blocks
# ----------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet-18/34 block: ``relu(F(x) + shortcut(x))``, ``F = bn(conv(relu(bn(conv(x)))))``.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H/stride, W/stride)``. The first 3x3
    conv carries the stride. When the shape changes (``stride != 1`` or ``in_channels !=
    out_channels``) the shortcut is a projection, 1x1 conv with stride + BN (``downsample``,
    torchvision's name); otherwise it is the identity.

    ``residual=False`` is the *plain twin*: the same main path and no shortcut at all,
    ``relu(F(x))``. It has the same parameters as the residual block when the shortcut is the
    identity, and fewer (no projection) when the shape changes.
    """

    expansion = 1

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True
    ) -> None:
        super().__init__()
        _check_block_args(in_channels, out_channels, "out_channels", stride, residual)
        self.in_channels = in_channels
        self.residual = residual
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels, type(self).__name__)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity  # H(x) = F(x) + x
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet-50+ block: 1x1 reduce, 3x3, 1x1 expand to ``4 * mid_channels``, plus the shortcut.

    The forward pass is torchvision's: identity; conv-bn-relu (1x1); conv-bn-relu (3x3, carries
    the stride); conv-bn (1x1); downsample the identity if needed; add; relu.

    Why: a 3x3 conv 256 -> 256 costs ``256*256*3*3 = 589,824`` multiply-adds per output
    position, while 1x1 256 -> 64, 3x3 64 -> 64, 1x1 64 -> 256 cost ``16,384 + 36,864 + 16,384 =
    69,632`` (see :func:`block_macs`), about 8.5 times fewer, at the same input/output width.

    Shapes: ``(N, in_channels, H, W) -> (N, 4*mid_channels, H/stride, W/stride)``.
    ``residual=False`` gives the plain twin (no shortcut), as in :class:`BasicBlock`.
    """

    expansion = 4

    def __init__(
        self, in_channels: int, mid_channels: int, stride: int = 1, residual: bool = True
    ) -> None:
        super().__init__()
        _check_block_args(in_channels, mid_channels, "mid_channels", stride, residual)
        out_channels = mid_channels * self.expansion
        self.in_channels = in_channels
        self.residual = residual
        self.conv1 = conv1x1(in_channels, mid_channels)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = conv3x3(mid_channels, mid_channels, stride)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = conv1x1(mid_channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels, type(self).__name__)
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            if self.downsample is not None:
                identity = self.downsample(x)
            out = out + identity
        return self.relu(out)


# ----------------------------------------------------------------------------------------------
# the CIFAR ResNet
# ----------------------------------------------------------------------------------------------
class CifarResNet(nn.Module):
    """A ResNet for 32x32 images: the ImageNet design without the aggressive stem.

    Children, in forward order (:func:`stage_shapes` lists them)::

        stem    3x3 conv (in_channels -> width, stride 1) + BN + ReLU   (no max-pool)
        layer1  num_blocks[0] blocks, width channels,    stride 1
        layer2  num_blocks[1] blocks, 2 * width,          stride 2
        layer3  num_blocks[2] blocks, 4 * width,          stride 2
        layer4  num_blocks[3] blocks, 8 * width,          stride 2
        pool    global average pooling + flatten: (N, C, H, W) -> (N, C)
        fc      linear, 8 * width * block.expansion -> num_classes

    ``block`` is :class:`BasicBlock` or :class:`Bottleneck`; ``residual=False`` builds the plain
    twin. Input ``(N, in_channels, H, W)``, output logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if not (isinstance(block, type) and issubclass(block, (BasicBlock, Bottleneck))):
            raise TypeError(f"block must be the class BasicBlock or Bottleneck; got {block!r}")
        if isinstance(num_blocks, (str, bytes)) or not isinstance(num_blocks, Sequence):
            raise TypeError(f"num_blocks must be a list of 4 ints; got {num_blocks!r}")
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks must have 4 entries (one per stage); got {num_blocks!r}")
        for count in num_blocks:
            check_int(count, "each entry of num_blocks", 1)
        check_int(num_classes, "num_classes", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        check_int(width, "width", 1)
        _check_bool(residual, "residual")

        self.stem = nn.Sequential(
            conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        channels = width
        stages = []
        for index, count in enumerate(num_blocks):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            stages.append(self._make_stage(block, channels, planes, count, stride, residual))
            channels = planes * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    @staticmethod
    def _make_stage(block, in_channels, planes, count, stride, residual) -> nn.Sequential:
        """``count`` blocks; only the first changes the shape (stride, channels)."""
        blocks = [block(in_channels, planes, stride, residual)]
        for _ in range(count - 1):
            blocks.append(block(planes * block.expansion, planes, 1, residual))
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels, type(self).__name__)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x))


def resnet18_cifar(num_classes: int = 10, residual: bool = True) -> CifarResNet:
    """ResNet-18 for CIFAR: BasicBlocks ``[2, 2, 2, 2]``, width 64.

    11,173,962 parameters for 10 classes (torchvision's ImageNet ResNet-18 has 11,689,512: its
    7x7 stem and 1000-way classifier are larger). The plain twin (``residual=False``) lacks the
    three projection shortcuts: 11,000,138 parameters.
    """
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, residual=residual)


# ----------------------------------------------------------------------------------------------
# a deep, narrow network for the vanishing-gradient experiment
# ----------------------------------------------------------------------------------------------
class ConvLayer(nn.Module):
    """One shape-preserving 3x3 conv layer, ``(N, C, H, W) -> (N, C, H, W)``.

    With ``F(x) = bn(conv(x))`` (BN optional): ``residual=True`` returns ``relu(x + F(x))`` --
    add, then ReLU, as in the ResNet blocks -- whose Jacobian before the ReLU is ``I + J_F``;
    ``residual=False`` returns ``relu(F(x))``. Same parameters either way.
    """

    def __init__(self, channels: int, residual: bool, batch_norm: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        return self.relu(x + out if self.residual else out)


class DeepCNN(nn.Module):
    """``depth`` 3x3 conv layers: a stem conv to ``channels``, ``depth - 1`` :class:`ConvLayer`,
    global average pooling and a linear classifier. Built by :func:`deep_cnn`."""

    def __init__(
        self,
        depth: int,
        channels: int,
        num_classes: int,
        in_channels: int,
        residual: bool,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
            nn.ReLU(),
        )
        self.layers = nn.Sequential(
            *(ConvLayer(channels, residual, batch_norm) for _ in range(depth - 1))
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels, type(self).__name__)
        return self.fc(self.pool(self.layers(self.stem(x))))


def deep_cnn(
    depth: int,
    channels: int = 16,
    num_classes: int = 10,
    in_channels: int = 3,
    residual: bool = True,
    batch_norm: bool = False,
) -> DeepCNN:
    """A narrow network of ``depth`` 3x3 conv layers for the vanishing-gradient experiment.

    ``(N, in_channels, H, W) -> (N, num_classes)``. With ``residual=False`` every layer is
    ``x <- relu(conv(x))``; at PyTorch's default init each such layer shrinks the signal and
    the gradient flowing back (by about ``1/sqrt(6)``), so after ~30 layers the first layer's
    gradient is ~1e-14 and it cannot learn. With ``residual=True`` every layer after the stem
    is ``x <- relu(x + conv(x))`` (:class:`ConvLayer`) and the gradient keeps an identity
    path. Both versions have *identical* parameters (same names and shapes), so one state dict
    loads into either and the comparison is fair. ``batch_norm=True`` puts a BN after every
    conv (the convs then have no bias), the other cure for vanishing signals.
    """
    check_int(depth, "depth", 1)
    check_int(channels, "channels", 1)
    check_int(num_classes, "num_classes", 1)
    check_int(in_channels, "in_channels", 1)
    _check_bool(residual, "residual")
    _check_bool(batch_norm, "batch_norm")
    return DeepCNN(depth, channels, num_classes, in_channels, residual, batch_norm)


# ----------------------------------------------------------------------------------------------
# looking inside a model
# ----------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters: ``sum(p.numel())`` (only ``requires_grad`` ones by default)."""
    _check_module(model)
    _check_bool(trainable_only, "trainable_only")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _is_weight_layer(module: nn.Module) -> bool:
    """Convolutions and linear layers (torch.nn's, or course_lib.conv.Conv2d by its name)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        return True
    return type(module).__name__ in ("Conv2d", "Linear") and isinstance(
        getattr(module, "weight", None), torch.Tensor
    )


def layer_gradient_norms(model: nn.Module) -> dict[str, float]:
    """``{module name: ||weight.grad||_2}`` for every conv / linear layer, after ``backward()``.

    Ordered as the layers are registered, which for the course's models (:class:`CifarResNet`,
    :func:`deep_cnn`, ``nn.Sequential``) is the forward order: the first entry is the layer
    closest to the input, where vanishing gradients show. Layers without a gradient are skipped;
    if none has one, ``ValueError`` (call ``loss.backward()`` first).
    """
    _check_module(model)
    norms = {
        name: module.weight.grad.norm().item()
        for name, module in model.named_modules()
        if _is_weight_layer(module) and module.weight.grad is not None
    }
    if not norms:
        raise ValueError(
            "no conv / linear layer of the model has a gradient: call loss.backward() first"
        )
    return norms


def _check_shape(input_shape: object, lengths: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"input_shape must be a tuple of ints; got {type(input_shape).__name__}")
    if len(input_shape) not in lengths:
        expected = " or ".join({3: "(C, H, W)", 4: "(N, C, H, W)"}[n] for n in lengths)
        raise ValueError(f"input_shape must be {expected}; got {tuple(input_shape)}")
    for size in input_shape:
        check_int(size, "every entry of input_shape", 1)
    return tuple(input_shape)


def _probe_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Zeros of ``shape`` on the model's device and dtype (CPU float32 without parameters)."""
    reference = next(model.parameters(), None)
    if reference is None:
        return torch.zeros(shape)
    return torch.zeros(shape, device=reference.device, dtype=reference.dtype)


def _run_with_hooks(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module], record):
    """Forward ``x`` in eval mode with ``record(name, module, output)`` hooked on ``modules``.

    Eval mode and no_grad: probing must not change BN running statistics or build a graph;
    the model's training flag is restored afterwards.
    """
    handles = [
        module.register_forward_hook(
            lambda mod, _inputs, output, name=name: record(name, mod, output)
        )
        for name, module in modules.items()
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def stage_shapes(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """``[(child name, output shape), ...]`` after each top-level child, in the order they run.

    ``input_shape`` is ``(N, C, H, W)``. The probe is a zero tensor run in eval mode without
    gradients, so the model is left exactly as it was. For ``resnet18_cifar()`` and
    ``(1, 3, 32, 32)``: stem (1, 64, 32, 32), layer1 (1, 64, 32, 32), layer2 (1, 128, 16, 16),
    layer3 (1, 256, 8, 8), layer4 (1, 512, 4, 4), pool (1, 512), fc (1, 10).
    """
    _check_module(model)
    shape = _check_shape(input_shape, (4,))
    shapes: list[tuple[str, tuple[int, ...]]] = []
    children = dict(model.named_children())
    if not children:
        raise ValueError(f"{type(model).__name__} has no child modules to report shapes for")
    _run_with_hooks(
        model,
        _probe_input(model, shape),
        children,
        lambda name, _module, output: shapes.append((name, tuple(output.shape))),
    )
    return shapes


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one conv / linear call: each output value needs one dot product."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel_volume = module.weight[0].numel()  # (C / groups) * KH * KW
    return output.numel() * kernel_volume


def block_macs(block: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of every conv (and linear) layer of ``block`` for one input of ``input_shape``.

    ``input_shape`` is ``(C, H, W)`` (one image) or ``(N, C, H, W)`` (the whole batch). Counted
    by running the block with forward hooks: a layer producing ``out`` values from
    ``C/groups * KH * KW`` inputs each costs ``out.numel() * C/groups * KH * KW`` (bias adds,
    BN and ReLU are not counted). On a ``(256, 1, 1)`` input, which makes the count per output
    position: ``nn.Conv2d(256, 256, 3, padding=1)`` gives 589,824 and ``Bottleneck(256, 64)``
    gives 69,632.
    """
    _check_module(block, "block")
    shape = _check_shape(input_shape, (3, 4))
    if len(shape) == 3:
        shape = (1, *shape)
    layers = {name: module for name, module in block.named_modules() if _is_weight_layer(module)}
    if not layers:
        raise ValueError(f"{type(block).__name__} has no conv / linear layer to count")
    totals: list[int] = []
    _run_with_hooks(
        block,
        _probe_input(block, shape),
        layers,
        lambda _name, module, output: totals.append(_layer_macs(module, output)),
    )
    return sum(totals)
