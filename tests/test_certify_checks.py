"""09's self-checks pass the reference solutions and fail, without raising and naming the mistake, the
usual wrong ones: one IBP layer (interval_linear_relu) and the randomised-smoothing radius (certified_radius)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from course_utils.certify import ibp, smoothing
from course_utils.checks import (check_certified_radius, check_interval_linear_relu, reference_certified_radius,
                                 reference_interval_linear_relu)


def not_implemented(*args):
    raise NotImplementedError()


# ----------------------------------------------------------------------------- exercise A: wrong layers
def w_for_radius(weight, bias, lower, upper):
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid, spread = F.linear(centre, weight, bias), F.linear(radius, weight)
    return torch.relu(mid - spread), torch.relu(mid + spread)


def no_swap(weight, bias, lower, upper):
    """l for the lower bound and u for the upper, whatever the sign of the weight."""
    return torch.relu(F.linear(lower, weight, bias)), torch.relu(F.linear(upper, weight, bias))


def swapped_for_positive_weights(weight, bias, lower, upper):
    pos, neg = weight.clamp(min=0), weight.clamp(max=0)
    return (torch.relu(F.linear(upper, pos) + F.linear(lower, neg) + bias),
            torch.relu(F.linear(lower, pos) + F.linear(upper, neg) + bias))


def no_relu(weight, bias, lower, upper):
    return ibp.interval_linear(weight, bias, lower, upper)


def full_width_radius(weight, bias, lower, upper):
    mid, spread = F.linear((upper + lower) / 2, weight, bias), F.linear(upper - lower, weight.abs())
    return torch.relu(mid - spread), torch.relu(mid + spread)


def relu_then_layer(weight, bias, lower, upper):
    return ibp.interval_linear(weight, bias, torch.relu(lower), torch.relu(upper))


def transposed(weight, bias, lower, upper):
    lo, hi = reference_interval_linear_relu(weight, bias, lower, upper)
    return lo.T, hi.T


def one_tensor(weight, bias, lower, upper):
    return torch.stack(reference_interval_linear_relu(weight, bias, lower, upper))


def nan_bounds(weight, bias, lower, upper):
    lo, hi = reference_interval_linear_relu(weight, bias, lower, upper)
    return lo * float("nan"), hi


def test_the_reference_layer_is_exact_against_brute_force():
    g = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(5, 3, generator=g), torch.randn(5, generator=g)
    lower = torch.rand(4, 3, generator=g) - 0.5
    upper = lower + torch.rand(4, 3, generator=g)
    corners = torch.tensor([[(c >> j) & 1 for j in range(3)] for c in range(8)], dtype=torch.bool)
    outputs = torch.relu(F.linear(torch.where(corners[:, None], upper, lower), weight, bias))
    lo, hi = reference_interval_linear_relu(weight, bias, lower, upper)
    assert torch.allclose(lo, outputs.amin(0), atol=1e-6) and torch.allclose(hi, outputs.amax(0), atol=1e-6)


def test_interval_linear_relu_check_passes_the_reference(capsys):
    assert check_interval_linear_relu(reference_interval_linear_relu) is True
    assert capsys.readouterr().out.startswith("✅ check_interval_linear_relu: passed")


@pytest.mark.parametrize("broken, hint", [
    (w_for_radius, "|W|"),
    (no_swap, "|W|"),
    (swapped_for_positive_weights, "swapped"),
    (no_relu, "ReLU is missing"),
    (full_width_radius, "(upper − lower) / 2"),
    (relu_then_layer, "expected lower_out = [0, 1]"),
    (transposed, "shape"),
    (one_tensor, "pair of tensors"),
    (nan_bounds, "NaN"),
    (not_implemented, "not implemented"),
], ids=lambda f: getattr(f, "__name__", "hint"))
def test_interval_linear_relu_check_names_each_mistake(broken, hint, capsys):
    assert check_interval_linear_relu(broken) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ check_interval_linear_relu") and hint in out, out


def test_interval_linear_relu_check_catches_unsound_and_loose_bounds(capsys):
    def too_tight(weight, bias, lower, upper):
        lo, hi = reference_interval_linear_relu(weight, bias, lower, upper)
        return lo + 0.3 * (hi - lo) * (lower.shape[0] > 1), hi  # right on the 2×2 case only

    def too_loose(weight, bias, lower, upper):
        lo, hi = reference_interval_linear_relu(weight, bias, lower, upper)
        return lo, hi + 0.01 * (lower.shape[0] > 1)

    assert check_interval_linear_relu(too_tight) is False
    assert "not a bound" in capsys.readouterr().out
    assert check_interval_linear_relu(too_loose) is False
    assert "not exact" in capsys.readouterr().out


def test_the_check_leaves_its_tensors_to_the_student():
    """It hands over copies: an in-place edit by the student cannot change what it compares with."""
    def in_place(weight, bias, lower, upper):
        out = reference_interval_linear_relu(weight, bias, lower, upper)
        weight.zero_(), lower.zero_(), upper.zero_()
        return out

    assert check_interval_linear_relu(in_place) is True


# ----------------------------------------------------------------------------- exercise B: wrong radii
def point_estimate(count, n, sigma, alpha):
    p = count / n
    return sigma * stats.norm.ppf(p) if p > 0.5 else None


def two_sided(count, n, sigma, alpha):
    p = stats.beta.ppf(alpha / 2, count, n - count + 1) if count else 0.0
    return sigma * stats.norm.ppf(p) if p > 0.5 else None


def wrong_beta(count, n, sigma, alpha):
    p = stats.beta.ppf(alpha, count + 1, n - count) if count < n else 1.0
    return sigma * stats.norm.ppf(p) if p > 0.5 else None


def no_sigma(count, n, sigma, alpha):
    r = reference_certified_radius(count, n, sigma, alpha)
    return None if r is None else r / sigma


def zero_for_abstain(count, n, sigma, alpha):
    return reference_certified_radius(count, n, sigma, alpha) or 0.0


def never_abstains(count, n, sigma, alpha):
    p = stats.beta.ppf(alpha, count, n - count + 1) if count else 0.0
    return sigma * stats.norm.ppf(p)


def nan_at_zero_votes(count, n, sigma, alpha):
    p = stats.beta.ppf(alpha, count, n - count + 1)  # NaN for count = 0, and NaN ≤ 1/2 is False
    return None if p <= 0.5 else sigma * stats.norm.ppf(p)


def as_list(count, n, sigma, alpha):
    return [reference_certified_radius(count, n, sigma, alpha)]


def test_certified_radius_check_passes_the_reference(capsys):
    assert reference_certified_radius is smoothing.certified_radius
    assert check_certified_radius(reference_certified_radius) is True
    assert capsys.readouterr().out.startswith("✅ check_certified_radius: passed")


@pytest.mark.parametrize("kind", [np.float32, np.float64, torch.tensor])
def test_certified_radius_check_accepts_numpy_and_tensor_answers(kind, capsys):
    def radius(*args):
        r = reference_certified_radius(*args)
        return None if r is None else kind(r)

    assert check_certified_radius(radius) is True


@pytest.mark.parametrize("broken, hint", [
    (point_estimate, "not a certificate"),
    (two_sided, "two-sided"),
    (wrong_beta, "Beta(k, n − k + 1)"),
    (no_sigma, "multiply by sigma"),
    (zero_for_abstain, "return None (not 0)"),
    (never_abstains, "expected None (abstain)"),
    (nan_at_zero_votes, "Beta(0, …) is undefined"),
    (as_list, "expected a float radius or None"),
    (not_implemented, "not implemented"),
], ids=lambda f: getattr(f, "__name__", "hint"))
def test_certified_radius_check_names_each_mistake(broken, hint, capsys):
    assert check_certified_radius(broken) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ check_certified_radius") and hint in out, out


def test_the_point_estimate_is_caught_even_with_all_votes(capsys):
    """k = n: k/n = 1 gives an infinite radius, which no finite n can certify."""
    def point_estimate_last(count, n, sigma, alpha):
        return point_estimate(count, n, sigma, alpha) if count == n else reference_certified_radius(count, n, sigma, alpha)

    assert check_certified_radius(point_estimate_last) is False
    assert "still finite" in capsys.readouterr().out


# ----------------------------------------------------------------------------- through the grader's proxies
STUDENT = '''
import torch
import torch.nn.functional as F
from scipy import stats

def interval_linear_relu(weight, bias, lower, upper):
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid, spread = F.linear(centre, weight, bias), F.linear(radius, weight.abs())
    return torch.relu(mid - spread), torch.relu(mid + spread)

def certified_radius(count, n, sigma, alpha):
    p = count / n  # the point estimate: not a certificate
    return sigma * stats.norm.ppf(p) if p > 0.5 else None
'''


def test_the_checks_run_on_the_graders_proxies(tmp_path, capsys):
    """The grader calls the student's functions in another process: arguments and answers are plain data."""
    import linecache

    from course_utils.classroom.remote import Worker, dump_functions

    namespace = {"__name__": "__main__"}  # as a notebook cell runs, so that cloudpickle saves by value
    linecache.cache["<cell>"] = (len(STUDENT), None, STUDENT.splitlines(True), "<cell>")
    exec(compile(STUDENT, "<cell>", "exec"), namespace)
    dump_functions(tmp_path / "functions.pkl", {name: namespace[name] for name in ("interval_linear_relu", "certified_radius")})
    with Worker(tmp_path / "functions.pkl", timeout=60) as worker:
        assert check_interval_linear_relu(worker.function("interval_linear_relu")) is True
        assert check_certified_radius(worker.function("certified_radius")) is False
    out = capsys.readouterr().out
    assert "✅ check_interval_linear_relu" in out and "not a certificate" in out
