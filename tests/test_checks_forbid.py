"""course_lib.checks.forbid decides from what ran: every route to the library's operator is
caught, honest code in every style runs, legitimate PyTorch use of other operators is not flagged.

The forbidden lists are those of the problem sets' hidden tests (solutions/*/): the same
``forbid(*FORBIDDEN)`` calls must catch each attack of issue #7 and let correct solutions pass.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import course_lib.conv
import course_lib.norm
import course_lib.optim
import course_lib.resnet
from course_lib.checks import ForbiddenCallError, forbid

# ------------------------------------------------------------------ the hidden tests' lists
CONV_FORBIDDEN = (  # ps1
    "torch.nn.functional.conv2d",
    "torch.conv2d",
    "torch.convolution",
    "torch.nn.functional.unfold",
    "torch.Tensor.unfold",
    "torch.nn.Conv2d",
    "torch.nn.Unfold",
    "course_lib.conv.conv2d",
    "course_lib.conv.conv2d_naive",
    "course_lib.conv.corr2d",
    "course_lib.conv.im2col",
    "course_lib.conv.sliding_windows",
)
POOL_FORBIDDEN = (  # ps2
    "torch.nn.functional.max_pool2d",
    "torch.nn.functional.max_pool2d_with_indices",
    "torch.nn.functional.avg_pool2d",
    "torch.nn.functional.adaptive_max_pool2d",
    "torch.nn.functional.adaptive_avg_pool2d",
    "torch.nn.functional.lp_pool2d",
    "torch.max_pool2d",
    "torch.nn.MaxPool2d",
    "torch.nn.AvgPool2d",
    "course_lib.pooling.max_pool2d",
    "course_lib.pooling.max_pool2d_naive",
    "course_lib.pooling.max_pool2d_with_indices",
    "course_lib.pooling.max_pool2d_backward",
    "course_lib.pooling.avg_pool2d",
)
# ps2 parts 1-2: the library's other ways to pool, windows cut out (Tensor.unfold, F.unfold) or
# added back up (F.fold) for you, an average as a convolution with a constant kernel
WINDOW_FORBIDDEN = (
    "torch.Tensor.unfold",
    "torch.nn.functional.unfold",
    "torch.nn.Unfold",
    "torch.nn.functional.fold",
    "torch.nn.Fold",
    "torch.nn.functional.conv2d",
    "torch.nn.Conv2d",
)
AUTOGRAD_FORBIDDEN = ("torch.Tensor.backward", "torch.autograd.backward", "torch.autograd.grad")
BN_FORBIDDEN = (
    "torch.nn.functional.batch_norm",
    "torch.batch_norm",
    "torch.native_batch_norm",
    "torch.nn.BatchNorm1d",
    "torch.nn.BatchNorm2d",
    "course_lib.norm.batch_norm",
    "course_lib.norm.batch_norm_backward",
    "course_lib.norm.batch_statistics",
    "course_lib.norm.BatchNorm1d",
    "course_lib.norm.BatchNorm2d",
)
CONV_BACKWARD_FORBIDDEN = (  # ps1 part 5, where F.conv2d is allowed
    "torch.autograd.grad",
    "torch.autograd.backward",
    "torch.Tensor.backward",
    "torch.nn.functional.conv_transpose2d",
    "torch.conv_transpose2d",
    "torch.nn.ConvTranspose2d",
    "torch.nn.grad.conv2d_input",
    "torch.nn.grad.conv2d_weight",
    "torch.nn.functional.fold",
    "torch.nn.Fold",
) + tuple(  # where the installed course_lib has them, as in the notebook
    f"course_lib.conv.{name}"
    for name in ("conv2d_backward_input", "conv2d_backward_weight")
    if hasattr(course_lib.conv, name)
)
OPTIM_FORBIDDEN = (  # ps4's forbidden_optimizers()
    "torch.optim.SGD.step",
    "torch.optim.RMSprop.step",
    "torch.optim.Adam.step",
    "torch.optim.sgd.sgd",
    "torch.optim.rmsprop.rmsprop",
    "torch.optim.adam.adam",
    "course_lib.optim.SGD.step",
    "course_lib.optim.RMSProp.step",
    "course_lib.optim.Adam.step",
    "course_lib.optim.AdamW.step",
)

gen = torch.Generator().manual_seed(0)
X = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64)
W = torch.randn(4, 3, 3, 2, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------ honest solutions
def conv2d_loops(x, w):
    """Loops over output positions: multiply and sum."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    out = x.new_zeros(n, f, h - kh + 1, wd - kw + 1)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            window = x[:, :, i : i + kh, j : j + kw]
            out[:, :, i, j] = (window[:, None] * w[None]).sum(dim=(2, 3, 4))
    return out


def conv2d_nested_corr2d(x, w):
    """Issue #9's false positive: a nested helper named like the library's."""

    def corr2d(a, k):
        rows, cols = a.shape[-2] - k.shape[-2] + 1, a.shape[-1] - k.shape[-1] + 1
        return torch.stack(
            [
                torch.stack(
                    [
                        (a[..., i : i + k.shape[-2], j : j + k.shape[-1]] * k).sum((-3, -2, -1))
                        for j in range(cols)
                    ],
                    -1,
                )
                for i in range(rows)
            ],
            -2,
        )

    return torch.stack([corr2d(x, w[f]) for f in range(w.shape[0])], dim=1)


def im2col_indexing(x, kh, kw):
    n, c, h, w = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    taps = [x[:, :, u : u + oh, v : v + ow] for u in range(kh) for v in range(kw)]
    return torch.stack(taps, dim=2).reshape(n, c * kh * kw, oh * ow)


def conv2d_im2col(x, w):
    f, c, kh, kw = w.shape
    cols = im2col_indexing(x, kh, kw)
    out = torch.einsum("fk,nkl->nfl", w.reshape(f, -1), cols)
    return out.reshape(x.shape[0], f, x.shape[2] - kh + 1, x.shape[3] - kw + 1)


def conv2d_as_strided(x, w):
    """Windows as a strided view computed by hand: the student's own im2col."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    sn, sc, sh, sw = x.stride()
    windows = x.as_strided((n, c, h - kh + 1, wd - kw + 1, kh, kw), (sn, sc, sh, sw, sh, sw))
    return torch.einsum("ncijuv,fcuv->nfij", windows, w)


def max_pool(x, k):
    n, c, h, w = x.shape
    tiles = x[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k)
    return tiles.amax(dim=(3, 5))


def avg_pool(x, k):
    n, c, h, w = x.shape
    return x[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k).mean((3, 5))


def max_pool_backward(grad_out, x, k):
    """Scatter each window's gradient to its (first) arg-max."""
    n, c, h, w = x.shape
    oh, ow = h // k, w // k
    tiles = x[:, :, : oh * k, : ow * k].reshape(n, c, oh, k, ow, k).permute(0, 1, 2, 4, 3, 5)
    first = tiles.reshape(n, c, oh, ow, k * k).argmax(-1)
    rows = torch.arange(oh)[:, None] * k + first // k
    cols = torch.arange(ow)[None, :] * k + first % k
    grad = x.new_zeros(n, c, h * w)
    grad.scatter_add_(2, (rows * w + cols).reshape(n, c, -1), grad_out.reshape(n, c, -1))
    return grad.view(n, c, h, w)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    dims = [0, 2, 3]
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    return gamma.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + eps) + beta.view(1, -1, 1, 1)


def batchnorm_backward(grad_out, x, gamma, eps=1e-5):
    """With a local lambda (issue #9's false positive) and a nested `backward` helper."""
    dims = (0, 2, 3)
    m = x.numel() // x.shape[1]
    mean = lambda t: t.mean(dims, keepdim=True)  # noqa: E731
    centered = x - mean(x)
    inv_std = 1 / torch.sqrt(mean(centered**2) + eps)
    x_hat = centered * inv_std

    def backward(g):
        grad_beta, grad_gamma = g.sum(dims), (g * x_hat).sum(dims)
        scale = gamma.view(1, -1, 1, 1) * inv_std / m
        return scale * (m * g - grad_beta.view(1, -1, 1, 1) - x_hat * grad_gamma.view(1, -1, 1, 1))

    return backward(grad_out)


class HandSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, momentum=0.9):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad)
                p.add_(buf, alpha=-group["lr"])


# Functions written in a notebook cell live in module `__main__`; these stand in for them.
for _function in (conv2d_nested_corr2d, batchnorm_backward):
    _function.__module__ = "__main__"


def reference_conv(x, w):
    return F.conv2d(x, w)


# ------------------------------------------------------------------ honest code passes
@pytest.mark.parametrize(
    "student", [conv2d_loops, conv2d_nested_corr2d, conv2d_im2col, conv2d_as_strided]
)
def test_honest_convolutions_pass(student):
    expected = reference_conv(X, W)
    with forbid(*CONV_FORBIDDEN):
        got = student(X, W)
    torch.testing.assert_close(got, expected)


def test_honest_pooling_and_batch_norm_pass():
    x = torch.randn(2, 3, 8, 6, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(2, 3, 4, 3, generator=gen, dtype=torch.float64)
    gamma, beta = torch.rand(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    with forbid(*POOL_FORBIDDEN, *WINDOW_FORBIDDEN):
        pooled = max_pool(x, 2), avg_pool(x, 2)
    with forbid(*POOL_FORBIDDEN, *WINDOW_FORBIDDEN, *AUTOGRAD_FORBIDDEN):
        routed = max_pool_backward(grad_out, x, 2)
    torch.testing.assert_close(pooled[0], F.max_pool2d(x, 2))
    torch.testing.assert_close(pooled[1], F.avg_pool2d(x, 2))
    leaf = x.clone().requires_grad_(True)
    F.max_pool2d(leaf, 2).backward(grad_out)
    torch.testing.assert_close(routed, leaf.grad)
    with forbid(*BN_FORBIDDEN, *AUTOGRAD_FORBIDDEN):
        normalized = batchnorm_forward(x, gamma, beta)
        grad_x = batchnorm_backward(grad_out.repeat(1, 1, 2, 2), x, gamma)
    torch.testing.assert_close(normalized, F.batch_norm(x, None, None, gamma, beta, training=True))
    leaf = x.clone().requires_grad_(True)
    F.batch_norm(leaf, None, None, gamma, beta, training=True).backward(grad_out.repeat(1, 1, 2, 2))
    torch.testing.assert_close(grad_x, leaf.grad)


def conv2d_backward_as_convolutions(grad_out, x, w):
    """ps1 part 5's second route (stride 1, no padding): the gradients are correlations, F.conv2d
    of the upstream gradient with the input (weights) and, fully padded, with the flipped
    kernels (input)."""
    kh, kw = w.shape[2:]
    grad_w = F.conv2d(x.transpose(0, 1), grad_out.transpose(0, 1)).transpose(0, 1)
    flipped = w.flip(2, 3).transpose(0, 1)
    grad_x = F.conv2d(F.pad(grad_out, (kw - 1, kw - 1, kh - 1, kh - 1)), flipped)
    return grad_x, grad_w


def test_the_backward_pass_may_use_a_convolution_but_no_transposed_one():
    """A transposed-convolution target stands for the transposed convolutions and the
    convolution backward operators only: F.conv2d, which the exercise allows, runs."""
    grad_out = torch.randn(2, 4, 5, 5, generator=gen, dtype=torch.float64)
    with forbid(*CONV_BACKWARD_FORBIDDEN):
        grad_x, grad_w = conv2d_backward_as_convolutions(grad_out, X, W)
    leaf_x, leaf_w = X.clone().requires_grad_(True), W.clone().requires_grad_(True)
    F.conv2d(leaf_x, leaf_w).backward(grad_out)
    torch.testing.assert_close(grad_x, leaf_x.grad)
    torch.testing.assert_close(grad_w, leaf_w.grad)


def test_hand_written_optimizer_trains_a_cnn_under_forbidden_optimizers():
    """nn.Conv2d, autograd and torch.optim.Optimizer's own machinery are not optimizers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3))
    optimizer = HandSGD(model.parameters())
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    with forbid(*OPTIM_FORBIDDEN):
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        state = optimizer.state_dict()
    assert len(state["state"]) == 4


def test_library_layers_are_fine_where_only_a_block_is_forbidden():
    """ps3: the student's ResNet uses nn.Conv2d and nn.BatchNorm2d; only course_lib's block is
    the exercise."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)) + x)

    with forbid("course_lib.resnet.BasicBlock", "course_lib.resnet.layer_gradient_norms"):
        out = Block()(torch.randn(2, 4, 5, 5))
        out.sum().backward()
    with pytest.raises(ForbiddenCallError, match="course_lib.resnet.BasicBlock"):
        with forbid("course_lib.resnet.BasicBlock"):
            course_lib.resnet.BasicBlock(4, 4)(torch.randn(2, 4, 5, 5))
    block = course_lib.resnet.BasicBlock(4, 4)  # built before: using it is caught too
    with pytest.raises(ForbiddenCallError, match="BasicBlock.forward"):
        with forbid("course_lib.resnet.BasicBlock"):
            block(torch.randn(2, 4, 5, 5))


# ------------------------------------------------------------------ attacks of issue #7
# Built "in an earlier cell": before the `with forbid(...)` block of the hidden test.
SAVED = {
    "conv2d": F.conv2d,
    "unfold": F.unfold,
    "tensor_unfold": torch.Tensor.unfold,
    "adam": importlib.import_module("torch.optim.adam").adam,
    "sgd": importlib.import_module("torch.optim.sgd").sgd,
    "single_tensor_adam": importlib.import_module("torch.optim.adam")._single_tensor_adam,
    "library_conv": course_lib.conv.conv2d,
    "max_pool": F.max_pool2d,
    "grad": torch.autograd.grad,
    "layer": nn.Conv2d(3, 4, (3, 2), bias=False).double(),
}
with torch.no_grad():
    SAVED["layer"].weight.copy_(W)
PARTIAL = functools.partial(F.conv2d, stride=1)
CONV_EARLIER = F.conv2d(X.clone().requires_grad_(True), W)


def _adam_state(p):
    return [torch.zeros_like(p)], [torch.zeros_like(p)], [], [torch.tensor(0.0)]


def _functional_adam_step(p, impl):
    exp_avg, exp_avg_sq, max_sq, steps = _adam_state(p)
    kwargs = dict(amsgrad=False, beta1=0.9, beta2=0.999, lr=0.1, weight_decay=0.0, eps=1e-8)
    if "decoupled_weight_decay" in inspect.signature(impl).parameters:
        kwargs["decoupled_weight_decay"] = False
    if impl is SAVED["single_tensor_adam"]:
        impl(
            [p], [torch.ones_like(p)], exp_avg, exp_avg_sq, max_sq, steps,
            grad_scale=None, found_inf=None, maximize=False, capturable=False,
            differentiable=False, has_complex=False, **kwargs,
        )  # fmt: skip
    else:
        impl(
            [p], [torch.ones_like(p)], exp_avg, exp_avg_sq, max_sq, steps, maximize=False, **kwargs
        )
    return p


CONV_ATTACKS = {
    "dict holding F.conv2d": lambda x, w: SAVED["conv2d"](x, w),
    "functools.partial": lambda x, w: PARTIAL(x, w),
    "torch.conv3d": lambda x, w: torch.conv3d(x[:, :, None], w[:, :, None])[:, :, 0],
    "conv1d on a reshape": lambda x, w: F.conv1d(x.flatten(2), w.flatten(2)),
    "conv_transpose2d of a flipped kernel": lambda x, w: F.conv_transpose2d(
        x, w.flip(2, 3).transpose(0, 1), padding=(2, 1)
    ),
    "torch._C._nn.im2col": lambda x, w: (
        w.flatten(1) @ torch._C._nn.im2col(x, (3, 2), (1, 1), (0, 0), (1, 1))
    ),
    "getattr(torch.ops.aten, 'convol' + 'ution')": lambda x, w: getattr(
        torch.ops.aten, "convol" + "ution"
    )(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    "dict holding F.unfold": lambda x, w: w.flatten(1) @ SAVED["unfold"](x, (3, 2)),
    "dict holding Tensor.unfold": lambda x, w: SAVED["tensor_unfold"](x, 2, 3, 1),
    "nn.Conv2d built earlier": lambda x, w: SAVED["layer"](x),
    "course_lib.conv.conv2d in a dict": lambda x, w: SAVED["library_conv"](x, w),
    "grad_fn of an earlier graph called by hand": lambda x, w: CONV_EARLIER.grad_fn(
        torch.ones_like(CONV_EARLIER)
    ),
}


@pytest.mark.parametrize("attack", CONV_ATTACKS)
def test_convolution_routes_are_caught(attack):
    with pytest.raises(ForbiddenCallError, match="not allowed in this exercise"):
        with forbid(*CONV_FORBIDDEN):
            CONV_ATTACKS[attack](X, W)


OUT = F.conv2d(X, W)
CONV_BACKWARD_ATTACKS = {
    "F.conv_transpose2d": lambda: F.conv_transpose2d(OUT, W),
    "conv_transpose1d on a reshape": lambda: F.conv_transpose1d(OUT[:, :, 0], W[..., 0]),
    "conv_transpose3d": lambda: F.conv_transpose3d(OUT[:, :, None], W[:, :, None]),
    "nn.ConvTranspose2d": lambda: nn.ConvTranspose2d(4, 3, (3, 2)).double()(OUT),
    "torch.convolution with transposed=True": lambda: torch.convolution(
        OUT, W, None, [1, 1], [0, 0], [1, 1], True, [0, 0], 1
    ),
    "aten.convolution with transposed=True as a keyword": lambda: torch.ops.aten.convolution(
        OUT, W, None, [1, 1], [0, 0], [1, 1], transposed=True, output_padding=[0, 0], groups=1
    ),
    "torch.nn.grad.conv2d_input": lambda: torch.nn.grad.conv2d_input(X.shape, W, OUT),
    "the backward operator called directly": lambda: torch.ops.aten.convolution_backward(
        OUT, X, W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False]
    ),
    "grad_fn of an earlier conv2d graph called by hand": lambda: CONV_EARLIER.grad_fn(
        torch.ones_like(CONV_EARLIER)
    ),
    "F.fold adds the columns back up": lambda: F.fold(F.unfold(X, 2), X.shape[-2:], 2),
}


@pytest.mark.parametrize("attack", CONV_BACKWARD_ATTACKS)
def test_transposed_convolution_routes_are_caught(attack):
    with pytest.raises(ForbiddenCallError, match="not allowed"):
        with forbid(*CONV_BACKWARD_FORBIDDEN):
            CONV_BACKWARD_ATTACKS[attack]()


XP = torch.randn(2, 3, 8, 8, dtype=torch.float64)
LEAF = XP.clone().requires_grad_(True)
POOLED_EARLIER = F.max_pool2d(LEAF, 2)  # its graph was built in an earlier cell
POOL_ATTACKS = {
    "dict holding F.max_pool2d": lambda: SAVED["max_pool"](XP, 2),
    "torch._C._nn.max_pool2d_with_indices": lambda: torch._C._nn.max_pool2d_with_indices(
        XP, [2, 2], [2, 2], [0, 0], [1, 1], False
    ),
    "lp_pool2d is an average pool": lambda: F.lp_pool2d(XP, 1, 2),
    "max_pool3d": lambda: torch.max_pool3d(XP[:, None], (1, 2, 2)),
    "backward operator called directly": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
        torch.ones(2, 3, 4, 4, dtype=torch.float64),
        XP,
        [2, 2],
        [2, 2],
        [0, 0],
        [1, 1],
        False,
        torch.zeros(2, 3, 4, 4, dtype=torch.long),
    ),  # fmt: skip
    "grad_fn of an earlier graph called by hand": lambda: POOLED_EARLIER.grad_fn(
        torch.ones_like(POOLED_EARLIER)
    ),
    "average pool as a convolution with a constant kernel": lambda: F.conv2d(
        XP.flatten(0, 1)[:, None], torch.full((1, 1, 2, 2), 0.25, dtype=XP.dtype), stride=2
    ),
    "windows with F.unfold": lambda: F.unfold(XP, 2, stride=2).view(2, 3, 4, 16).amax(2),
    "windows with Tensor.unfold": lambda: XP.unfold(2, 2, 2).unfold(3, 2, 2).amax((-2, -1)),
    "windows added back up with F.fold": lambda: F.fold(
        torch.ones(2, 12, 16, dtype=XP.dtype), (8, 8), 2, stride=2
    ),
}
NORM_ATTACKS = {
    "instance_norm of the batch as one instance": lambda: F.instance_norm(XP.transpose(0, 1)[None]),
    "layer_norm per channel": lambda: F.layer_norm(XP.transpose(0, 1).flatten(1), [128]),
    "course_lib.norm.batch_norm": lambda: course_lib.norm.batch_norm(
        XP, torch.ones(3), torch.zeros(3), torch.zeros(3), torch.ones(3), training=True
    ),
}
AUTOGRAD_ATTACKS = {
    "dict holding torch.autograd.grad": lambda leaf: SAVED["grad"]((leaf * 2).sum(), leaf),
    "torch.autograd.functional.vjp": lambda leaf: torch.autograd.functional.vjp(
        lambda t: (t * 2).sum(), leaf
    ),
    "Tensor.backward": lambda leaf: (leaf * 2).sum().backward(),
}


@pytest.mark.parametrize("attack", POOL_ATTACKS)
def test_pooling_routes_are_caught(attack):
    with pytest.raises(ForbiddenCallError, match="not allowed"):
        with forbid(*POOL_FORBIDDEN, *WINDOW_FORBIDDEN):
            POOL_ATTACKS[attack]()


@pytest.mark.parametrize("attack", NORM_ATTACKS)
def test_normalization_routes_are_caught(attack):
    with pytest.raises(ForbiddenCallError, match="not allowed"), forbid(*BN_FORBIDDEN):
        NORM_ATTACKS[attack]()


@pytest.mark.parametrize("attack", AUTOGRAD_ATTACKS)
def test_autograd_routes_are_caught(attack):
    leaf = XP.clone().requires_grad_(True)
    with pytest.raises(ForbiddenCallError, match="not allowed"), forbid(*AUTOGRAD_FORBIDDEN):
        AUTOGRAD_ATTACKS[attack](leaf)


@pytest.mark.parametrize("impl", ["adam", "single_tensor_adam", "sgd"])
def test_functional_optimizers_in_a_dict_are_caught(impl):
    p = torch.zeros(3)
    with pytest.raises(ForbiddenCallError, match="not allowed"):
        with forbid(*OPTIM_FORBIDDEN):
            if impl == "sgd":
                SAVED["sgd"]([p], [torch.ones(3)], [None], weight_decay=0.0, momentum=0.0,
                             lr=0.1, dampening=0.0, nesterov=False, maximize=False)  # fmt: skip
            else:
                _functional_adam_step(p, SAVED[impl])


def test_library_optimizers_are_caught_whoever_built_them():
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    built_before = [torch.optim.AdamW([p]), course_lib.optim.Adam([p]), torch.optim.SGD([p])]
    for optimizer in built_before:
        with pytest.raises(ForbiddenCallError), forbid(*OPTIM_FORBIDDEN):
            optimizer.step()

    class Borrowed(torch.optim.Adam):  # ps4's cheat: Adam, renamed
        pass

    with pytest.raises(ForbiddenCallError), forbid(*OPTIM_FORBIDDEN):
        Borrowed([p]).step()


def test_message_names_the_targets_and_what_ran():
    with pytest.raises(ForbiddenCallError) as info, forbid(*CONV_FORBIDDEN):
        torch.conv3d(X[:, :, None], W[:, :, None])
    message = str(info.value)
    assert "torch.nn.functional.conv2d" in message and "aten::convolution" in message
    assert "write it yourself" in message


def test_profiler_and_modes_are_restored():
    import sys

    from torch.utils._python_dispatch import _get_current_dispatch_mode

    before = sys.getprofile()
    with pytest.raises(ForbiddenCallError), forbid(*CONV_FORBIDDEN):
        SAVED["library_conv"](X, W)
    assert sys.getprofile() is before
    assert _get_current_dispatch_mode() is None
    F.conv2d(X, W)  # outside the block: allowed


def test_a_wrapped_attribute_set_on_a_library_function_does_not_mislead(monkeypatch):
    """functools.update_wrapper(library_function, own) sets __wrapped__ on the library's
    function; the check still knows the library function's own code."""

    def decoy(*args, **kwargs):
        return None

    monkeypatch.setattr(course_lib.conv.conv2d, "__wrapped__", decoy, raising=False)
    with pytest.raises(ForbiddenCallError, match="course_lib.conv.conv2d"):
        with forbid("course_lib.conv.conv2d", "course_lib.conv.conv2d"):  # a fresh plan
            course_lib.conv.conv2d(X, W)


def test_turning_the_check_off_with_a_profiler_is_reported():
    import sys

    def own_profiler(frame, event, arg):
        return None

    with pytest.raises(ForbiddenCallError, match="turned off the check"):
        with forbid("course_lib.conv.conv2d"):  # seen only as Python code, not as an operator
            sys.setprofile(own_profiler)  # what torch.profiler's stack tracing does
            SAVED["library_conv"](X, W)
    assert sys.getprofile() is None
