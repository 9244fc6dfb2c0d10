"""course_utils.scaling against closed forms, and the 03 self-checks against typical mistakes."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import scaling
from course_utils.checks_scaling import check_input_gradient_l1, check_loglog_fit


def _linear_softmax(d: int, classes: int = 3, seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, d, generator=g))
        model[1].bias.copy_(torch.randn(classes, generator=g))
    return model


# ----------------------------------------------------------------------------- resampling and data
def test_resample_shape_range_and_constants():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    for side in (7, 14, 28, 56, 112):
        out = scaling.resample(x, side)
        assert out.shape == (3, 1, side, side)
        assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(scaling.resample(x, 28), x, atol=1e-6)  # same size: unchanged
    grey = torch.full((2, 1, 28, 28), 0.37)
    assert torch.allclose(scaling.resample(grey, 7), torch.full((2, 1, 7, 7), 0.37), atol=1e-6)
    assert torch.allclose(scaling.resample(grey, 112), torch.full((2, 1, 112, 112), 0.37), atol=1e-6)
    # Upsampling keeps the mean brightness (the fraction of ink does not depend on the resolution).
    assert torch.allclose(scaling.resample(x, 56).mean((1, 2, 3)), x.mean((1, 2, 3)), atol=0.01)
    with pytest.raises(ValueError):
        scaling.resample(x, 0)
    with pytest.raises(ValueError):
        scaling.resample(x[0], 14)


def test_synthetic_task_keeps_its_difficulty_fixed():
    for d in (16, 1024):
        x, y = scaling.synthetic_task(d, 4000, mu0=0.2, sigma=0.1, generator=torch.Generator().manual_seed(d))
        assert x.shape == (4000, 1, 1, d) and y.shape == (4000,)
        assert x.min() >= 0 and x.max() <= 1
        assert 0.45 < y.float().mean() < 0.55
        gap = (x[y == 1].mean() - x[y == 0].mean()).item()
        assert gap == pytest.approx(2 * 0.2 / math.sqrt(d), rel=0.1)  # per-coordinate evidence shrinks like 1/√d
        # ...but the sum of all coordinates separates the classes equally well at every d: Φ(μ0/σ) = Φ(2).
        s = (x - 0.5).flatten(1).sum(1)
        acc = ((s > 0).long() == y).float().mean().item()
        assert acc == pytest.approx(0.977, abs=0.015)


# ----------------------------------------------------------------------------- gradients
def test_log_prob_gradient_matches_the_closed_form_of_a_linear_model():
    model = _linear_softmax(12)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 3, 4, generator=g)
    y = torch.tensor([0, 1, 2, 1, 0])
    w, b = model[1].weight, model[1].bias
    p = (x.flatten(1) @ w.T + b).softmax(1)
    expected = ((F.one_hot(y, 3).float() - p) @ w).detach()  # ∇x log p_y = W_y − Σ_k p_k W_k
    got = scaling.log_prob_gradient(model, x, y)
    assert got.shape == x.shape
    assert torch.allclose(got.flatten(1), expected, atol=1e-5)
    assert torch.allclose(scaling.input_gradient_l1(model, x, y), expected.abs().sum(1), atol=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_input_gradient_l1_restores_the_mode_and_leaves_parameters_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    x, y = torch.rand(4, 1, 2, 4), torch.tensor([0, 1, 2, 0])
    a, b = scaling.input_gradient_l1(model, x, y), scaling.input_gradient_l1(model, x, y)
    assert torch.equal(a, b)  # eval mode inside: no dropout noise
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("per_coordinate,expected_slope", [
    (lambda d: 0.3, 1.0),  # "c per coordinate": Σ|g_j| = c·d
    (lambda d: 0.3 / math.sqrt(d), 0.5),  # "c/√d per coordinate": Σ|g_j| = c·√d
])
def test_slope_of_a_linear_model_with_known_weights(per_coordinate, expected_slope):
    """Logits (c·Σx_j, −c·Σx_j) at x = 0: p = (½, ½) and g = ½(w_0 − w_1) = c per pixel, exactly."""
    ds, l1 = [16, 64, 256, 1024, 4096], []
    for d in ds:
        model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2, bias=False))
        with torch.no_grad():
            model[1].weight.copy_(torch.stack([torch.full((d,), per_coordinate(d)), torch.full((d,), -per_coordinate(d))]))
        value = scaling.input_gradient_l1(model, torch.zeros(3, 1, 1, d), torch.tensor([0, 1, 0]))
        assert torch.allclose(value, torch.full((3,), per_coordinate(d) * d), rtol=1e-5)
        l1.append(value.mean().item())
    slope, _ = scaling.loglog_fit(ds, l1)
    assert slope == pytest.approx(expected_slope, abs=1e-5)


def test_first_order_check_is_exact_in_the_limit_and_wrong_at_large_eps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 5)).double()
    x = torch.rand(16, 1, 4, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (16,))
    out = scaling.first_order_check(net, x, y, [1e-6, 1e-4, 0.5])
    l1 = scaling.input_gradient_l1(net, x, y)
    assert torch.allclose(out["predicted"][0], -1e-6 * l1)
    # The measured change is log p at x0 − ε·sign(g), unclipped, minus log p at x0.
    g = scaling.log_prob_gradient(net, x, y)
    manual = scaling.log_prob(net, x - 1e-4 * g.sign(), y) - scaling.log_prob(net, x, y)
    assert torch.allclose(out["measured"][1], manual)
    ratio = [(m / p) for m, p in zip(out["measured"], out["predicted"])]
    assert (ratio[0] - 1).abs().max() < 1e-3  # first order is exact as ε → 0
    assert (ratio[1] - 1).abs().max() < (ratio[2] - 1).abs().max()  # and worse far away


# ----------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("a,c", [(0.5, 0.3), (1.0, 2e-3), (-0.5, 7.0), (0.0, 1.5)])
def test_loglog_fit_recovers_exact_power_laws(a, c):
    d = [49, 196, 784, 3136, 12544]
    slope, intercept = scaling.loglog_fit(d, [c * x**a for x in d])
    assert slope == pytest.approx(a, abs=1e-9)
    assert intercept == pytest.approx(math.log(c), abs=1e-9)
    slope_t, _ = scaling.loglog_fit(torch.tensor(d), torch.tensor([c * x**a for x in d]))
    assert slope_t == pytest.approx(a, abs=1e-6)


def test_loglog_fit_is_least_squares():
    rng = np.random.default_rng(0)
    d = np.geomspace(10, 1e4, 7)
    v = 2 * d**0.6 * np.exp(rng.normal(0, 0.3, 7))
    assert scaling.loglog_fit(d, v) == pytest.approx(tuple(np.polyfit(np.log(d), np.log(v), 1)), abs=1e-9)
    with pytest.raises(ValueError):
        scaling.loglog_fit([1, 2], [1, -1])
    with pytest.raises(ValueError):
        scaling.loglog_fit([5, 5], [1, 2])


# ----------------------------------------------------------------------------- the two constructions
def test_mlp_at_init_scales_its_first_layer_as_documented():
    for d in (49, 3136):
        default = scaling.mlp_at_init(d, seed=0)
        fixed = scaling.mlp_at_init(d, first_layer_scale=0.05, seed=0)
        bound = 1 / math.sqrt(d)
        assert default[1].weight.abs().max() <= bound and default[1].weight.abs().max() > 0.95 * bound
        assert fixed[1].weight.abs().max() <= 0.05 and fixed[1].weight.abs().max() > 0.95 * 0.05
        assert torch.equal(default[3].weight, fixed[3].weight)  # only the first layer differs
    assert torch.equal(scaling.mlp_at_init(49, seed=3)[1].weight, scaling.mlp_at_init(49, seed=3)[1].weight)
    assert not torch.equal(scaling.mlp_at_init(49, seed=3)[1].weight, scaling.mlp_at_init(49, seed=4)[1].weight)


def test_gradient_norm_grows_like_sqrt_d_with_fan_in_init_and_like_d_without():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 28, 28, generator=g) < 0.2).float()  # sparse "ink" images
    y = torch.randint(0, 10, (64,), generator=g)
    sides = (7, 14, 28, 56)
    fan_in = scaling.gradient_l1_by_side(x, y, sides, None, seeds=(0, 1), hidden=64)
    fixed = scaling.gradient_l1_by_side(x, y, sides, 1 / 28, seeds=(0, 1), hidden=64)
    assert fan_in["d"] == [49, 196, 784, 3136]
    assert 0.35 < scaling.loglog_fit(fan_in["d"], fan_in["l1"])[0] < 0.65
    assert 0.8 < scaling.loglog_fit(fixed["d"], fixed["l1"])[0] < 1.2
    # Why: the fan-in units see inputs of the same size at every d, the fixed ones of size ∝ √d.
    assert abs(scaling.loglog_fit(fan_in["d"], fan_in["preactivation_rms"])[0]) < 0.15
    assert scaling.loglog_fit(fixed["d"], fixed["preactivation_rms"])[0] == pytest.approx(0.5, abs=0.15)


def test_single_threaded_restores_the_thread_count():
    before = torch.get_num_threads()
    with scaling.single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), scaling.single_threaded():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_first_layer_preactivation_rms():
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))
    x = torch.rand(3, 1, 2, 3)
    assert scaling.first_layer_preactivation_rms(net, x) == pytest.approx(net(x).pow(2).mean().sqrt().item(), rel=1e-6)
    with pytest.raises(ValueError):
        scaling.first_layer_preactivation_rms(nn.Sequential(nn.Flatten()), x)


def test_plots_return_figures():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.rand(10, 1, 2, 3, dtype=torch.float64), torch.randint(0, 3, (10,))
    figs = [
        scaling.plot_first_order_check(scaling.first_order_check(net, x, y, [1e-4, 1e-2])),
        scaling.plot_loglog([1, 10, 100], {"a": [1, 3, 10]}, "d", "v", "t"),
        scaling.plot_flip_curves([0, 0.01, 0.1], {"d = 4": torch.tensor([0.0, 0.01, float("inf")])}),
    ]
    assert all(isinstance(f, plt.Figure) for f in figs)
    plt.close("all")


# ----------------------------------------------------------------------------- self-checks
def _not_implemented(*args, **kwargs):
    raise NotImplementedError()


def _crashes(*args, **kwargs):
    return [][0]


def _grad(model, x, y, reduction="sum"):
    x = x.clone().requires_grad_(True)
    lp = F.log_softmax(model(x), 1).gather(1, y[:, None])
    return torch.autograd.grad(lp.sum() if reduction == "sum" else lp.mean(), x)[0].flatten(1)


def l1_of_batch_mean(model, x, y):
    return _grad(model, x, y, "mean").abs().sum(1)


def l1_without_abs(model, x, y):
    return _grad(model, x, y).sum(1)


def l1_mean_over_pixels(model, x, y):
    return _grad(model, x, y).abs().mean(1)


def l2_instead(model, x, y):
    return _grad(model, x, y).norm(dim=1)


def l1_summed_over_batch(model, x, y):
    return _grad(model, x, y).abs().sum()


def l1_with_backward(model, x, y):
    x = x.clone().requires_grad_(True)
    F.log_softmax(model(x), 1).gather(1, y[:, None]).sum().backward()
    return x.grad.flatten(1).abs().sum(1)


def l1_via_cross_entropy(model, x, y):
    """A correct alternative: the cross-entropy's gradient is −g, of the same size."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad.flatten(1).abs().sum(1)


def fit_swapped(d, v):
    return tuple(np.polyfit(np.log(v), np.log(d), 1))


def fit_no_logs(d, v):
    return tuple(np.polyfit(d, v, 1))


def fit_log10(d, v):
    return tuple(np.polyfit(np.log10(d), np.log10(v), 1))


def fit_two_points(d, v):
    slope = (math.log(v[-1]) - math.log(v[0])) / (math.log(d[-1]) - math.log(d[0]))
    return slope, math.log(v[0]) - slope * math.log(d[0])


def fit_slope_only(d, v):
    return np.polyfit(np.log(d), np.log(v), 1)[0]


@pytest.mark.parametrize("check,fn", [
    (check_input_gradient_l1, scaling.input_gradient_l1),
    (check_input_gradient_l1, l1_via_cross_entropy),
    (check_loglog_fit, scaling.loglog_fit),
    (check_loglog_fit, lambda d, v: tuple(np.polyfit(np.log(d), np.log(v), 1))),
], ids=["reference-l1", "cross-entropy-l1", "reference-fit", "polyfit"])
def test_correct_solutions_pass(check, fn, capsys):
    assert check(fn) is True
    out = capsys.readouterr().out
    assert out.startswith("✅") and check.__name__ in out


@pytest.mark.parametrize("check,fn,says", [
    (check_input_gradient_l1, _not_implemented, "not implemented"),
    (check_input_gradient_l1, _crashes, "IndexError"),
    (check_input_gradient_l1, l1_of_batch_mean, "batch *mean*"),
    (check_input_gradient_l1, l1_without_abs, "absolute value"),
    (check_input_gradient_l1, l1_mean_over_pixels, "the sum"),
    (check_input_gradient_l1, l2_instead, "ℓ2"),
    (check_input_gradient_l1, l1_summed_over_batch, "one number per example"),
    (check_input_gradient_l1, l1_with_backward, "parameter gradients"),
    (check_loglog_fit, _not_implemented, "not implemented"),
    (check_loglog_fit, fit_swapped, "the other way round"),
    (check_loglog_fit, fit_no_logs, "natural logarithms"),
    (check_loglog_fit, fit_log10, "base-10"),
    (check_loglog_fit, fit_two_points, "least-squares"),
    (check_loglog_fit, fit_slope_only, "pair"),
], ids=lambda v: getattr(v, "__name__", str(v)[:20]))
def test_mistakes_fail_without_raising_and_say_why(check, fn, says, capsys):
    assert check(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("❌") and check.__name__ in out
    assert says in out, out
