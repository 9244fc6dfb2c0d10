"""Confidence intervals against SciPy and against their own promise (coverage in simulation)."""
import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from course_utils.stats import accuracy_interval, paired_difference, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (371, 400), (93, 200), (1, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    """Oracle: scipy.stats.binomtest(k, n).proportion_ci(method='wilson')."""
    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    got = wilson_interval(k, n)
    assert got.estimate == pytest.approx(k / n)
    assert got.low == pytest.approx(ref.low, abs=2e-4)
    assert got.high == pytest.approx(ref.high, abs=2e-4)


def test_accuracy_interval_of_a_mask():
    mask = torch.tensor([True] * 90 + [False] * 10)
    assert accuracy_interval(mask).estimate == pytest.approx(0.9)
    assert str(accuracy_interval(mask)).startswith("90.0% [")
    with pytest.raises(ValueError):
        accuracy_interval(torch.tensor([]))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def _paired_sample(rng, n, p_a, p_b, rho):
    """Two correlated Bernoulli outcomes per example (a shared latent draw), as two boolean tensors."""
    u = rng.random(n)
    v = np.where(rng.random(n) < rho, u, rng.random(n))
    return torch.from_numpy(u < p_a), torch.from_numpy(v < p_b)


# Newcombe's interval is close to nominal in the middle and conservative (wider than needed) when
# both accuracies are near 1 and strongly correlated, as robust accuracies under two attacks are;
# it must never cover less than ~95 %.
@pytest.mark.parametrize("n,p_a,p_b,rho,most", [(400, 0.9, 0.85, 0.8, 0.975), (200, 0.5, 0.45, 0.6, 0.975),
                                                (400, 0.97, 0.97, 0.9, 1.0)])
def test_paired_difference_covers_the_true_difference_95_percent_of_the_time(n, p_a, p_b, rho, most):
    """Oracle: the interval's defining property. Over 2,000 simulated paired samples with a known
    difference p_a − p_b, the 95 % interval must contain it at least about 95 % of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        a, b = _paired_sample(rng, n, p_a, p_b, rho)
        hits += not paired_difference(a, b).excludes(p_a - p_b)
    assert 0.93 <= hits / 2000 <= most


def test_paired_difference_is_narrower_than_independent_intervals_when_outcomes_agree():
    """Most examples agree: the paired interval must be far narrower than two independent Wilson intervals."""
    a = torch.tensor([True] * 380 + [False] * 20)
    b = a.clone()
    b[:12] = False  # b breaks 12 more digits, and nothing else differs
    d = paired_difference(a, b)
    assert d.estimate == pytest.approx(12 / 400)
    assert d.low > 0  # a consistent one-sided difference of 12 digits is real
    wa, wb = accuracy_interval(a), accuracy_interval(b)
    assert d.high - d.low < 0.5 * ((wa.high - wa.low) + (wb.high - wb.low))
    assert paired_difference(a, a).estimate == 0 and not paired_difference(a, a).excludes(0.0)
    assert "points" in d.points()
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(a, b[:10])


def test_mean_interval_covers_the_true_mean_and_matches_the_normal_approximation():
    """Oracle: for 200 N(μ, 1) draws the bootstrap interval is ≈ mean ± 1.96/√200 and covers μ ~95 % of the time."""
    from course_utils.stats import mean_interval

    rng = np.random.default_rng(1)
    hits = 0
    for i in range(300):
        values = rng.normal(0.3, 1.0, 200)
        ci = mean_interval(values, n_boot=1000, seed=i)
        hits += not ci.excludes(0.3)
        if i == 0:
            assert ci.high - ci.low == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.15)
            assert ci.estimate == pytest.approx(values.mean())
    assert 0.9 <= hits / 300 <= 0.99
    with pytest.raises(ValueError):
        mean_interval([1.0])
