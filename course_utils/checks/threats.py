"""Self-check for the exercise of 07_unforeseen_attacks: the ℓ2 step and projection."""
from __future__ import annotations

from typing import Callable

import torch

from ..attacks import project_l2, step_l2
from .harness import CheckFailed, report


def _norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def check_l2_threat(step: Callable, project: Callable) -> bool:
    """step(x, grad, alpha) must move each image by α along its own gradient direction;
    project(x, x0, eps) must return a point of the ℓ2 ball of radius ε around x0 inside [0, 1]."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        x = 0.25 + 0.5 * torch.rand(4, 1, 5, 5, generator=g)
        grad = torch.randn(4, 1, 5, 5, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(-1, 1, 1, 1)
        moved = step(x.clone(), grad.clone(), 0.3)
        if not isinstance(moved, torch.Tensor) or moved.shape != x.shape:
            raise CheckFailed("step must return a tensor shaped like x")
        lengths = _norms(moved - x)
        if torch.allclose(moved, x + 0.3 * grad, atol=1e-5):
            raise CheckFailed("the step is α·g: its length depends on the size of the gradient",
                              "divide each image's gradient by its own ℓ2 norm first: α·g/‖g‖₂")
        if not torch.allclose(lengths, torch.full_like(lengths, 0.3), atol=1e-4):
            raise CheckFailed(f"step lengths are {[round(v, 3) for v in lengths.tolist()]}, expected 0.3 for every image",
                              "normalise per image: g.flatten(1).norm(dim=1), reshaped to broadcast, not one norm for the batch")
        if not torch.allclose(moved, step_l2(x, grad, 0.3), atol=1e-5):
            raise CheckFailed("each step has length α but not along the gradient", "step along +g (ascent), not −g")

        x0 = 0.5 + 0.1 * torch.rand(4, 1, 5, 5, generator=g)
        delta = torch.randn(4, 1, 5, 5, generator=g)
        delta = delta / _norms(delta).view(-1, 1, 1, 1) * torch.tensor([0.2, 0.9, 0.4, 0.45]).view(-1, 1, 1, 1)
        got = project(x0 + delta, x0.clone(), 0.5)
        if not isinstance(got, torch.Tensor) or got.shape != x0.shape:
            raise CheckFailed("project must return a tensor shaped like x")
        dist = _norms(got - x0)
        if (dist > 0.5 + 1e-5).any():
            raise CheckFailed(f"some points are outside the ball: distances {[round(v, 3) for v in dist.tolist()]} > ε = 0.5",
                              "scale δ = x − x0 by min(1, ε/‖δ‖₂), one factor per image")
        if not torch.allclose(got[[0, 2, 3]], (x0 + delta)[[0, 2, 3]], atol=1e-5):
            raise CheckFailed("points already inside the ball were moved",
                              "only shrink δ when ‖δ‖₂ > ε: the factor is min(1, ε/‖δ‖₂), never above 1")
        if not torch.allclose(got[1], x0[1] + delta[1] * 0.5 / 0.9, atol=1e-5):
            raise CheckFailed("a point outside the ball did not land on the sphere along its own direction",
                              "the closest point of the ball is x0 + δ·ε/‖δ‖₂")
        near_edge = torch.zeros(2, 1, 5, 5)
        far = near_edge + torch.tensor([-0.3, 0.3]).view(-1, 1, 1, 1)  # outside [0, 1] where x0 = 0
        got = project(far, near_edge.clone(), 10.0)
        if got.min() < 0 or got.max() > 1:
            raise CheckFailed("projected points leave the valid image range [0, 1]", "finish with .clamp(0, 1)")
        if not torch.allclose(got, project_l2(far, near_edge, 10.0), atol=1e-5):
            raise CheckFailed("inside the ball, projection must only clip to [0, 1]")
        return "steps of length α along each image's gradient; points land in the ℓ2 ball and in [0, 1], moved only when needed"

    return report("check_l2_threat", body)
