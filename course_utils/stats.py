"""How sure is a number? Confidence intervals for accuracies measured on a few hundred digits.

An accuracy on n digits is a proportion, and proportions of a few hundred examples move by
a point or two from one draw of digits, seed or machine to the next. Every comparison the
course draws from such numbers comes with one of these intervals, so that a difference
smaller than its own noise is never read as a finding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Interval:
    """An estimate with a 95 % confidence interval, as fractions (print with `format`)."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.1%} [{self.low:.1%}, {self.high:.1%}]"

    def excludes(self, value: float) -> bool:
        """True when `value` lies outside the interval: the data rule it out at the 95 % level."""
        return value < self.low or value > self.high

    def points(self) -> str:
        """The same, for a difference of accuracies, in percentage points with a sign."""
        return f"{100 * self.estimate:+.1f} points [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def _as_mask(mask) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    if mask.dim() != 1 or mask.numel() == 0:
        raise ValueError(f"expected a non-empty 1-D tensor of per-example outcomes, got shape {tuple(mask.shape)}")
    return mask.detach().to("cpu", torch.bool)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> Interval:
    """Wilson's score interval for a proportion successes/n (95 % for z = 1.96).

    Unlike estimate ± z·√(p(1−p)/n) it never leaves [0, 1] and stays honest near 0 and 1,
    where robust accuracies often sit.
    """
    if not (isinstance(n, int) and n > 0) or not (isinstance(successes, int) and 0 <= successes <= n):
        raise ValueError(f"need integers 0 ≤ successes ≤ n with n > 0, got successes={successes!r}, n={n!r}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def accuracy_interval(mask) -> Interval:
    """Accuracy (the fraction of True) of per-example outcomes, with Wilson's interval."""
    mask = _as_mask(mask)
    return wilson_interval(int(mask.sum()), mask.numel())


def paired_difference(mask_a, mask_b, z: float = 1.96) -> Interval:
    """Accuracy of a minus accuracy of b, measured on the same examples, with a 95 % interval.

    On the same examples only the discordant ones count: b01 (right under a only) and b10
    (right under b only). The difference is (b01 − b10)/n, and the interval is Newcombe's
    (1998, method 10), built from Wilson intervals of the two accuracies and corrected for
    their correlation; it is much narrower than treating the two accuracies as independent.
    """
    a, b = _as_mask(mask_a), _as_mask(mask_b)
    if a.shape != b.shape:
        raise ValueError(f"the two outcome vectors must cover the same examples, got {a.numel()} and {b.numel()}")
    n = a.numel()
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    pa, pb = (both + only_a) / n, (both + only_b) / n
    ia, ib = wilson_interval(both + only_a, n, z), wilson_interval(both + only_b, n, z)
    # Newcombe's correlation term φ̂ between the two outcomes (0 when a margin is degenerate).
    denom = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    phi = (both * neither - only_a * only_b) / math.sqrt(denom) if denom > 0 else 0.0
    if phi < 0:  # Newcombe truncates a negative correlation at 0
        phi = 0.0
    d = pa - pb
    low = d - math.sqrt(max(0.0, (pa - ia.low) ** 2 - 2 * phi * (pa - ia.low) * (ib.high - pb) + (ib.high - pb) ** 2))
    high = d + math.sqrt(max(0.0, (ia.high - pa) ** 2 - 2 * phi * (ia.high - pa) * (pb - ib.low) + (pb - ib.low) ** 2))
    return Interval(d, max(-1.0, low), min(1.0, high))


def mean_interval(values, n_boot: int = 4000, seed: int = 0) -> Interval:
    """The mean of per-example values (e.g. differences between two attacks' flipping ε) with a
    95 % percentile-bootstrap interval: resample the examples with replacement `n_boot` times."""
    values = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
    if values.numel() < 2 or not torch.isfinite(values).all():
        raise ValueError("need at least two finite values")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, values.numel(), (n_boot, values.numel()), generator=g)
    means = values[idx].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Interval(values.mean().item(), low, high)
