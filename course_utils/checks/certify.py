"""Self-checks for the exercises of 09_certified_robustness, and their reference implementations.

- Exercise A, `interval_linear_relu(weight, bias, lower, upper)`: the bounds of relu(W v + b) over a box,
  one step of interval bound propagation (`reference_interval_linear_relu`, from `certify.ibp`);
- Exercise B, `certified_radius(count, n, sigma, alpha)`: Cohen et al.'s ℓ2 radius of randomised
  smoothing (`reference_certified_radius`, which is `certify.smoothing.certified_radius`).

Both are called with plain tensors and numbers, so that they run unchanged on the grader's proxies.
"""
from __future__ import annotations

import itertools
import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F

from ..certify import ibp, smoothing
from .harness import CheckFailed, report, require_finite

reference_certified_radius = smoothing.certified_radius


def reference_interval_linear_relu(weight: torch.Tensor, bias: torch.Tensor | None, lower: torch.Tensor,
                                   upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact bounds of relu(W v + b) over lower ≤ v ≤ upper: ReLU is monotone, so relu of the affine box."""
    lo, hi = ibp.interval_linear(weight, bias, lower, upper)
    return torch.relu(lo), torch.relu(hi)


# ----------------------------------------------------------------------------- exercise A: one IBP layer
def _fmt(t: torch.Tensor) -> list:
    return [round(v, 3) for v in t.flatten().tolist()] if t.numel() <= 8 else f"a {tuple(t.shape)} tensor"


def _close(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return all(torch.allclose(a, b, atol=1e-5, rtol=1e-5) for a, b in zip(got, want))


def _bounds_of(got, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's (lower_out, upper_out), detached, or `CheckFailed` if it is not a pair of such tensors."""
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        raise CheckFailed(f"returned {type(got).__name__}, expected a pair of tensors (lower_out, upper_out)",
                          "end with `return lower_out, upper_out`")
    for name, t in zip(("lower_out", "upper_out"), got):
        if tuple(t.shape) != shape:
            raise CheckFailed(f"{name} has shape {tuple(t.shape)}, expected {shape} (one row per example, "
                              "one column per output unit)",
                              "rows of v are examples: W v + b for every row is F.linear(v, weight, bias) = v @ weight.T + bias")
        require_finite(name, t)
    return got[0].detach().float(), got[1].detach().float()


def _name_the_mistake(got, weight, bias, lower, upper) -> None:
    """`CheckFailed` with a pointed hint when `got` is one of the usual wrong answers; nothing otherwise."""
    affine_lo, affine_hi = ibp.interval_linear(weight, bias, lower, upper)
    at_l, at_u = F.linear(lower, weight, bias), F.linear(upper, weight, bias)
    if _close(got, (torch.relu(at_l), torch.relu(at_u))) or _close(got, (at_l, at_u)):
        raise CheckFailed("your bounds are W·l + b and W·u + b (the same as centre ± W·radius): where a weight is "
                          "negative, W v + b is smallest at the *upper* end of v, so these are not bounds",
                          "the radius of W v + b is |W|·radius, i.e. F.linear(radius, weight.abs()); equivalently, "
                          "lower uses l where W > 0 and u where W < 0 (and the other way round for upper)")
    if _close(got, (affine_lo, affine_hi)):
        raise CheckFailed("these are the bounds of W v + b: the ReLU is missing (after a ReLU no bound is below 0)",
                          "ReLU is monotone, so apply it to both bounds: torch.relu(lower_out), torch.relu(upper_out)")
    if _close(got, (torch.relu(affine_hi), torch.relu(affine_lo))):
        raise CheckFailed("lower_out and upper_out are swapped: l and u must change places for the negative weights "
                          "only, and here they did for the positive ones (or the two results are returned in reverse)",
                          "the minimum of w·v over [l, u] is w·l when w > 0 and w·u when w < 0")
    centre = (upper + lower) / 2
    loose = F.linear(centre, weight, bias), F.linear(upper - lower, weight.abs())
    if _close(got, (torch.relu(loose[0] - loose[1]), torch.relu(loose[0] + loose[1]))):
        raise CheckFailed("your bounds are twice as wide as they should be before the ReLU",
                          "the box's radius is (upper − lower) / 2, around the centre (upper + lower) / 2")


def _brute_force(weight, bias, lower, upper) -> tuple[torch.Tensor, torch.Tensor]:
    """The range of relu(W v + b) over the box from all its corners (exact for one affine layer and a ReLU)."""
    d = lower.shape[1]
    corners = torch.tensor(list(itertools.product((False, True), repeat=d)))  # 2^d × d
    points = torch.where(corners[:, None, :], upper[None], lower[None])  # 2^d × N × d
    outputs = torch.relu(F.linear(points, weight, bias))
    return outputs.amin(0), outputs.amax(0)


def check_interval_linear_relu(interval_linear_relu: Callable) -> bool:
    """interval_linear_relu(weight, bias, lower, upper) must return the exact (lower_out, upper_out) of
    relu(W v + b) over the box lower ≤ v ≤ upper, rows being examples and weight out×in as in nn.Linear."""

    def run(weight, bias, lower, upper):
        got = interval_linear_relu(weight.clone(), bias.clone(), lower.clone(), upper.clone())
        return _bounds_of(got, (lower.shape[0], weight.shape[0]))

    def body() -> str:
        # By hand: unit 1 is v1 − 2 v2 + 0.5 over v1 ∈ [0, 1], v2 ∈ [−1, 1], smallest at (0, 1): −1.5, largest at
        # (1, −1): 3.5, so [0, 3.5] after the ReLU; unit 2 is 3 v1 + v2 + 2, in [1, 6], untouched by the ReLU.
        weight, bias = torch.tensor([[1.0, -2.0], [3.0, 1.0]]), torch.tensor([0.5, 2.0])
        lower, upper = torch.tensor([[0.0, -1.0]]), torch.tensor([[1.0, 1.0]])
        got = run(weight, bias, lower, upper)
        _name_the_mistake(got, weight, bias, lower, upper)
        want = torch.tensor([[0.0, 1.0]]), torch.tensor([[3.5, 6.0]])
        if not _close(got, want):
            raise CheckFailed(f"for W = [[1, −2], [3, 1]], b = [0.5, 2] and the box [0, 1] × [−1, 1], expected "
                              f"lower_out = [0, 1] and upper_out = [3.5, 6], got {_fmt(got[0])} and {_fmt(got[1])}",
                              "unit 1 is smallest at v = (0, 1) and largest at v = (1, −1)")

        g = torch.Generator().manual_seed(0)
        weight, bias = torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
        lower = 2 * torch.rand(5, 3, generator=g) - 1
        upper = lower + torch.rand(5, 3, generator=g)
        upper[2] = lower[2]  # a box of one point: the bounds must meet at relu(W v + b)
        got = run(weight, bias, lower, upper)
        _name_the_mistake(got, weight, bias, lower, upper)
        lo, hi = got
        if (lo > hi + 1e-6).any():
            raise CheckFailed("some lower_out > upper_out", "the lower bound uses centre − |W|·radius, the upper centre + |W|·radius")
        points = lower + (upper - lower) * torch.rand(256, *lower.shape, generator=g)  # 256 × N × d, inside the box
        outputs = torch.relu(F.linear(points, weight, bias))
        escaped = (outputs < lo - 1e-5) | (outputs > hi + 1e-5)
        if escaped.any():
            s, row, unit = (int(i) for i in escaped.nonzero()[0])
            raise CheckFailed(f"not a bound: the point v = {_fmt(points[s, row])} inside box {row} gives output "
                              f"{outputs[s, row, unit]:.4f} at unit {unit}, outside your "
                              f"[{lo[row, unit]:.4f}, {hi[row, unit]:.4f}]",
                              "every v in the box must give lower_out ≤ relu(W v + b) ≤ upper_out")
        exact = _brute_force(weight, bias, lower, upper)
        if not _close(got, exact):
            gap = max((lo - exact[0]).abs().max().item(), (hi - exact[1]).abs().max().item())
            raise CheckFailed(f"sound but not exact: the true range, reached at corners of the box, differs from yours "
                              f"by up to {gap:.4f}",
                              "for one affine layer the interval centre ± |W|·radius is exact; then ReLU both ends")
        return ("matches the hand-computed 2×2 case and all 8 corners of random 3-input boxes; "
                "random points of each box stay inside the bounds")

    return report("check_interval_linear_relu", body)


# ----------------------------------------------------------------------------- exercise B: the smoothing radius
# (count, n, sigma, alpha): two confident cases, a large n, a barely certified one, all votes, two abstentions.
RADIUS_CASES = ((990, 1000, 0.25, 0.001), (700, 1000, 0.5, 0.01), (9000, 10000, 1.0, 0.001),
                (60, 100, 0.12, 0.05), (100, 100, 0.5, 0.001), (520, 1000, 0.25, 0.001), (0, 100, 0.5, 0.01))


def _radius_of(got) -> float | None:
    """The student's answer as a float or None, or `CheckFailed` for anything else."""
    if got is None:
        return None
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        raise CheckFailed(f"returned {type(got).__name__}, expected a float radius or None (abstain)",
                          "return sigma * norm.ppf(p_lower) as a number, or None when p_lower ≤ 1/2")
    return float(got)


def _cohen(p: float, sigma: float) -> float | None:
    from scipy import stats

    return None if not p > 0.5 else sigma * float(stats.norm.ppf(p))


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-7)


def check_certified_radius(certified_radius: Callable) -> bool:
    """certified_radius(count, n, sigma, alpha) must return σ·Φ⁻¹(p_lower), p_lower being the one-sided
    Clopper–Pearson lower bound on p_A from count votes out of n, or None when p_lower ≤ 1/2."""

    def body() -> str:
        from scipy import stats

        for k, n, sigma, alpha in RADIUS_CASES:
            where = f"count = {k}, n = {n}, σ = {sigma}, α = {alpha}"
            p_lower = 0.0 if k == 0 else float(stats.beta.ppf(alpha, k, n - k + 1))
            want = _cohen(p_lower, sigma)
            got = _radius_of(certified_radius(k, n, sigma, alpha))
            point = _cohen(k / n, sigma)
            if want is None:
                if got is None:
                    continue
                if _same(got, point):
                    raise CheckFailed(f"{where}: you certified radius {got:.4f} from the estimate k/n = {k / n}, "
                                      f"but the lower confidence bound is p_lower = {p_lower:.4f} ≤ 1/2: abstain",
                                      "use p_lower = scipy.stats.beta.ppf(alpha, count, n − count + 1), not count/n")
                if got == 0:
                    raise CheckFailed(f"{where}: returned 0.0, but p_lower = {p_lower:.4f} ≤ 1/2 must abstain",
                                      "return None (not 0) when p_lower ≤ 1/2: a radius of 0 would still claim a prediction")
                raise CheckFailed(f"{where}: returned {got:.4g}, expected None (abstain): p_lower = {p_lower:.4f} ≤ 1/2",
                                  "return None when p_lower ≤ 1/2" + ("; for count = 0, p_lower = 0 "
                                                                      "(Beta(0, …) is undefined)" if k == 0 else ""))
            if got is None:
                raise CheckFailed(f"{where}: abstained (None), but p_lower = {p_lower:.4f} > 1/2 certifies radius {want:.4f}",
                                  "abstain only when p_lower ≤ 1/2")
            if not math.isfinite(got) and k == n:
                raise CheckFailed(f"{where}: returned {got}; with all n votes correct the radius is still finite, "
                                  f"σ·Φ⁻¹(α^(1/n)) = {want:.4f}",
                                  "k/n = 1 gives Φ⁻¹(1) = ∞: use the lower bound p_lower = beta.ppf(alpha, count, n − count + 1)")
            require_finite("the radius", got)
            if _same(got, want):
                continue
            if _same(got, point):
                raise CheckFailed(f"{where}: radius {got:.4f} uses the point estimate k/n = {k / n}; it is larger than "
                                  f"the certified {want:.4f}, so it is not a certificate (p_A may well be below k/n)",
                                  "use the one-sided lower confidence bound p_lower = scipy.stats.beta.ppf(alpha, count, n − count + 1)")
            if _same(got, _cohen(float(stats.beta.ppf(alpha / 2, k, n - k + 1)), sigma)):
                raise CheckFailed(f"{where}: radius {got:.4f} uses the two-sided interval (α/2); the certificate needs "
                                  f"only the one-sided bound at α, which gives {want:.4f}",
                                  "p_lower = beta.ppf(alpha, count, n − count + 1), not alpha / 2")
            if k < n and _same(got, _cohen(float(stats.beta.ppf(alpha, k + 1, n - k)), sigma)):
                raise CheckFailed(f"{where}: radius {got:.4f} comes from Beta(k + 1, n − k), whose quantile is above "
                                  f"the lower bound; expected {want:.4f}",
                                  "the lower bound is the α quantile of Beta(k, n − k + 1)")
            if _same(got, want / sigma):
                raise CheckFailed(f"{where}: returned Φ⁻¹(p_lower) = {got:.4f}; the radius scales with the noise",
                                  "multiply by sigma: σ·Φ⁻¹(p_lower)")
            raise CheckFailed(f"{where}: expected σ·Φ⁻¹(p_lower) = {want:.5f} with p_lower = {p_lower:.5f}, got {got:.5f}",
                              "p_lower = scipy.stats.beta.ppf(alpha, count, n − count + 1); Φ⁻¹ is scipy.stats.norm.ppf")
        return "σ·Φ⁻¹(p_lower) with the one-sided Clopper–Pearson bound; abstains when p_lower ≤ 1/2, finite with all votes"

    return report("check_certified_radius", body)
