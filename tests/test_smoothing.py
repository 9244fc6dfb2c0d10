"""Randomised smoothing against its oracles: SciPy's exact binomial intervals, simulated coverage, and the
closed form of Cohen et al. for a linear base classifier, whose decision boundary we know."""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from course_utils.certify import smoothing
from course_utils.certify.smoothing import (certified_accuracy_at, certified_radius, certify, clopper_pearson_lower,
                                            noise_counts, predict)


def linear_model(w, b) -> nn.Module:
    """Two pixels, two classes: class 1 exactly where w·z + b > 0 (logits 0 and w·z + b)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 0.0], list(w)]))
        model[1].bias.copy_(torch.tensor([0.0, b]))
    return model


def images(points) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32).view(-1, 1, 1, 2)


def distance(points, w, b) -> np.ndarray:
    """The ℓ2 distance of each point to the line w·z + b = 0."""
    return np.abs(np.asarray(points) @ np.asarray(w) + b) / np.linalg.norm(w)


# The line z1 + z2 = 0.9 crosses the middle of the square; points in [0.3, 0.7]² with σ ≤ 0.05 leave [0, 1]
# with probability ~1e-9, so clamping plays no part and p_A = Φ(distance/σ) exactly.
W, B = (1.0, 1.0), -0.9
POINTS = [[0.5, 0.5], [0.3, 0.35], [0.6, 0.45], [0.7, 0.7], [0.4, 0.42], [0.55, 0.3]]


# ----------------------------------------------------------------------------- the bounds
@pytest.mark.parametrize("count, n, sigma, alpha", [(990, 1000, 0.25, 0.001), (60, 100, 0.5, 0.05), (7, 7, 1.0, 0.01)])
def test_radius_is_sigma_times_the_normal_quantile_of_the_lower_bound(count, n, sigma, alpha):
    p = stats.beta.ppf(alpha, count, n - count + 1)
    assert certified_radius(count, n, sigma, alpha) == pytest.approx(sigma * stats.norm.ppf(p), rel=1e-9)


def test_all_votes_give_a_finite_radius_and_a_weak_majority_abstains():
    assert certified_radius(100, 100, 0.5, 0.001) == pytest.approx(0.5 * stats.norm.ppf(0.001 ** (1 / 100)))
    assert certified_radius(520, 1000, 0.25, 0.001) is None
    assert certified_radius(0, 1000, 0.25, 0.001) is None


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (5, 10), (10, 10), (37, 200), (999, 1000)])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_lower_is_scipys_two_sided_exact_bound_at_twice_alpha(k, n, alpha):
    """Oracle: the one-sided bound at α is the lower end of the two-sided exact interval at 2α."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(ci.low, abs=1e-12)


@pytest.mark.parametrize("p, n, alpha", [(0.3, 40, 0.05), (0.9, 100, 0.1), (0.97, 25, 0.05)])
def test_clopper_pearson_lower_covers_the_true_p_at_least_1_minus_alpha_of_the_time(p, n, alpha):
    draws = 20_000
    ks = np.random.default_rng(0).binomial(n, p, size=draws)
    bound = {k: clopper_pearson_lower(int(k), n, alpha) for k in np.unique(ks)}
    covered = np.mean([bound[k] <= p for k in ks])
    assert covered >= 1 - alpha - 4 * math.sqrt(alpha * (1 - alpha) / draws)


# ----------------------------------------------------------------------------- a linear base classifier
def test_counts_follow_the_closed_form_and_the_radius_approaches_the_distance():
    """For a linear boundary, p_A = Φ(d/σ) and the smoothed classifier agrees with the base one, so the
    certified radius σ·Φ⁻¹(p_lower) tends to d as n grows; it is below d whenever p_lower ≤ p_A."""
    sigma, n = 0.05, 20_000
    model, x = linear_model(W, B), images(POINTS)
    d = distance(POINTS, W, B)
    counts = noise_counts(model, x, sigma, n, batch_size=8192, generator=torch.Generator().manual_seed(1))
    p_a = stats.norm.cdf(d / sigma)
    top = counts.max(1).values.numpy() / n
    assert np.all(np.abs(top - p_a) <= 4 * np.sqrt(p_a * (1 - p_a) / n) + 1e-9)
    side = (np.asarray(POINTS) @ np.asarray(W) + B > 0).astype(int)
    assert counts.argmax(1).tolist() == side.tolist()

    predictions, radii = certify(model, x, sigma, n0=100, n=n, alpha=0.001, batch_size=8192,
                                 generator=torch.Generator().manual_seed(2))
    assert predictions.tolist() == side.tolist()  # every point is at least 0.5σ from the line
    assert np.all(radii.numpy() <= d + 1e-6)
    most = sigma * stats.norm.ppf(0.001 ** (1 / n))  # what n samples certify at best, all votes for A
    assert np.all(radii.numpy() >= 0.85 * np.minimum(d, most))  # the lower bound's price at n = 20 000


def test_a_certified_radius_never_exceeds_the_distance_to_the_boundary():
    """Each certificate is wrong with probability at most α (at α = 0.001 one of these 80 was, by 3e-5):
    at α = 1e-6 a wrong one among 80 is a 1e-4 event, so a failure here is a bug, not bad luck."""
    g = torch.Generator().manual_seed(3)
    points = (0.3 + 0.4 * torch.rand(40, 2, generator=g)).tolist()
    model, x, d = linear_model(W, B), images(points), distance(points, W, B)
    for sigma in (0.02, 0.05):
        predictions, radii = certify(model, x, sigma, n0=50, n=2000, alpha=1e-6, generator=g)
        certified = predictions != -1
        assert certified.sum() >= 20
        assert np.all(radii.numpy()[certified.numpy()] <= d[certified.numpy()] + 1e-6)
        side = torch.tensor((np.asarray(points) @ np.asarray(W) + B > 0).astype(int))
        assert torch.equal(predictions[certified], side[certified])  # no certificate for the wrong class


def test_clamping_is_part_of_the_base_classifier():
    """The line z1 = −0.1 lies outside the square: unclamped, noise would cross it with probability Φ(−0.12/σ) ≈ 0.4;
    clamped to [0, 1], every sample is class 1, and the radius is σ·Φ⁻¹(α^(1/n)), the most n samples can certify."""
    model, x = linear_model((1.0, 0.0), 0.1), images([[0.02, 0.5]])
    counts = noise_counts(model, x, 0.5, 500, generator=torch.Generator().manual_seed(0))
    assert counts.tolist() == [[0, 500]]
    predictions, radii = certify(model, x, 0.5, n0=20, n=500, alpha=0.01, generator=torch.Generator().manual_seed(0))
    assert predictions.tolist() == [1]
    assert radii.item() == pytest.approx(0.5 * stats.norm.ppf(0.01 ** (1 / 500)), rel=1e-6)


def test_predict_answers_far_from_the_boundary_and_abstains_near_it_under_huge_noise():
    """The line z1 = 0.5 splits the square's corners two and two, where huge noise clamps every sample:
    p_A ≈ 1/2 for a point next to it, so both procedures abstain."""
    model = linear_model((1.0, 0.0), -0.5)
    x = images([[0.501, 0.5], [0.9, 0.5], [0.1, 0.5]])
    g = torch.Generator().manual_seed(0)
    assert predict(model, x, 0.05, n=1000, generator=g).tolist() == [-1, 1, 0]
    assert predict(model, x[:1], 100.0, n=1000, generator=g).tolist() == [-1]
    predictions, radii = certify(model, x[:1], 100.0, n0=100, n=1000, generator=g)
    assert predictions.tolist() == [-1] and radii.tolist() == [0.0]


def test_same_seed_same_counts():
    model, x = linear_model(W, B), images(POINTS)
    first = noise_counts(model, x, 0.3, 300, batch_size=128, generator=torch.Generator().manual_seed(5))
    again = noise_counts(model, x, 0.3, 300, batch_size=128, generator=torch.Generator().manual_seed(5))
    other = noise_counts(model, x, 0.3, 300, batch_size=128, generator=torch.Generator().manual_seed(6))
    assert first.dtype == torch.int64 and first.shape == (len(POINTS), 2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.sum(1).tolist() == [300] * len(POINTS)


def test_certify_guesses_on_n0_samples_and_bounds_on_n_fresh_ones():
    """Rebuilt by hand from the same seeded stream: n0 draws pick the class, the next n draws count its votes."""
    model, x = linear_model(W, B), images(POINTS)
    g = torch.Generator().manual_seed(7)
    guesses = noise_counts(model, x, 0.05, 30, generator=g).argmax(1)
    votes = noise_counts(model, x, 0.05, 400, generator=g).gather(1, guesses[:, None]).squeeze(1)
    expected = [certified_radius(int(k), 400, 0.05, 0.01) for k in votes]
    predictions, radii = certify(model, x, 0.05, n0=30, n=400, alpha=0.01, generator=torch.Generator().manual_seed(7))
    assert predictions.tolist() == [-1 if r is None else int(c) for r, c in zip(expected, guesses)]
    assert radii.tolist() == pytest.approx([0.0 if r is None else r for r in expected], rel=1e-6)


def test_no_images_give_empty_answers():
    model, x = linear_model(W, B), torch.zeros(0, 1, 1, 2)
    assert noise_counts(model, x, 0.5, 10).shape == (0, 2)
    predictions, radii = certify(model, x, 0.5)
    assert predictions.shape == radii.shape == (0,)
    assert predict(model, x, 0.5).shape == (0,)


def test_counts_are_taken_in_eval_mode_without_gradients_and_the_mode_is_restored():
    seen = []

    class Spy(nn.Module):
        def forward(self, z):
            seen.append((self.training, torch.is_grad_enabled(), float(z.min()), float(z.max())))
            return z.flatten(1)

    model = nn.Sequential(Spy(), nn.Dropout(0.5)).train()
    counts = noise_counts(model, torch.full((3, 1, 1, 4), 0.5), 1.0, 10, batch_size=7)
    assert counts.shape == (3, 4) and counts.sum().item() == 30
    assert [s[:2] for s in seen] == [(False, False)] * 5  # 30 copies in batches of 7
    assert min(s[2] for s in seen) >= 0 and max(s[3] for s in seen) <= 1  # the model only sees clamped inputs
    assert model.training and model[1].training


# ----------------------------------------------------------------------------- the curve
def test_certified_accuracy_curve():
    predictions = torch.tensor([1, 0, -1, 2, 1])
    radii = torch.tensor([0.5, 0.2, 0.0, 1.0, 0.1])
    y = torch.tensor([1, 0, 1, 0, 1])
    grid = [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0]
    curve = certified_accuracy_at(predictions, radii, y, grid)
    assert curve == pytest.approx([0.6, 0.6, 0.4, 0.2, 0.2, 0.0, 0.0, 0.0])
    assert certified_accuracy_at(predictions, radii, y, torch.tensor([0.2])) == pytest.approx([0.4])
    assert all(math.isnan(v) for v in certified_accuracy_at(torch.zeros(0, dtype=torch.int64), torch.zeros(0),
                                                            torch.zeros(0, dtype=torch.int64), [0.0, 1.0]))


def test_certified_accuracy_of_certify_is_non_increasing():
    g = torch.Generator().manual_seed(4)
    points = (0.3 + 0.4 * torch.rand(30, 2, generator=g)).tolist()
    x = images(points)
    y = torch.tensor((np.asarray(points) @ np.asarray(W) + B > 0).astype(int))
    y[:5] = 1 - y[:5]  # some wrong labels: never certified correct
    predictions, radii = certify(linear_model(W, B), x, 0.05, n0=50, n=500, generator=g)
    curve = certified_accuracy_at(predictions, radii, y, np.linspace(0, 0.3, 13))
    assert all(a >= b for a, b in zip(curve, curve[1:]))
    assert curve[0] <= 25 / 30 and curve[-1] == 0.0


# ----------------------------------------------------------------------------- bad arguments
MODEL, X = linear_model(W, B), images(POINTS[:2])


@pytest.mark.parametrize("call, name", [
    (lambda: noise_counts(MODEL, X, 0.0, 10), "sigma"),
    (lambda: noise_counts(MODEL, X, -1.0, 10), "sigma"),
    (lambda: noise_counts(MODEL, X, float("nan"), 10), "sigma"),
    (lambda: noise_counts(MODEL, X, 0.5, 0), "n"),
    (lambda: noise_counts(MODEL, X, 0.5, 10.0), "n"),
    (lambda: noise_counts(MODEL, X, 0.5, True), "n"),
    (lambda: noise_counts(MODEL, X, 0.5, 10, batch_size=0), "batch_size"),
    (lambda: noise_counts(MODEL, X + 1, 0.5, 10), "x"),
    (lambda: noise_counts(MODEL, X[0], 0.5, 10), "x"),
    (lambda: certify(MODEL, X, 0.5, n0=0), "n0"),
    (lambda: certify(MODEL, X, 0.5, n=-3), "n"),
    (lambda: certify(MODEL, X, 0.5, alpha=0.0), "alpha"),
    (lambda: certify(MODEL, X, 0.5, alpha=1.0), "alpha"),
    (lambda: certify(MODEL, X, 0.0), "sigma"),
    (lambda: predict(MODEL, X, 0.5, alpha=1.5), "alpha"),
    (lambda: predict(MODEL, X, 0.5, n=0), "n"),
    (lambda: clopper_pearson_lower(11, 10, 0.05), "k"),
    (lambda: clopper_pearson_lower(-1, 10, 0.05), "k"),
    (lambda: clopper_pearson_lower(3, 0, 0.05), "n"),
    (lambda: certified_radius(5, 10, 0.0, 0.05), "sigma"),
    (lambda: certified_radius(5, 10, 0.5, -0.1), "alpha"),
    (lambda: certified_accuracy_at(torch.zeros(3), torch.zeros(2), torch.zeros(3), [0.0]), "same length"),
    (lambda: certified_accuracy_at(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.5), "radius_grid"),
    (lambda: certified_accuracy_at(torch.zeros(3), torch.zeros(3), torch.zeros(3), [-0.5]), "radius_grid"),
])
def test_bad_arguments_raise_value_errors_that_name_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_counts_accept_numpy_and_tensor_integers():
    assert clopper_pearson_lower(np.int64(5), np.int64(10), 0.05) == clopper_pearson_lower(5, 10, 0.05)
    assert certified_radius(torch.tensor(9), 10, 0.5, 0.05) == certified_radius(9, 10, 0.5, 0.05)
    assert smoothing.ABSTAIN == -1
