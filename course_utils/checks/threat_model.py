"""Self-check for the exercise of 00_threat_model: the ℓ∞ distance between two batches."""
from __future__ import annotations

from typing import Callable

import torch

from .harness import CheckFailed, report


def check_linf_distance(linf_distance: Callable) -> bool:
    """linf_distance(x, x0) must return ‖x_i − x0_i‖∞ for every example i."""

    def body() -> str:
        g = torch.Generator().manual_seed(1)
        x0 = torch.rand(7, 1, 5, 5, generator=g)
        x = x0 + 0.3 * torch.randn(x0.shape, generator=g)
        x[3] = x0[3]  # an unperturbed example has distance 0
        expected = (x - x0).flatten(1).abs().amax(dim=1)
        got = linf_distance(x.clone(), x0.clone())
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"returned {type(got).__name__}, not a tensor")
        if got.shape != expected.shape:
            raise CheckFailed(f"returned shape {tuple(got.shape)}; expected one number per example, {tuple(expected.shape)}",
                              "flatten each example (x - x0).flatten(1) and reduce over dim=1 only")
        if torch.allclose(got, (x - x0).flatten(1).abs().sum(dim=1), atol=1e-5):
            raise CheckFailed("that is the ℓ1 distance (a sum), not ℓ∞", "ℓ∞ takes the largest absolute difference")
        if not torch.allclose(got, expected, atol=1e-6):
            raise CheckFailed("values differ from max_j |x_j − (x0)_j|", "take the absolute value before the maximum")
        return "one ℓ∞ distance per example, max_j |x_j − (x0)_j|"

    return report("check_linf_distance", body)
