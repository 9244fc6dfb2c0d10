"""Self-checks for the exercises of 03_dimension_scaling: the ℓ1 norm of the input gradient, and the log-log fit."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..scaling import input_gradient_l1 as reference_l1
from .harness import CheckFailed, linear_case, report, require_same_weights, require_untouched_parameter_grads, weights


def _l1_closed_form(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, Σ_j |g_j|) for a linear softmax model by hand: g = ∇x log p(y|x) = W_y − Σ_k p_k W_k."""
    w, b = model[1].weight, model[1].bias
    with torch.no_grad():
        p = (x.flatten(1) @ w.T + b).softmax(dim=1)
        g = (F.one_hot(y, w.shape[0]).float() - p) @ w
    return g, g.abs().sum(dim=1)


def check_input_gradient_l1(input_gradient_l1: Callable) -> bool:
    """input_gradient_l1(model, x, y) must return Σ_j |∇x log p(y|x)_j|, one number per example."""

    def body() -> str:
        for seed in (0, 1):
            model, x, y = linear_case(seed, n=6, d=8, classes=3)
            g, expected = _l1_closed_form(model, x, y)
            before = weights(model)
            got = input_gradient_l1(model, x.clone(), y.clone())
            require_same_weights(model, before)
            if not isinstance(got, torch.Tensor):
                raise CheckFailed(f"returned {type(got).__name__}, not a tensor", "return a tensor with one value per example")
            if got.shape != expected.shape:
                raise CheckFailed(
                    f"returned shape {tuple(got.shape)}; expected one number per example, {tuple(expected.shape)}",
                    "flatten each example's gradient (g.flatten(1)) and sum over dim=1 only",
                )
            require_untouched_parameter_grads(
                model, "take the input gradient with torch.autograd.grad(..., x) instead of .backward()")
            got = got.detach().float()
            if torch.allclose(got, expected, rtol=1e-4, atol=1e-6):
                continue
            n, d = x.shape[0], x[0].numel()
            if torch.allclose(got * n, expected, rtol=1e-4, atol=1e-6):
                hint = ("you took the gradient of the batch *mean*, which divides every example's gradient by the batch "
                        "size: sum the per-example log-probabilities instead")
            elif torch.allclose(got * d, expected, rtol=1e-4, atol=1e-6):
                hint = "that is the mean of |g_j| over the pixels; the exercise asks for the sum Σ_j |g_j|"
            elif torch.allclose(got, g.sum(dim=1).abs(), rtol=1e-4, atol=1e-6) or torch.allclose(got, g.sum(dim=1), rtol=1e-4, atol=1e-6):
                hint = "take the absolute value of each coordinate before summing: Σ_j |g_j|, not |Σ_j g_j|"
            elif torch.allclose(got, g.norm(dim=1), rtol=1e-4, atol=1e-6):
                hint = "that is the ℓ2 norm ‖g‖₂; the first-order effect of an ℓ∞ step is the ℓ1 norm Σ_j |g_j|"
            else:
                hint = ("compute log p(y|x) with F.log_softmax(model(x), 1) and pick column y (or use the cross-entropy, "
                        "whose gradient has the same size), differentiate its sum with respect to x")
            raise CheckFailed(f"values differ from Σ_j |∇x log p(y|x)_j| on a linear model "
                              f"(max difference {(got - expected).abs().max():.3g})", hint)
        # A curved model, where the gradient depends on x: compare with the reference.
        g_ = torch.Generator().manual_seed(3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))
        xs = torch.rand(5, 1, 3, 4, generator=g_)
        ys = torch.randint(0, 4, (5,), generator=g_)
        before = weights(net)
        got = input_gradient_l1(net, xs.clone(), ys.clone())
        require_same_weights(net, before)
        if not torch.allclose(torch.as_tensor(got).detach().float(), reference_l1(net, xs, ys), rtol=1e-4, atol=1e-6):
            raise CheckFailed("right on a linear model but not on a small tanh network",
                              "compute the gradient at each example's own x, not at a fixed point")
        return "matches Σ_j |W_y − Σ_k p_k W_k| on a linear model and the reference on a small network"

    return report("check_input_gradient_l1", body)


def _pair(result) -> tuple[float, float]:
    try:
        slope, intercept = result
        return float(slope), float(intercept)
    except (TypeError, ValueError):
        raise CheckFailed(f"returned {result!r}; expected a pair (slope, intercept)",
                          "return slope, intercept") from None


def check_loglog_fit(loglog_fit: Callable) -> bool:
    """loglog_fit(d, values) must return the least-squares (slope, intercept) of ln(values) on ln(d)."""

    def body() -> str:
        d = [49.0, 196.0, 784.0, 3136.0, 12544.0]
        for a, c in ((0.5, 0.3), (1.0, 2e-3), (-0.5, 5.0)):
            values = [c * di**a for di in d]
            slope, intercept = _pair(loglog_fit(list(d), list(values)))
            if math.isclose(slope, a, abs_tol=1e-6) and math.isclose(intercept, math.log(c), abs_tol=1e-6):
                continue
            if math.isclose(slope, 1 / a, rel_tol=1e-4):
                raise CheckFailed(f"for values = {c}·d^{a} you return slope {slope:.4g}, the inverse of {a}",
                                  "regress ln(values) on ln(d), not the other way round")
            if math.isclose(slope, a, abs_tol=1e-6) and math.isclose(intercept, math.log10(c), abs_tol=1e-6):
                raise CheckFailed("the slope is right, the intercept is a base-10 logarithm",
                                  "use natural logarithms (np.log): the intercept is then ln C for values = C·d^a")
            raise CheckFailed(f"for values = {c}·d^{a} you return slope {slope:.4g}, intercept {intercept:.4g}; "
                              f"expected {a} and ln {c} = {math.log(c):.4g}",
                              "take natural logarithms of both d and the values, then fit a straight line by least "
                              "squares (np.polyfit(ln d, ln values, 1) returns (slope, intercept))")
        rng = np.random.default_rng(0)
        noisy = [3.0 * di**0.47 * math.exp(e) for di, e in zip(d, rng.normal(0, 0.2, len(d)))]
        expected = np.polyfit(np.log(d), np.log(noisy), 1)
        slope, intercept = _pair(loglog_fit(list(d), noisy))
        if not (math.isclose(slope, expected[0], abs_tol=1e-6) and math.isclose(intercept, expected[1], abs_tol=1e-6)):
            raise CheckFailed(f"exact power laws work, but on noisy data you return ({slope:.4g}, {intercept:.4g}) "
                              f"instead of the least-squares ({expected[0]:.4g}, {expected[1]:.4g})",
                              "use every point in a least-squares fit, not only the first and the last")
        return "recovers slope a and intercept ln C of C·d^a exactly, and the least-squares line on noisy data"

    return report("check_loglog_fit", body)
