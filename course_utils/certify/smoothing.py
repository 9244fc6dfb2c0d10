"""Randomised smoothing (Cohen, Rosenfeld & Kolter 2019): a classifier with a provable ℓ2 radius.

The base classifier is g(z) = argmax model(clamp(z, 0, 1)); the smoothed classifier predicts the class
that g returns most often under z = x + σ·N(0, I). If class A has probability p_A ≥ p_lower > 1/2 under
that noise, no x' with ‖x' − x‖₂ < σ·Φ⁻¹(p_lower) changes the smoothed prediction. The clamp is part of g
(not of the threat model), so the certificate holds for every x' in input space, in [0, 1] or not.

p_A is unknown: it is estimated from n noisy samples and replaced by a one-sided Clopper–Pearson lower
bound, so a certificate is wrong with probability at most α (over the noise), never more.

    predictions, radii = certify(model, x, sigma=0.25, n0=100, n=1000, alpha=0.001)
    curve = certified_accuracy_at(predictions, radii, y, [0.0, 0.25, 0.5])

SciPy is imported inside the functions that use it: `course_utils.checks` imports this module, and
importing scipy.stats costs every notebook about a second.
"""
from __future__ import annotations

import math
import numbers
import operator

import torch
from torch import nn

from ..attacks.core import check_number, eval_mode
from ..images import check_images, normal

ABSTAIN = -1  # the prediction where the smoothed classifier abstains


# ----------------------------------------------------------------------------- validation
def check_int(name: str, value, minimum: int = 1) -> int:
    """`value` as an int, or a ValueError naming `name` unless it is an integer ≥ `minimum`.

    NumPy integers and one-element integer tensors are accepted: counts are usually read off a tensor."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value}")
    return value


def check_alpha(alpha) -> float:
    """`alpha` as a float, or a ValueError unless 0 < alpha < 1 (the probability that a certificate is wrong)."""
    alpha = check_number("alpha", alpha)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (the allowed probability of a wrong certificate), got {alpha}")
    return alpha


def check_sigma(sigma) -> float:
    """`sigma` as a float, or a ValueError unless it is a finite number > 0 (the noise's standard deviation)."""
    return check_number("sigma", sigma, positive=True)


# ----------------------------------------------------------------------------- sampling
def noise_counts(model: nn.Module, x: torch.Tensor, sigma: float, n: int, *, batch_size: int = 1000,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """N×K int64 counts (on x's device) of g's predictions over n noisy copies of each image of x.

    The N·n copies are drawn in batches of `batch_size`, which may mix images, so few samples per image
    still fill the batches. The noise comes from `images.normal`: a seeded CPU generator gives the same
    counts on any device (for the same batch_size). The model runs in eval mode, without gradients.
    """
    check_images(x)
    sigma = check_sigma(sigma)
    n = check_int("n", n)
    batch_size = check_int("batch_size", batch_size)
    total = x.shape[0] * n
    counts = None
    with eval_mode(model), torch.no_grad():
        if total == 0:  # no images: still ask the model how many classes there are
            return torch.zeros(0, model(x).shape[1], dtype=torch.int64, device=x.device)
        for start in range(0, total, batch_size):
            which = torch.arange(start, min(start + batch_size, total), device=x.device) // n
            z = x[which] + sigma * normal((len(which), *x.shape[1:]), x, generator)
            logits = model(z.clamp(0.0, 1.0))
            if counts is None:
                counts = torch.zeros(x.shape[0], logits.shape[1], dtype=torch.int64, device=x.device)
            # a batch may mix images: one bincount over cells image·K + class counts them all at once
            flat = which * counts.shape[1] + logits.argmax(1)
            counts += torch.bincount(flat, minlength=counts.numel()).view_as(counts)
    return counts


# ----------------------------------------------------------------------------- the bounds
def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """The one-sided (1 − α) lower confidence bound on a binomial proportion from k successes in n trials.

    It is the α quantile of Beta(k, n − k + 1) (0 when k = 0): the smallest p under which seeing k or
    more successes still has probability ≥ α. Exact, so conservative: it is below the true p at least
    1 − α of the time, for every p and n.
    """
    from scipy import stats

    n = check_int("n", n)
    k = check_int("k", k, minimum=0)
    if k > n:
        raise ValueError(f"k must be at most n = {n} (successes out of n trials), got {k}")
    alpha = check_alpha(alpha)
    if k == 0:
        return 0.0
    return float(stats.beta.ppf(alpha, k, n - k + 1))


def certified_radius(count: int, n: int, sigma: float, alpha: float) -> float | None:
    """Cohen's ℓ2 radius σ·Φ⁻¹(p_lower) from `count` votes for the top class out of n, or None (abstain).

    p_lower = clopper_pearson_lower(count, n, alpha); at or below 1/2 nothing is certified. With all n
    votes, p_lower = α^(1/n) < 1, so the radius stays finite: n samples can only certify so far.
    """
    from scipy import stats

    sigma = check_sigma(sigma)
    p_lower = clopper_pearson_lower(count, n, alpha)
    if p_lower <= 0.5:
        return None
    return sigma * float(stats.norm.ppf(p_lower))


# ----------------------------------------------------------------------------- Cohen's two procedures
def certify(model: nn.Module, x: torch.Tensor, sigma: float, *, n0: int = 100, n: int = 1000, alpha: float = 0.001,
            batch_size: int = 1000, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cohen's CERTIFY per image: (predictions, radii), on x's device.

    The top class among n0 samples is the guess; n *separate* samples then bound its probability (reusing
    the first ones would select and estimate on the same data, and the bound would no longer hold).
    predictions is int64 with −1 (`ABSTAIN`) where p_lower ≤ 1/2; radii is float32, 0.0 there.
    Each certificate is wrong with probability at most α.
    """
    check_images(x)
    sigma = check_sigma(sigma)
    n0, n = check_int("n0", n0), check_int("n", n)
    alpha = check_alpha(alpha)
    guesses = noise_counts(model, x, sigma, n0, batch_size=batch_size, generator=generator).argmax(1)
    votes = noise_counts(model, x, sigma, n, batch_size=batch_size, generator=generator)
    votes = votes.gather(1, guesses[:, None]).squeeze(1)
    predictions, radii = [], []
    for guess, count in zip(guesses.tolist(), votes.tolist()):
        radius = certified_radius(count, n, sigma, alpha)
        predictions.append(ABSTAIN if radius is None else guess)
        radii.append(0.0 if radius is None else radius)
    return (torch.tensor(predictions, dtype=torch.int64, device=x.device),
            torch.tensor(radii, dtype=torch.float32, device=x.device))


def predict(model: nn.Module, x: torch.Tensor, sigma: float, *, n: int = 1000, alpha: float = 0.001,
            batch_size: int = 1000, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cohen's PREDICT per image: the top class, or −1 (`ABSTAIN`) unless it provably beats the runner-up.

    With n_A, n_B the two largest counts of n samples, it answers only when the two-sided binomial test of
    n_A out of n_A + n_B at p = 1/2 has p-value ≤ α: then the answer differs from the smoothed classifier's
    with probability at most α. int64, on x's device.
    """
    from scipy import stats

    check_images(x)
    alpha = check_alpha(alpha)
    counts = noise_counts(model, x, sigma, n, batch_size=batch_size, generator=generator)
    if counts.shape[1] == 1:  # one class: nothing to beat
        counts = torch.cat([counts, torch.zeros_like(counts)], 1)
    top, classes = counts.topk(2, dim=1)
    predictions = []
    for (n_a, n_b), c in zip(top.tolist(), classes[:, 0].tolist()):
        p_value = stats.binomtest(n_a, n_a + n_b, 0.5).pvalue  # a tie has p-value 1: abstain, whichever came first
        predictions.append(c if p_value <= alpha else ABSTAIN)
    return torch.tensor(predictions, dtype=torch.int64, device=x.device)


# ----------------------------------------------------------------------------- the curve
def certified_accuracy_at(predictions: torch.Tensor, radii: torch.Tensor, y: torch.Tensor,
                          radius_grid) -> list[float]:
    """For each r of `radius_grid`, the fraction of images predicted as y with a certified radius ≥ r.

    Abstentions (−1) never count, whatever their radius. NaN for every r when there are no images.
    """
    for name, t in (("predictions", predictions), ("radii", radii), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor (one value per image), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if not predictions.shape == radii.shape == y.shape:
        raise ValueError(f"predictions, radii and y must have the same length, got {len(predictions)}, "
                         f"{len(radii)} and {len(y)}")
    if isinstance(radius_grid, torch.Tensor):
        radius_grid = radius_grid.flatten().tolist()
    if isinstance(radius_grid, (numbers.Number, str)) or not hasattr(radius_grid, "__iter__"):
        raise ValueError(f"radius_grid must be a sequence of radii ≥ 0, got {radius_grid!r}")
    grid = [check_number("radius_grid", r) for r in radius_grid]
    if len(y) == 0:
        return [math.nan for _ in grid]
    correct = (predictions == y.to(predictions.device)) & (predictions != ABSTAIN)
    radii = radii.to(predictions.device)
    return [(correct & (radii >= r)).float().mean().item() for r in grid]
