"""Self-check for the exercise of 06_feature_visualization: maximising an objective by projected ascent."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .harness import CheckFailed, report, require_same_weights, require_untouched_parameter_grads, weights


def _linear_logit(seed: int, d: int = 12) -> tuple[nn.Module, torch.Tensor]:
    """A model whose class-0 logit is w·x + b, with every |w_j| ≥ 0.5 so no pixel is left undecided."""
    g = torch.Generator().manual_seed(seed)
    w = (0.5 + torch.rand(d, generator=g)) * torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w, -w]))
        model[1].bias.zero_()
    return model, w


def check_maximise(maximise: Callable) -> bool:
    """maximise(model, objective, x_start, steps, lr) must climb objective(model, x) by projected ascent in [0, 1].

    Oracle: for a linear logit w·x the best image in [0, 1]^d is known in closed form,
    x_j = 1 where w_j > 0 and 0 where w_j < 0.
    """

    def body() -> str:
        for seed in (0, 1):
            model, w = _linear_logit(seed)
            objective = lambda m, x: m(x)[:, 0]
            start = torch.full((2, 1, 3, 4), 0.5)
            before = weights(model)
            got = maximise(model, objective, start.clone(), 100, 0.2)
            require_same_weights(model, before)
            if not isinstance(got, torch.Tensor) or got.shape != start.shape:
                raise CheckFailed(f"returned {type(got).__name__} {tuple(getattr(got, 'shape', ()))}, expected a batch shaped like x_start {tuple(start.shape)}",
                                  "return the final images, one per starting image")
            require_untouched_parameter_grads(
                model, "take the gradient with torch.autograd.grad(score.sum(), x), not .backward()")
            if got.requires_grad:
                raise CheckFailed("the returned images still require grad", "return x.detach()")
            if got.min() < 0 or got.max() > 1:
                raise CheckFailed(f"values outside [0, 1] (from {got.min():.3g} to {got.max():.3g})",
                                  "after every step, clamp the image back to [0, 1]: it must stay a valid image")
            best = (w > 0).float().view(1, 1, 3, 4).expand_as(got)
            if torch.allclose(got, 1 - best, atol=1e-3):
                raise CheckFailed("you found the image that *minimises* the objective",
                                  "ascent: add the gradient step (x + lr·g/‖g‖), do not subtract it")
            if not torch.allclose(got, best, atol=1e-3):
                wrong = (got - best).abs().gt(1e-3).float().mean().item()
                raise CheckFailed(f"{wrong:.0%} of the pixels are not at the known optimum of a linear logit",
                                  "each step: x ← clamp(x + lr·g/‖g‖₂, 0, 1) with g = ∇x objective, one norm per image")
        return "reaches the known optimum of a linear logit (1 where w > 0, 0 where w < 0), stays in [0, 1]"

    return report("check_maximise", body)
