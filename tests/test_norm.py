"""course_lib.norm against torch.nn.functional.batch_norm and torch.nn.BatchNorm1d/2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.norm import (
    BatchNorm1d,
    BatchNorm2d,
    batch_norm,
    batch_norm_backward,
    batch_statistics,
)

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
DTYPES = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]
SHAPES = [pytest.param((6, 5), id="ND"), pytest.param((4, 3, 5, 6), id="NCHW")]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)


def make_input(shape, dtype, device) -> torch.Tensor:
    # shifted and scaled so that the normalization does something visible
    return torch.randn(shape, dtype=dtype, device=device) * 2.5 + 1.5


def channel_vectors(c: int, dtype, device):
    gamma = torch.rand(c, dtype=dtype, device=device) + 0.5
    beta = torch.randn(c, dtype=dtype, device=device)
    return gamma, beta


# ----------------------------------------------------------------------------------------------
# the functional forward pass
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training_matches_torch(shape, dtype, device):
    x = make_input(shape, dtype, device)
    c = shape[1]
    gamma, beta = channel_vectors(c, dtype, device)
    ours_mean, ours_var = (
        torch.zeros(c, dtype=dtype, device=device),
        torch.ones(c, dtype=dtype, device=device),
    )
    ref_mean, ref_var = ours_mean.clone(), ours_var.clone()
    for _ in range(3):  # several steps: the running averages compound
        x = make_input(shape, dtype, device)
        out = batch_norm(x, gamma, beta, ours_mean, ours_var, training=True, momentum=0.2, eps=1e-3)
        ref = F.batch_norm(x, ref_mean, ref_var, gamma, beta, training=True, momentum=0.2, eps=1e-3)
        assert_close(out, ref, TOL[dtype])
    assert_close(ours_mean, ref_mean, TOL[dtype])
    assert_close(ours_var, ref_var, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_eval_matches_torch(shape, dtype, device):
    x = make_input(shape, dtype, device)
    c = shape[1]
    gamma, beta = channel_vectors(c, dtype, device)
    running_mean = torch.randn(c, dtype=dtype, device=device)
    running_var = torch.rand(c, dtype=dtype, device=device) + 0.1
    before = running_mean.clone(), running_var.clone()
    out = batch_norm(x, gamma, beta, running_mean, running_var, training=False)
    ref = F.batch_norm(x, running_mean, running_var, gamma, beta, training=False)
    assert_close(out, ref, TOL[dtype])
    # evaluation mode never touches the running statistics
    assert torch.equal(running_mean, before[0]) and torch.equal(running_var, before[1])


def test_training_output_is_normalized_per_channel(device):
    x = make_input((8, 3, 4, 4), torch.float64, device)
    out = batch_norm(x, None, None, eps=0.0 + 1e-12)
    assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=x.dtype, device=device), 1e-10)
    assert_close(
        out.var(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=x.dtype, device=device), 1e-8
    )


def test_running_var_receives_unbiased_variance(device):
    # the lecture's point: normalize with the biased variance, average the unbiased one
    x = torch.tensor([[1.0], [2.0], [3.0], [6.0]], dtype=torch.float64, device=device)
    running_mean = torch.zeros(1, dtype=torch.float64, device=device)
    running_var = torch.zeros(1, dtype=torch.float64, device=device)
    batch_norm(x, None, None, running_mean, running_var, training=True, momentum=1.0)
    assert running_mean.item() == pytest.approx(3.0)
    assert running_var.item() == pytest.approx(14.0 / 3.0)  # sum of squares 14, m - 1 = 3
    _, biased = batch_statistics(x)
    assert biased.item() == pytest.approx(14.0 / 4.0)


def test_batch_statistics_matches_torch(device):
    x = make_input((5, 4, 3, 2), torch.float64, device)
    mean, var = batch_statistics(x)
    assert mean.shape == var.shape == (4,)
    assert_close(mean, x.mean(dim=(0, 2, 3)), 1e-12)
    assert_close(var, x.var(dim=(0, 2, 3), unbiased=False), 1e-12)


def test_gradcheck_batch_norm(device):
    x = make_input((3, 2, 2, 3), torch.float64, device).requires_grad_()
    gamma, beta = channel_vectors(2, torch.float64, device)
    gamma.requires_grad_()
    beta.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g, b: batch_norm(a, g, b), (x, gamma, beta))


# ----------------------------------------------------------------------------------------------
# the backward pass by hand
# ----------------------------------------------------------------------------------------------
def autograd_gradients(grad_out, x, gamma, eps):
    x = x.clone().requires_grad_()
    gamma = gamma.clone().requires_grad_()
    beta = torch.zeros_like(gamma, requires_grad=True)
    F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps).backward(grad_out)
    return x.grad, gamma.grad, beta.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_backward_matches_autograd(shape, dtype, device):
    x = make_input(shape, dtype, device)
    gamma, _ = channel_vectors(shape[1], dtype, device)
    grad_out = torch.randn(shape, dtype=dtype, device=device)
    ours = batch_norm_backward(grad_out, x, gamma, eps=1e-5)
    expected = autograd_gradients(grad_out, x, gamma, 1e-5)
    for name, a, b in zip(("grad_x", "grad_gamma", "grad_beta"), ours, expected, strict=True):
        assert a.shape == b.shape, name
        # grad_x is a difference of sums: float32 needs a little more room than 1e-5
        assert_close(a, b, TOL[dtype] * (10 if dtype == torch.float32 else 1))


def test_batch_norm_backward_without_gamma(device):
    x = make_input((6, 4), torch.float64, device)
    grad_out = torch.randn(6, 4, dtype=torch.float64, device=device)
    ours = batch_norm_backward(grad_out, x, None)
    expected = autograd_gradients(
        grad_out, x, torch.ones(4, dtype=torch.float64, device=device), 1e-5
    )
    for a, b in zip(ours, expected, strict=True):
        assert_close(a, b, 1e-10)


# ----------------------------------------------------------------------------------------------
# the modules against torch.nn
# ----------------------------------------------------------------------------------------------
MODULES = [
    pytest.param(BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 5, 5), id="2d"),
    pytest.param(BatchNorm1d, torch.nn.BatchNorm1d, (7, 3), id="1d"),
]


def module_pair(ours_cls, torch_cls, dtype, device, **kwargs):
    ours = ours_cls(3, **kwargs).to(device=device, dtype=dtype)
    ref = torch_cls(3, **kwargs).to(device=device, dtype=dtype)
    if ref.affine:  # non-trivial gamma and beta, the same in both
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.normal_()
        ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=["m0.1", "m0.5", "cumulative"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ours_cls, torch_cls, shape", MODULES)
def test_module_matches_torch_train_then_eval(ours_cls, torch_cls, shape, dtype, momentum, device):
    ours, ref = module_pair(ours_cls, torch_cls, dtype, device, momentum=momentum)
    tol = TOL[dtype]
    for _ in range(4):
        x = make_input(shape, dtype, device)
        assert_close(ours(x), ref(x), tol)
    for name, buffer in ref.named_buffers():
        assert_close(getattr(ours, name), buffer, tol)
    ours.eval()
    ref.eval()
    x = make_input(shape, dtype, device)
    assert_close(ours(x), ref(x), tol)
    assert int(ours.num_batches_tracked) == 4


@pytest.mark.parametrize("ours_cls, torch_cls, shape", MODULES)
def test_module_gradients_match_torch(ours_cls, torch_cls, shape, device):
    ours, ref = module_pair(ours_cls, torch_cls, torch.float64, device)
    x = make_input(shape, torch.float64, device)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.randn(shape, dtype=torch.float64, device=device)
    (ours(x1) * weights).sum().backward()
    (ref(x2) * weights).sum().backward()
    assert_close(x1.grad, x2.grad, 1e-10)
    assert_close(ours.weight.grad, ref.weight.grad, 1e-10)
    assert_close(ours.bias.grad, ref.bias.grad, 1e-10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"affine": False},
        {"track_running_stats": False},
        {"affine": False, "track_running_stats": False},
    ],
    ids=["no-affine", "no-running", "neither"],
)
def test_module_options_match_torch(kwargs, device):
    ours, ref = module_pair(BatchNorm2d, torch.nn.BatchNorm2d, torch.float64, device, **kwargs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    x = make_input((3, 3, 4, 4), torch.float64, device)
    assert_close(ours(x), ref(x), 1e-10)
    ours.eval()
    ref.eval()
    assert_close(ours(x), ref(x), 1e-10)


@pytest.mark.parametrize("ours_cls, torch_cls, shape", MODULES)
def test_state_dict_round_trips_both_ways(ours_cls, torch_cls, shape, device):
    ref = torch_cls(3).double().to(device)
    for _ in range(3):  # give the buffers non-default values
        ref(make_input(shape, torch.float64, device))
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
    ours = ours_cls(3).double().to(device)
    ours.load_state_dict(ref.state_dict())  # torch -> ours
    back = torch_cls(3).double().to(device)
    back.load_state_dict(ours.state_dict())  # ours -> torch
    assert list(ours.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    for module in (ours, ref, back):
        module.eval()
    x = make_input(shape, torch.float64, device)
    assert_close(ours(x), ref(x), 1e-10)
    assert_close(back(x), ref(x), 1e-10)


def test_reset_parameters_and_repr():
    bn = BatchNorm2d(2, momentum=None)
    bn(torch.randn(4, 2, 3, 3))
    with torch.no_grad():
        bn.weight.fill_(3.0)
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.ones(2)) and torch.equal(bn.running_var, torch.ones(2))
    assert int(bn.num_batches_tracked) == 0
    assert repr(bn).startswith("BatchNorm2d(2, eps=1e-05, momentum=None, affine=True")


# ----------------------------------------------------------------------------------------------
# property tests over random shapes
# ----------------------------------------------------------------------------------------------
@st.composite
def bn_shapes(draw):
    n = draw(st.integers(1, 5))
    c = draw(st.integers(1, 4))
    if draw(st.booleans()):
        return (max(n, 2), c)
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if n * h * w == 1:
        n = 2
    return (n, c, h, w)


@settings(max_examples=30, deadline=None)
@given(shape=bn_shapes(), momentum=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_property_forward_and_running_stats_match_torch(shape, momentum, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3.0
    c = shape[1]
    gamma = torch.rand(c, generator=gen, dtype=torch.float64)
    beta = torch.randn(c, generator=gen, dtype=torch.float64)
    ours_stats = [torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)]
    ref_stats = [s.clone() for s in ours_stats]
    out = batch_norm(x, gamma, beta, *ours_stats, training=True, momentum=momentum)
    ref = F.batch_norm(x, *ref_stats, gamma, beta, training=True, momentum=momentum)
    assert_close(out, ref, 1e-10)
    assert_close(ours_stats[0], ref_stats[0], 1e-10)
    assert_close(ours_stats[1], ref_stats[1], 1e-10)
    out = batch_norm(x, gamma, beta, *ours_stats, training=False)
    ref = F.batch_norm(x, *ref_stats, gamma, beta, training=False)
    assert_close(out, ref, 1e-10)


@settings(max_examples=30, deadline=None)
@given(shape=bn_shapes(), seed=st.integers(0, 2**16))
def test_property_backward_matches_autograd(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    gamma = torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.1
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64)
    ours = batch_norm_backward(grad_out, x, gamma)
    for a, b in zip(ours, autograd_gradients(grad_out, x, gamma, 1e-5), strict=True):
        assert_close(a, b, 1e-9)


# ----------------------------------------------------------------------------------------------
# bad input: every public function names the problem
# ----------------------------------------------------------------------------------------------
X4 = torch.randn(2, 3, 4, 4)
ONES3 = torch.ones(3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: batch_norm([[1.0, 2.0]], None, None), TypeError, "torch.Tensor"),
        (
            lambda: batch_norm(torch.randn(2, 3, 4), None, None),
            ValueError,
            r"\(N, C\) or \(N, C, H, W\)",
        ),
        (lambda: batch_norm(torch.ones(2, 3, dtype=torch.long), None, None), TypeError, "floating"),
        (lambda: batch_norm(X4, torch.ones(4), None), ValueError, "gamma.*3 channels"),
        (lambda: batch_norm(X4, ONES3, torch.ones(2)), ValueError, "beta"),
        (lambda: batch_norm(X4, ONES3.double(), None), TypeError, "gamma has dtype"),
        (lambda: batch_norm(X4, torch.ones(3, 1), None), ValueError, "gamma must be a 1-D"),
        (
            lambda: batch_norm(X4, None, None, torch.zeros(2), torch.ones(2)),
            ValueError,
            "running_mean",
        ),
        (lambda: batch_norm(X4, None, None, torch.zeros(3), None), ValueError, "both"),
        (lambda: batch_norm(X4, None, None, training=False), ValueError, "evaluation mode"),
        (lambda: batch_norm(X4, None, None, training=1), TypeError, "training"),
        (lambda: batch_norm(X4, None, None, momentum=1.5), ValueError, "momentum"),
        (lambda: batch_norm(X4, None, None, momentum=None), TypeError, "momentum"),
        (lambda: batch_norm(X4, None, None, eps=0.0), ValueError, "eps"),
        (
            lambda: batch_norm(X4, None, None, torch.zeros(3, requires_grad=True), torch.ones(3)),
            ValueError,
            "must not require gradients",
        ),
        (
            lambda: batch_norm(
                X4, None, None, torch.zeros(3), torch.ones(3, requires_grad=True), training=False
            ),
            ValueError,
            "must not require gradients",
        ),
        (lambda: batch_norm(torch.randn(1, 3, 1, 1), None, None), ValueError, "more than 1 value"),
        (lambda: batch_norm(torch.randn(1, 3), None, None), ValueError, "more than 1 value"),
        (lambda: batch_statistics(torch.randn(4)), ValueError, "1-D"),
        (lambda: batch_norm_backward(X4, X4, torch.ones(2)), ValueError, "gamma"),
        (
            lambda: batch_norm_backward(X4[:1], X4, ONES3),
            ValueError,
            "grad_out must have the shape",
        ),
        (lambda: batch_norm_backward(X4.double(), X4, ONES3), TypeError, "grad_out has dtype"),
        (lambda: batch_norm_backward("g", X4, ONES3), TypeError, "grad_out"),
        (
            lambda: batch_norm_backward(torch.ones(1, 3), torch.ones(1, 3), ONES3),
            ValueError,
            "more than 1",
        ),
        (lambda: BatchNorm2d(0), ValueError, "num_features"),
        (lambda: BatchNorm2d(3.0), TypeError, "num_features"),
        (lambda: BatchNorm2d(3, eps=-1.0), ValueError, "eps"),
        (lambda: BatchNorm2d(3, momentum=2.0), ValueError, "momentum"),
        (lambda: BatchNorm1d(3, affine="yes"), TypeError, "affine"),
        (lambda: BatchNorm2d(3)(torch.randn(2, 3)), ValueError, r"4-D tensor \(N, C, H, W\)"),
        (lambda: BatchNorm2d(3)(torch.randn(2, 4, 3, 3)), ValueError, "expects 3 channels"),
        (lambda: BatchNorm2d(3)(torch.ones(2, 3, 2, 2, dtype=torch.int32)), TypeError, "floating"),
        (lambda: BatchNorm2d(3)(torch.randn(1, 3, 1, 1)), ValueError, "more than 1 value"),
        (lambda: BatchNorm1d(3)(torch.randn(2, 3, 4)), ValueError, r"2-D tensor \(N, C\)"),
        (lambda: BatchNorm1d(3)(torch.randn(1, 3)), ValueError, "more than 1 value"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_single_value_per_channel_is_fine_in_eval_mode():
    bn = BatchNorm2d(3).eval()
    assert bn(torch.randn(1, 3, 1, 1)).shape == (1, 3, 1, 1)


# ----------------------------------------------------------------------------------------------
# the code paths a small test input does not take by itself, and unusual layouts
# ----------------------------------------------------------------------------------------------
def _train_and_eval_against_torch(x, gamma, beta, grad_out=None) -> None:
    """Training (output, running statistics, gradients) and evaluation against F.batch_norm.

    ``x, gamma, beta`` require gradients and go to course_lib as they are (layout, strides).
    """
    c, dtype = x.shape[1], x.dtype
    ours_stats = [torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype)]
    torch_stats = [v.clone() for v in ours_stats]
    # PyTorch gets copies with a contiguous gamma and beta: its CPU backward pass (2.14) gets
    # grad_x wrong for a channels_last input and grad_out with a strided gamma (checked
    # against autograd through elementary operations in float64); course_lib's is right
    x_ref = x.detach().clone().requires_grad_()
    gamma_ref, beta_ref = (
        None if v is None else v.detach().contiguous().requires_grad_() for v in (gamma, beta)
    )
    out = batch_norm(x, gamma, beta, *ours_stats, training=True)
    ref = F.batch_norm(x_ref, *torch_stats, gamma_ref, beta_ref, training=True)
    assert_close(out, ref, 1e-10)
    for ours, theirs in zip(ours_stats, torch_stats, strict=True):
        assert_close(ours, theirs, 1e-10)
    grad_out = torch.randn_like(ref) if grad_out is None else grad_out
    ours_inputs = [t for t in (x, gamma, beta) if t is not None]
    torch_inputs = [t for t in (x_ref, gamma_ref, beta_ref) if t is not None]
    expected = torch.autograd.grad(ref, torch_inputs, grad_out)
    for got, want in zip(torch.autograd.grad(out, ours_inputs, grad_out), expected, strict=True):
        assert_close(got, want, 1e-10)
    ref_eval = F.batch_norm(x_ref, *torch_stats, gamma_ref, beta_ref, training=False)
    assert_close(batch_norm(x, gamma, beta, *ours_stats, training=False), ref_eval, 1e-10)
    with torch.no_grad():
        assert_close(batch_norm(x, gamma, beta, *ours_stats, training=False), ref_eval, 1e-10)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(40, 6), (6, 3, 4, 5)])
def test_large_batches_processed_in_pieces_match_torch(shape, affine, monkeypatch):
    """Batches over CHUNK_BYTES go through the loops of course_lib._chunks; 512 bytes sends
    these small inputs there (the tests would otherwise need inputs of several MiB)."""
    import course_lib._chunks as chunks
    from course_lib import norm

    monkeypatch.setattr(chunks, "CHUNK_BYTES", 512)
    monkeypatch.setattr(norm, "CHUNK_BYTES", 512)
    x = make_input(shape, torch.float64, "cpu").requires_grad_()
    assert not norm._in_one_piece(x) and len(chunks.batch_pieces(x)) > 1
    gamma, beta = (v.requires_grad_() for v in channel_vectors(shape[1], torch.float64, "cpu"))
    if affine:
        _train_and_eval_against_torch(x, gamma, beta)
    else:
        _train_and_eval_against_torch(x, None, None)


def test_channels_last_strided_gamma_and_expanded_gradient():
    """A channels_last input keeps its layout; gamma and beta may be strided views; the
    gradient that ``y.sum().backward()`` sends is an expanded tensor (one number, stride 0)."""
    x = make_input((4, 3, 5, 6), torch.float64, "cpu").to(memory_format=torch.channels_last)
    weights, biases = channel_vectors(6, torch.float64, "cpu")
    gamma, beta = weights[::2], biases[1::2]
    assert not gamma.is_contiguous()
    x, gamma, beta = (t.requires_grad_() for t in (x, gamma, beta))
    _train_and_eval_against_torch(x, gamma, beta)
    expanded = x.new_ones(()).expand(x.shape)  # x's dtype: autograd passes it on uncopied
    assert expanded.stride() == (0, 0, 0, 0)
    _train_and_eval_against_torch(x, gamma, beta, grad_out=expanded)
    y = batch_norm(x, gamma, beta)
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(16, 8), (4, 3, 5, 6)])
def test_training_saves_one_tensor_of_the_input_size_like_torch(shape):
    """The backward pass needs x - mu or x, not both: what autograd keeps for batch norm's
    backward pass is no larger than what it keeps for F.batch_norm's."""
    x = make_input(shape, torch.float32, "cpu").requires_grad_()
    gamma, beta = (v.requires_grad_() for v in channel_vectors(shape[1], torch.float32, "cpu"))

    def saved_numbers(function, *args, **kwargs) -> int:
        numbers = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: numbers.append(t.numel()) or t, lambda t: t
        ):
            function(*args, **kwargs)
        return sum(numbers)

    ours = saved_numbers(batch_norm, x, gamma, beta)
    theirs = saved_numbers(F.batch_norm, x, None, None, gamma, beta, training=True)
    assert x.numel() <= ours <= theirs


def test_second_derivatives_raise_instead_of_being_wrong():
    """The backward pass reuses statistics saved without a graph: differentiating it again
    would miss the paths through mu and var, so once_differentiable makes it an error."""
    x = make_input((6, 3), torch.float64, "cpu").requires_grad_()
    y = batch_norm(x, None, None)
    (grad_x,) = torch.autograd.grad((y**3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_x.sum().backward()
