"""Self-check for the exercise of 01_fgsm, and FGSM's closed form on a linear model (the oracle of
the checks of 02, 04 and 05 as well)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .harness import CheckFailed, linear_case, report, require_linf_attack_output, require_same_weights, weights


def fgsm_closed_form(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM on a linear softmax model by hand: ∇x CE = Wᵀ(p − onehot(y)), no autograd involved."""
    w, b = model[1].weight, model[1].bias
    with torch.no_grad():
        flat = x.flatten(1)
        p = (flat @ w.T + b).softmax(dim=1)
        grad = (p - F.one_hot(y, w.shape[0]).float()) @ w
        return torch.clamp(flat + eps * grad.sign(), 0, 1).view_as(x)


def check_fgsm(fgsm: Callable) -> bool:
    """fgsm(model, x, y, eps) against the closed form on a linear model."""

    def body() -> str:
        for seed, eps in [(0, 0.1), (1, 0.25), (2, 0.0)]:
            model, x, y = linear_case(seed)
            expected = fgsm_closed_form(model, x, y, eps)
            before = weights(model)
            got = fgsm(model, x.clone(), y.clone(), eps)
            require_same_weights(model, before)
            require_linf_attack_output("fgsm", got, x, eps, model)
            if not torch.allclose(got, expected, atol=1e-5):
                wrong_sign = torch.allclose(got, fgsm_closed_form(model, x, y, -eps), atol=1e-5)  # x0 − ε·sign(∇), clipped
                raise CheckFailed(
                    f"at ε = {eps} your output differs from x0 + ε·sign(∇x loss) "
                    f"(max difference {(got - expected).abs().max():.3g})",
                    "the step goes *up* the cross-entropy, i.e. x0 − ε·sign(g) with g = ∇x log p(y*|x)"
                    if wrong_sign else
                    "compute the loss at x0 with F.cross_entropy(model(x), y), take its gradient with respect "
                    "to x, and step by ε times its sign",
                )
        return "matches the closed form x0 + ε·sign(Wᵀ(p − e_y)) on a linear model, stays in the ball and in [0, 1]"

    return report("check_fgsm", body)
