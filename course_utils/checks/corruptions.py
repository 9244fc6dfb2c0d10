"""Self-check for the exercise of 08_distribution_shift: the pixelate corruption, and its reference."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .harness import CheckFailed, report

PIXELATE_SIDES = (20, 16, 12, 10, 8)  # severity 1..5: the side of the coarse image, in pixels


def reference_pixelate(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Average each image down to side×side pixels (area averaging), then blow it back up with nearest neighbours."""
    side = PIXELATE_SIDES[severity - 1]
    small = F.interpolate(x, size=(side, side), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="nearest").clamp(0, 1)


def check_pixelate(pixelate: Callable) -> bool:
    """pixelate(x, severity) must equal `reference_pixelate` and behave like every other corruption."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(3, 1, 28, 28, generator=g)
        before = x.clone()
        for severity in range(1, 6):
            got = pixelate(x, severity)
            if not isinstance(got, torch.Tensor) or got.shape != x.shape:
                raise CheckFailed(f"severity {severity}: returned shape {tuple(getattr(got, 'shape', ()))}, expected {tuple(x.shape)}",
                                  "after shrinking, resize back to 28×28 (F.interpolate(..., size=x.shape[-2:], mode='nearest'))")
            if not torch.equal(x, before):
                raise CheckFailed("your function changed its input in place", "work on new tensors, never x itself")
            if got.min() < 0 or got.max() > 1:
                raise CheckFailed("values outside [0, 1]", "clamp the result to [0, 1]")
            expected = reference_pixelate(x, severity)
            if not torch.allclose(got, expected, atol=1e-5):
                side = PIXELATE_SIDES[severity - 1]
                small = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
                if torch.allclose(got, F.interpolate(small, size=(28, 28), mode="nearest"), atol=1e-5):
                    raise CheckFailed("you shrank with bilinear interpolation, which samples a few pixels instead of averaging blocks",
                                      "use mode='area' when shrinking")
                raise CheckFailed(f"severity {severity}: differs from shrinking to {side}×{side} by area averaging "
                                  f"and enlarging by nearest neighbours (max difference {(got - expected).abs().max():.3g})",
                                  f"severity s uses side PIXELATE_SIDES[s - 1] = {PIXELATE_SIDES}")
        flat = torch.full((1, 1, 28, 28), 0.4)
        if not torch.allclose(pixelate(flat, 5), flat, atol=1e-6):
            raise CheckFailed("a flat grey image must stay the same grey")
        return "matches area-averaging to 20…8 pixels and back, for every severity; input untouched, values in [0, 1]"

    return report("check_pixelate", body)
