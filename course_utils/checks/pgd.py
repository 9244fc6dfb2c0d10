"""Self-checks for the exercises of 02_pgd: the projection onto the ℓ∞ ball, and PGD itself."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import fgsm as reference_fgsm
from ..attacks import pgd as reference_pgd
from ..attacks import project_linf as reference_project_linf
from .fgsm import fgsm_closed_form
from .harness import CheckFailed, linear_case, report, require_linf_attack_output, require_same_weights, weights


def check_project_linf(project: Callable) -> bool:
    """project(x, x0, eps) must return the closest point of the ℓ∞ ball ∩ [0, 1]."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        x0 = torch.rand(5, 1, 4, 4, generator=g)
        for eps in (0.05, 0.3):
            x = x0 + 0.8 * (torch.rand(x0.shape, generator=g) - 0.5)  # some inside, some outside, some < 0 or > 1
            got = project(x.clone(), x0.clone(), eps)
            if not isinstance(got, torch.Tensor) or got.shape != x.shape:
                raise CheckFailed("project must return a tensor shaped like x")
            expected = reference_project_linf(x, x0, eps)
            if (got - x0).abs().max() > eps + 1e-6:
                raise CheckFailed(f"a projected point is {(got - x0).abs().max():.3f} away from x0 in ℓ∞ (ε = {eps})",
                                  "clip each pixel into [x0 − ε, x0 + ε]")
            if got.min() < 0 or got.max() > 1:
                raise CheckFailed("a projected pixel is outside [0, 1]", "clip to the valid pixel range as well")
            if not torch.allclose(got, expected, atol=1e-6):
                raise CheckFailed("points already inside the ball moved, or points outside did not land on the "
                                  "nearest boundary", "clip, don't rescale: torch.clamp / torch.min / torch.max per pixel")
        return "every point lands in the ball and in [0, 1], and points are moved as little as possible"

    return report("check_project_linf", body)


def check_pgd(pgd: Callable) -> bool:
    """pgd(model, x, y, eps, alpha, steps, random_start) for ℓ∞, checked on small models."""

    def body() -> str:
        # 1. One step of size ε from x0 is exactly FGSM.
        model, x, y = linear_case(3)
        before = weights(model)
        got = pgd(model, x.clone(), y.clone(), 0.1, 0.1, 1, random_start=False)
        require_same_weights(model, before)
        require_linf_attack_output("pgd", got, x, 0.1, model)
        if not torch.allclose(got, fgsm_closed_form(model, x, y, 0.1), atol=1e-5):
            raise CheckFailed("with steps=1, alpha=ε and no random start, PGD should equal FGSM",
                              "each step is x + α·sign(∇x loss), then project onto the ball and [0, 1]")
        # 2. Many small steps on a curved model (large weights, tanh), where iterating pays:
        #    the reference PGD reaches a much higher loss than FGSM here.
        g = torch.Generator().manual_seed(4)
        torch.manual_seed(4)
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(5.0)
        xs = torch.rand(64, 1, 4, 4, generator=g)
        ys = torch.randint(0, 4, (64,), generator=g)
        eps = 0.3
        before = weights(net)
        got = pgd(net, xs.clone(), ys.clone(), eps, eps / 4, 20, random_start=True)
        require_same_weights(net, before)
        require_linf_attack_output("pgd", got, xs, eps, net)
        with torch.no_grad():
            loss_pgd = F.cross_entropy(net(got), ys).item()
            loss_fgsm = F.cross_entropy(net(reference_fgsm(net, xs, ys, eps)), ys).item()
            loss_ref = F.cross_entropy(net(reference_pgd(net, xs, ys, eps, eps / 4, 20)), ys).item()
        if loss_pgd < loss_fgsm + 0.5 * (loss_ref - loss_fgsm):
            raise CheckFailed(
                f"your PGD reaches a mean loss of {loss_pgd:.2f}: FGSM reaches {loss_fgsm:.2f} and the reference "
                f"PGD {loss_ref:.2f} at the same ε, α and steps",
                "recompute the gradient at the current iterate every step (not at x0), step in the direction "
                "that increases the loss, and project after every step",
            )
        return f"equals FGSM for one step, stays in the ball, and reaches loss {loss_pgd:.2f} (FGSM {loss_fgsm:.2f})"

    return report("check_pgd", body)
