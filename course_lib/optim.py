"""Optimizers written out by hand, plus 2-D test surfaces to watch them move.

Every optimizer here is a ``torch.optim.Optimizer`` subclass built the way PyTorch's own
``torch/optim/*.py`` are: hyperparameters live in ``defaults`` and in each parameter group,
per-parameter state lives in ``self.state[p]`` under PyTorch's names (``momentum_buffer``,
``sum``, ``square_avg``, ``exp_avg``, ``exp_avg_sq``, ``step``), and ``step(closure=None)``
runs under ``torch.no_grad()``. Each one performs the same floating-point operations in the
same order as its ``torch.optim`` twin, so the two agree to rounding error (the tests check
1e-10 after 100+ steps in float64) and either can be used in the course notebooks.

Notation in the docstrings: ``theta`` a parameter, ``g_t`` its gradient at step ``t``
(``t`` counts from 1), ``lr`` the learning rate, ``lambda`` the weight decay.

The deck formulas and where PyTorch differs (checked against ``torch.optim``):

- SGD + momentum ``m_t = beta*m_{t-1} + g_t``, ``w -= lr*m_t``: exactly PyTorch's rule
  (``dampening=0``). Some texts write ``m_t = beta*m_{t-1} + (1-beta)*g_t`` instead; that is
  the same path as PyTorch's rule with the learning rate multiplied by ``1 - beta``
  (``dampening=beta`` comes close, but PyTorch starts the buffer at ``g_1``, not ``0.1 g_1``).
- AdaGrad and RMSProp divide by ``sqrt(g_sq)`` with no epsilon; PyTorch adds ``eps`` *after*
  the square root so a weight that has never had a gradient does not divide by zero.
- The RMSProp slide calls its decay rate ``epsilon`` (0.999); PyTorch calls it ``alpha``
  (default 0.99) and keeps ``eps`` for the small constant in the denominator.
- The Adam slide has no bias correction and no epsilon: see :class:`Adam`.

**Two ways to run the same update (``foreach``).** Written per parameter, an update is a
Python loop that launches a few small tensor operations for every parameter: ResNet-18 has 62
parameter tensors, so one Adam step is some 400 operations. On a GPU each operation is a
kernel launch costing microseconds whatever its size, and the loop, not the arithmetic,
sets the speed. ``torch.optim``'s *multi-tensor* ("foreach") implementations apply each
operation to the whole list of parameters at once: ``torch._foreach_mul_(exp_avgs, beta1)``
multiplies every tensor of the list in one call (on a GPU, one fused kernel for the lot).
Every optimizer here has both paths, chosen by ``foreach`` (``None``: the foreach path when
every parameter of the group lives on a CUDA device, as in ``torch.optim``). The foreach
path performs the same operations in the same order on the same numbers, so on the CPU the
two give bit-identical results (tested); compare ``_update`` with ``_update_foreach`` in
each class to see the translation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

# What every torch.optim.Optimizer accepts: tensors, or dicts {"params": [...], "lr": ...}.
Params = Iterable[Tensor] | Iterable[dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Hyperparameter checks
# ---------------------------------------------------------------------------------------------
def _check_in_range(
    value: object,
    name: str,
    low: float = 0.0,
    high: float | None = None,
    high_included: bool = True,
) -> None:
    """Raise TypeError unless ``value`` is a real number, ValueError unless it lies in range.

    The range is ``[low, high]`` (or ``[low, high)`` when ``high_included`` is False, or
    ``[low, inf)`` when ``high`` is None). NaN fails every comparison and is rejected too.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    if high is None:
        ok, interval = value >= low, f"[{low:g}, inf)"
    elif high_included:
        ok, interval = low <= value <= high, f"[{low:g}, {high:g}]"
    else:
        ok, interval = low <= value < high, f"[{low:g}, {high:g})"
    if not ok:
        raise ValueError(f"{name} must be in {interval}; got {value!r}")


def _check_betas(betas: object) -> None:
    """``betas`` must be a pair ``(beta1, beta2)`` with each entry in ``[0, 1)``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
    _check_in_range(betas[0], "betas[0] (beta1)", 0.0, 1.0, high_included=False)
    _check_in_range(betas[1], "betas[1] (beta2)", 0.0, 1.0, high_included=False)


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")


# ---------------------------------------------------------------------------------------------
# The shared step loop
# ---------------------------------------------------------------------------------------------
def _check_foreach(value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"foreach must be True, False or None; got {type(value).__name__}")


def _group_by_device_and_dtype(params: list[Tensor]) -> dict[tuple, list[int]]:
    """Positions of the parameters that share a device and dtype: a foreach call needs both."""
    buckets: dict[tuple, list[int]] = {}
    for index, param in enumerate(params):
        buckets.setdefault((param.device, param.dtype), []).append(index)
    return buckets


class _CourseOptimizer(Optimizer):
    """The step loop every optimizer here shares; a subclass only says how parameters move.

    Subclasses implement ``_check_hyperparameters(group)``, ``_init_state(param, state,
    group)`` (called once per parameter, before its first update), the per-parameter
    ``_update(param, grad, state, group)`` and the multi-tensor
    ``_update_foreach(params, grads, states, group)``, which receives lists of parameters
    that share one device and dtype. Hyperparameters are checked for the defaults and again
    for every parameter group (``torch.optim`` checks only the constructor arguments, so a
    group with ``lr=-1`` would slip through there).
    """

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self._check_hyperparameters(defaults)
        _check_foreach(defaults.get("foreach"))
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._check_hyperparameters({**self.defaults, **param_group})
        _check_foreach(param_group.get("foreach"))
        super().add_param_group(param_group)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict) -> None:
        """Create the per-parameter state (moments, step counter); nothing by default."""

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict) -> None:
        raise NotImplementedError

    def _update_foreach(
        self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict
    ) -> None:
        raise NotImplementedError

    def _use_foreach(self, group: dict, params: list[Tensor]) -> bool:
        if group.get("foreach") is not None:
            return group["foreach"]
        return all(p.is_cuda for p in params)  # torch.optim's default

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter that has a ``.grad``; return ``closure()`` if one is given.

        ``closure`` re-evaluates the model and returns the loss (needed by some optimizers
        such as L-BFGS; accepted here for the same interface). It runs with gradients on.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Parameters without a gradient (a frozen layer, a branch the loss did not use)
            # are skipped.
            params = [p for p in group["params"] if p.grad is not None]
            for param in params:
                if param.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[param]
                if not state:
                    self._init_state(param, state, group)
            if not params:
                continue
            if self._use_foreach(group, params):
                for positions in _group_by_device_and_dtype(params).values():
                    bucket = [params[i] for i in positions]
                    grads = [p.grad for p in bucket]
                    self._update_foreach(bucket, grads, [self.state[p] for p in bucket], group)
            else:
                for param in params:
                    self._update(param, param.grad, self.state[param], group)
        return loss


# ---------------------------------------------------------------------------------------------
# The optimizers
# ---------------------------------------------------------------------------------------------
class SGD(_CourseOptimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    Update for each parameter ``theta`` (same shape as its gradient ``g_t``)::

        g_t   <- g_t + lambda * theta                  (L2 penalty lambda/2 ||theta||^2)
        b_1   <- g_1                                   (the buffer starts at g_1)
        b_t   <- mu * b_{t-1} + (1 - dampening) * g_t  (t > 1)
        d_t   <- g_t + mu * b_t  if nesterov  else  b_t   (d_t = g_t when mu = 0)
        theta <- theta - lr * d_t

    ``mu`` is ``momentum``. Plain SGD (``momentum=0``) is the deck's ``w <- w - lr * g``;
    ``momentum=0.9`` is its "SGD + Momentum" ``m_t = 0.9 m_{t-1} + g_t``. The Nesterov form
    ``g_t + mu * b_t`` evaluates the step as if the momentum had already been applied (Sutskever
    et al. 2013, rewritten so only the current gradient is needed), as PyTorch does.

    State: ``self.state[p]["momentum_buffer"]`` (only when ``momentum > 0``).

    Args:
        params: parameters or parameter groups (dicts with their own ``lr``, ``momentum``, ...).
        lr: learning rate, >= 0.
        momentum: ``mu`` in [0, 1].
        dampening: scales the gradient entering the buffer by ``1 - dampening``, in [0, 1].
        weight_decay: ``lambda`` >= 0, added to the gradient (coupled L2 regularization).
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening = 0``.
        foreach: keyword only; ``True`` for the multi-tensor path, ``False`` for the loop over
            parameters, ``None`` (default) for foreach on CUDA (see the module docstring).
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        _check_in_range(group["lr"], "lr")
        _check_in_range(group["momentum"], "momentum", 0.0, 1.0)
        _check_in_range(group["dampening"], "dampening", 0.0, 1.0)
        _check_in_range(group["weight_decay"], "weight_decay")
        _check_bool(group["nesterov"], "nesterov")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0; got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict) -> None:
        momentum = group["momentum"]
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.detach().clone()
            else:
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            buffer = state["momentum_buffer"]
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        param.add_(grad, alpha=-group["lr"])

    def _update_foreach(
        self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict
    ) -> None:
        momentum = group["momentum"]
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if momentum != 0:
            # A buffer starts as a copy of the first gradient; existing ones decay and add.
            has_buffer = ["momentum_buffer" in state for state in states]
            old = [i for i, has in enumerate(has_buffer) if has]
            if old:
                old_buffers = [states[i]["momentum_buffer"] for i in old]
                torch._foreach_mul_(old_buffers, momentum)
                torch._foreach_add_(
                    old_buffers, [grads[i] for i in old], alpha=1 - group["dampening"]
                )
            for i, has in enumerate(has_buffer):
                if not has:
                    states[i]["momentum_buffer"] = grads[i].detach().clone()
            buffers = [state["momentum_buffer"] for state in states]
            if group["nesterov"]:
                grads = torch._foreach_add(grads, buffers, alpha=momentum)
            else:
                grads = buffers
        torch._foreach_add_(params, grads, alpha=-group["lr"])


class AdaGrad(_CourseOptimizer):
    r"""AdaGrad: each weight's step is divided by the root of its summed squared gradients.

    Update for each parameter ``theta``::

        g_t   <- g_t + lambda * theta
        s_t   <- s_{t-1} + g_t^2                       (s_0 = initial_accumulator_value)
        theta <- theta - lr * g_t / (sqrt(s_t) + eps)

    all elementwise. A weight that keeps receiving large gradients gets an ever smaller step
    (a per-weight learning rate); since ``s_t`` only grows, every step shrinks over time,
    which is what RMSProp fixes. The deck's formula has no ``eps``; PyTorch adds it after the
    square root. On the first step (``s_0 = 0``) every weight moves by ``lr * sign(g)``.

    State: ``step`` (int) and ``sum`` (``s_t``, shape of ``theta``).
    ``lr_decay`` of ``torch.optim.Adagrad`` is left out (it defaults to 0 there).
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        _check_in_range(group["lr"], "lr")
        _check_in_range(group["eps"], "eps")
        _check_in_range(group["weight_decay"], "weight_decay")
        _check_in_range(group["initial_accumulator_value"], "initial_accumulator_value")

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] = 0
        state["sum"] = torch.full_like(
            param, group["initial_accumulator_value"], memory_format=torch.preserve_format
        )

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        state["sum"].addcmul_(grad, grad, value=1)
        std = state["sum"].sqrt().add_(group["eps"])
        param.addcdiv_(grad, std, value=-group["lr"])

    def _update_foreach(
        self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict
    ) -> None:
        for state in states:
            state["step"] += 1
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        sums = [state["sum"] for state in states]
        torch._foreach_addcmul_(sums, grads, grads, value=1)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, group["eps"])
        torch._foreach_addcdiv_(params, grads, std, value=-group["lr"])


class RMSProp(_CourseOptimizer):
    r"""RMSProp: AdaGrad with a moving average of squared gradients instead of a sum.

    Update for each parameter ``theta``::

        g_t   <- g_t + lambda * theta
        v_t   <- alpha * v_{t-1} + (1 - alpha) * g_t^2        (v_0 = 0)
        theta <- theta - lr * g_t / (sqrt(v_t) + eps)

    Old gradients are forgotten at rate ``alpha``, so the step no longer shrinks forever.
    The deck writes the decay rate as ``epsilon = 0.999``; PyTorch's name is ``alpha``
    (default 0.99), and ``eps`` is the small constant that keeps the division finite. Note
    there is no bias correction: with ``v_0 = 0`` the first step is
    ``lr / sqrt(1 - alpha)`` = 10 ``lr`` per weight for ``alpha = 0.99``.

    State: ``step`` (int) and ``square_avg`` (``v_t``). PyTorch's ``momentum`` and
    ``centered`` options are left out.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        _check_in_range(group["lr"], "lr")
        _check_in_range(group["alpha"], "alpha", 0.0, 1.0)
        _check_in_range(group["eps"], "eps")
        _check_in_range(group["weight_decay"], "weight_decay")

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] = 0
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        alpha = group["alpha"]
        state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        avg = state["square_avg"].sqrt().add_(group["eps"])
        param.addcdiv_(grad, avg, value=-group["lr"])

    def _update_foreach(
        self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict
    ) -> None:
        for state in states:
            state["step"] += 1
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        alpha = group["alpha"]
        square_avgs = [state["square_avg"] for state in states]
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, group["eps"])
        torch._foreach_addcdiv_(params, grads, avg, value=-group["lr"])


class Adam(_CourseOptimizer):
    r"""Adam: momentum (first moment) divided by RMSProp's root mean square (second moment).

    Update for each parameter ``theta``, all elementwise::

        g_t    <- g_t + lambda * theta                      (L2 weight decay, see below)
        m_t    <- beta1 * m_{t-1} + (1 - beta1) * g_t       (m_0 = 0)
        v_t    <- beta2 * v_{t-1} + (1 - beta2) * g_t^2     (v_0 = 0)
        m_hat  <- m_t / (1 - beta1^t)                       (bias correction)
        v_hat  <- v_t / (1 - beta2^t)
        theta  <- theta - lr * m_hat / (sqrt(v_hat) + eps)

    PyTorch computes the last line as ``lr / (1 - beta1^t) * m_t / (sqrt(v_t) /
    sqrt(1 - beta2^t) + eps)``; this class does the same operations in the same order.

    **Bias correction, and the slide formula that drops it.** Because ``m_0 = v_0 = 0``, the
    moving averages start biased towards zero: ``m_1 = (1 - beta1) g_1 = 0.1 g_1`` and
    ``v_1 = (1 - beta2) g_1^2 = 0.001 g_1^2``. Dividing by ``1 - beta^t`` removes exactly that
    bias, so the first step is ``lr * g_1 / (|g_1| + eps)``, about ``lr`` per weight. The
    deck's Adam slide writes ``m_t = beta*m_t + (1-beta)*g`` (the right-hand ``m_t`` should be
    ``m_{t-1}``), ``g_sq(t) = eps*g_sq(t-1) + (1-eps)*g^2`` with its decay rate called
    ``eps = 0.999``, and ``w -= lr * m_t / sqrt(g_sq)``: no bias correction and no epsilon.
    That changes the first steps: the step is multiplied by
    ``(1 - beta1^t) / sqrt(1 - beta2^t)``, which is ``0.1 / sqrt(0.001) = 3.16`` at t = 1, peaks
    near 6.6 around t = 12 and only returns to 1 after a few thousand steps, so the first
    steps are several times larger than ``lr`` (the biased ``v`` is far smaller than the biased
    ``m``); without ``eps`` a weight whose gradients have all been zero gets ``0/0 = NaN``.
    ``Adam(..., bias_correction=False, eps=0)`` reproduces the slide for comparison.

    **Adam with L2 (weight_decay here) versus AdamW.** Here ``lambda * theta`` is added to the
    gradient *before* the moments, so it is divided by ``sqrt(v_hat)`` like everything else:
    weights with a large gradient history are barely decayed, and a weight with no loss
    gradient at all moves by about ``lr`` per step whatever ``lambda`` is. :class:`AdamW`
    decouples the decay from the adaptive step instead.

    State: ``step`` (int), ``exp_avg`` (``m_t``), ``exp_avg_sq`` (``v_t``).

    Args:
        params: parameters or parameter groups.
        lr: learning rate >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added to ``sqrt(v_hat)``, >= 0.
        weight_decay: ``lambda`` >= 0, coupled L2 (added to the gradient).
        bias_correction: keyword only; ``False`` drops the ``1 - beta^t`` factors (the slide's
            version, for teaching; not an option of ``torch.optim.Adam``).
        foreach: keyword only; the multi-tensor path (see the module docstring).
        fused: keyword only; ``True`` runs the whole update of a parameter as one Triton
            kernel (:func:`course_lib.kernels.fused_adam_step`; CUDA only), ``None`` (default)
            does so on CUDA when Triton is installed, ``False`` never. The kernel computes in
            float32 like ``torch.optim.Adam(fused=True)``: equal to the other paths to
            rounding, not bit for bit.
    """

    # AdamW flips this: the decay is applied to theta directly instead of to the gradient.
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        bias_correction: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        _check_in_range(group["lr"], "lr")
        _check_betas(group["betas"])
        _check_in_range(group["eps"], "eps")
        _check_in_range(group["weight_decay"], "weight_decay")
        _check_bool(group["bias_correction"], "bias_correction")
        if group.get("fused") is not None:
            _check_bool(group["fused"], "fused")

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    @staticmethod
    def _bias_corrections(group: dict, step: int) -> tuple[float, float]:
        """``(1 - beta1^t, 1 - beta2^t)``, or ``(1, 1)`` without bias correction."""
        if not group["bias_correction"]:
            return 1.0, 1.0
        beta1, beta2 = group["betas"]
        return 1 - beta1**step, 1 - beta2**step

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] += 1
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]

        if weight_decay != 0:
            if self.decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)  # AdamW: shrink theta itself
            else:
                grad = grad.add(param, alpha=weight_decay)  # Adam: L2 through the gradient

        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)  # m = beta1 * m + (1 - beta1) * g
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        bias_correction1, bias_correction2 = self._bias_corrections(group, state["step"])
        step_size = lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(group["eps"])
        param.addcdiv_(exp_avg, denom, value=-step_size)

    def _update_foreach(
        self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict
    ) -> None:
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        for state in states:
            state["step"] += 1
        if self._use_fused(group, params):  # the whole update as one Triton kernel
            from course_lib.kernels import fused_adam_step  # imported on first use

            fused_adam_step(params, grads, states, group, self.decoupled_weight_decay)
            return

        if weight_decay != 0:
            if self.decoupled_weight_decay:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            else:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)

        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)

        # Each parameter may be at another step (one added later): one number per tensor.
        corrections = [self._bias_corrections(group, state["step"]) for state in states]
        step_sizes = [-(lr / bias_correction1) for bias_correction1, _ in corrections]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [bias_correction2**0.5 for _, bias_correction2 in corrections])
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)

    def _use_foreach(self, group: dict, params: list[Tensor]) -> bool:
        # the fused kernel is called from _update_foreach, on lists of parameters
        return self._use_fused(group, params) or super()._use_foreach(group, params)

    @staticmethod
    def _use_fused(group: dict, params: list[Tensor]) -> bool:
        """The fused Triton kernel (one kernel per parameter for the whole update): when
        ``fused=True``, or by default (``None``) for contiguous float32 / float16 / bfloat16
        parameters on a CUDA device when Triton is installed."""
        fused = group.get("fused")
        if fused is False:
            return False
        from course_lib.kernels import use_triton  # cheap: Triton loads with the kernel

        suitable = all(use_triton(p) and p.is_contiguous() for p in params)
        if fused and not suitable:
            raise RuntimeError(
                "fused=True needs contiguous float32, float16 or bfloat16 parameters on a CUDA "
                "device and Triton installed (COURSE_TRITON not 0); use fused=None (choose for "
                "me) or fused=False"
            )
        return suitable


class AdamW(Adam):
    r"""AdamW: Adam with *decoupled* weight decay (Loshchilov & Hutter, 2019).

    Update for each parameter ``theta``::

        theta <- theta - lr * lambda * theta                (decay first, on theta itself)
        then the Adam update of :class:`Adam` with the raw gradient g_t (no lambda * theta)

    Difference from ``Adam(weight_decay=lambda)``: there the decay term ``lambda * theta``
    enters the moments and gets divided by ``sqrt(v_hat)``, so how strongly a weight is
    pulled to zero depends on its gradient history (weights with large gradients are decayed
    less, and a weight without any loss gradient moves by a fixed ~``lr`` per step). AdamW
    shrinks every weight by the same factor ``1 - lr * lambda`` per step, as weight decay
    does for plain SGD, and the adaptive part only sees the loss gradient. This is why the
    default ``weight_decay`` is 1e-2 here but 0 for Adam. As in PyTorch the decay is scaled by
    ``lr``, so a learning-rate schedule also schedules the decay.

    State: as :class:`Adam`.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        bias_correction: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            bias_correction=bias_correction,
            foreach=foreach,
            fused=fused,
        )


# ---------------------------------------------------------------------------------------------
# 2-D test surfaces and trajectories
# ---------------------------------------------------------------------------------------------
def _split_xy(p: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(p, Tensor):
        raise TypeError(f"p must be a torch.Tensor of shape (..., 2); got {type(p).__name__}")
    if p.dim() == 0 or p.shape[-1] != 2:
        raise ValueError(f"p must have shape (..., 2) (points (x, y)); got {tuple(p.shape)}")
    return p[..., 0], p[..., 1]


def quadratic(p: Tensor, a: float = 1.0, b: float = 10.0) -> Tensor:
    """Elongated bowl ``f(x, y) = 0.5 * (a x^2 + b y^2)``; minimum 0 at (0, 0).

    ``p: (..., 2)`` points, returns ``(...)``. The Hessian is ``diag(a, b)``: for ``b >> a`` the
    problem is ill-conditioned (condition number ``b / a``). Plain gradient descent is stable
    only for ``lr < 2 / b`` and then crawls along x at rate ``1 - lr * a`` per step, which is
    where momentum and adaptive methods help.
    """
    x, y = _split_xy(p)
    return 0.5 * (a * x**2 + b * y**2)


def rosenbrock(p: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    """Rosenbrock's banana valley ``f(x, y) = (a - x)^2 + b (y - x^2)^2``; minimum 0 at (a, a^2).

    ``p: (..., 2)`` points, returns ``(...)``. Finding the curved valley is easy; following
    it to the minimum is slow for first-order methods.
    """
    x, y = _split_xy(p)
    return (a - x) ** 2 + b * (y - x**2) ** 2


def run_trajectory(
    loss_fn: Callable[[Tensor], Tensor],
    start: tuple[float, float],
    optimizer_cls: type[Optimizer],
    steps: int,
    **optimizer_kwargs: Any,
) -> Tensor:
    """Optimize a single 2-D point from ``start`` and return every position it visits.

    Works with any ``torch.optim.Optimizer`` class, ours or PyTorch's::

        path = run_trajectory(quadratic, (-4.0, 1.0), SGD, 100, lr=0.05, momentum=0.9)

    Args:
        loss_fn: maps a point ``(2,)`` to a scalar loss, e.g. :func:`quadratic`.
        start: the initial ``(x, y)``.
        optimizer_cls: e.g. ``SGD``, ``Adam`` or ``torch.optim.Adam``.
        steps: number of optimizer steps, >= 0.
        **optimizer_kwargs: passed to ``optimizer_cls`` (``lr=...``, ``momentum=...``).

    Returns:
        ``(steps + 1, 2)`` float64 tensor on the CPU; row 0 is ``start``. A run that diverges
        is returned as it is (inf / nan rows) so that the picture can show it.
    """
    if not isinstance(start, (tuple, list)) or len(start) != 2:
        raise ValueError(f"start must be a pair (x, y); got {start!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    point = torch.tensor([float(start[0]), float(start[1])], dtype=torch.float64)
    point.requires_grad_(True)
    optimizer = optimizer_cls([point], **optimizer_kwargs)
    path = [point.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(point)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar (0-D) tensor; got {shape}")
        loss.backward()
        optimizer.step()
        path.append(point.detach().clone())
    return torch.stack(path)
