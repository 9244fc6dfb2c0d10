"""Interval bound propagation against oracles: points of the ball (random and found by PGD) never leave
the bounds; a single affine layer's bounds are its exact range (attained at corners); the margin bound
with the last layer folded in is sound and tighter; IBP training through the zoo certifies."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.attacks import pgd
from course_utils.certify import ibp
from course_utils.models import Normalize


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _conv_net(seed=0, normalize=True):
    torch.manual_seed(seed)
    layers = [Normalize([0.13], [0.31])] if normalize else []
    layers += [nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
               nn.Flatten(), nn.Linear(6 * 4 * 4, 20), nn.ReLU(), nn.Linear(20, 5)]
    return nn.Sequential(*layers).double()


def _images(n=6, seed=0, side=8):
    x = torch.rand(n, 1, side, side, generator=_gen(seed), dtype=torch.float64)
    x[:, :, :2] = 0.0  # pixels at the edge of [0, 1]: the box is clipped there
    return x


def _points_in_ball(x, eps, k, seed=0):
    g = _gen(seed)
    for _ in range(k):
        # Vertices are the extreme points; ±1 is exact in any dtype, so the points never leave the ball by rounding.
        corner = eps * torch.where(torch.rand(x.shape, generator=g, dtype=x.dtype) < 0.5, -1.0, 1.0).to(x.dtype)
        mixed = torch.where(torch.rand(x.shape, generator=g, dtype=x.dtype) < 0.3,
                            (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1) * eps, corner)
        yield (x + mixed).clamp(0, 1)


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.1, 0.3])
def test_every_point_of_the_ball_stays_inside_every_layers_bounds(eps):
    model, x = _conv_net(), _images()
    boxes = ibp.layer_bounds(model, *ibp.input_box(x, eps))
    for point in _points_in_ball(x, eps, 60):
        v = point
        for layer, (lo, hi) in zip(ibp.layers_of(model), boxes):
            v = layer(v)
            assert (v >= lo - 1e-9).all() and (v <= hi + 1e-9).all()


def test_pgd_points_that_push_each_logit_stay_inside_the_bounds():
    """PGD maximising and minimising each logit in turn: the most extreme outputs an attack reaches are in the box."""
    model, x, eps = _conv_net(1).float(), _images(8, 1).float(), 0.1
    lo, hi = ibp.logit_bounds(model, x, eps)
    for k in range(5):
        for sign in (1.0, -1.0):
            loss = lambda logits, y, k=k, sign=sign: sign * logits[:, k]  # ascent on ±z_k
            adv = pgd(model, x, torch.zeros(8, dtype=torch.long), eps, 0.02, 30, loss_fn=loss, generator=_gen(k))
            z = model(adv)[:, k]
            assert (z <= hi[:, k] + 1e-5).all() and (z >= lo[:, k] - 1e-5).all()


def test_a_single_affine_layer_is_bounded_exactly_its_range_is_attained_at_corners():
    g = _gen(3)
    w, b = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    lower = torch.rand(2, 3, generator=g, dtype=torch.float64)
    upper = lower + torch.rand(2, 3, generator=g, dtype=torch.float64)
    lo, hi = ibp.interval_linear(w, b, lower, upper)
    corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=torch.float64)
    for i in range(2):
        values = F.linear(lower[i] + corners * (upper[i] - lower[i]), w, b)  # 8 corners × 4 outputs
        assert torch.allclose(lo[i], values.min(0).values) and torch.allclose(hi[i], values.max(0).values)


def test_a_convolution_and_normalize_are_bounded_exactly_as_the_same_affine_map_written_densely():
    model = nn.Sequential(Normalize([0.5], [0.25]), nn.Conv2d(1, 2, 3, stride=2, padding=1)).double()
    x = _images(3, 4, side=6)
    lo, hi = ibp.logit_bounds(model, x, 0.05)
    flat = lambda v: model(v.view(-1, 1, 6, 6)).flatten(1)
    bias = flat(torch.zeros(1, 36, dtype=torch.float64))[0]
    weight = flat(torch.eye(36, dtype=torch.float64)).T - bias[:, None]
    l0, u0 = ibp.input_box(x, 0.05)
    dense_lo, dense_hi = ibp.interval_linear(weight, bias, l0.flatten(1), u0.flatten(1))
    assert torch.allclose(lo.flatten(1), dense_lo) and torch.allclose(hi.flatten(1), dense_hi)


def test_the_margin_bound_is_sound_and_tighter_than_subtracting_logit_bounds():
    model, x = _conv_net(2), _images(10, 2)
    y = model(x).argmax(1)
    eps = 0.03
    margins = ibp.margin_lower_bounds(model, x, y, eps)
    lo, hi = ibp.logit_bounds(model, x, eps)
    naive = lo.gather(1, y[:, None]) - hi
    others = torch.ones_like(margins, dtype=torch.bool).scatter(1, y[:, None], False)
    assert (margins[others] >= naive[others] - 1e-9).all() and (margins[others] > naive[others] + 1e-6).any()
    assert (margins.gather(1, y[:, None]) == 0).all()
    for point in _points_in_ball(x, eps, 200, seed=5):
        z = model(point)
        assert (z.gather(1, y[:, None]) - z >= margins - 1e-9).all()


def test_certified_images_survive_a_strong_pgd_and_uncertifiable_ones_are_reported():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 30), nn.ReLU(), nn.Linear(30, 3)).float()
    x = torch.rand(200, 1, 4, 4, generator=_gen(7))
    y = model(x).argmax(1)
    for eps in (0.005, 0.02, 0.05):
        ok = ibp.certified(model, x, y, eps)
        adv = pgd(model, x, y, eps, eps / 4, 40, restarts=3, generator=_gen(1))
        broken = model(adv).argmax(1) != y
        assert not (ok & broken).any(), "IBP certified a digit that PGD broke"
    assert ibp.certified(model, x, y, 0.0).all() and not ibp.certified(model, x, y, 0.5).all()
    assert ibp.certified_accuracy(model, x, y, 0.005) >= ibp.certified_accuracy(model, x, y, 0.05)


def test_a_misclassified_image_is_never_certified():
    model, x = _conv_net(3), _images(6, 3)
    wrong = (model(x).argmax(1) + 1) % 5
    assert not ibp.certified(model, x, wrong, 0.0).any()


def test_the_ibp_loss_is_the_clean_loss_at_kappa_one_and_bounds_the_loss_in_the_ball():
    model, x = _conv_net(4), _images(6, 4)
    y = torch.arange(6) % 5
    loss, logits = ibp.ibp_loss(model, x, y, 0.1, 1.0)
    assert torch.allclose(loss, F.cross_entropy(model(x), y)) and torch.equal(logits, model(x))
    worst = F.cross_entropy(ibp.worst_case_logits(model, x, y, 0.05), y, reduction="none")
    for point in _points_in_ball(x, 0.05, 50, seed=9):
        assert (F.cross_entropy(model(point), y, reduction="none") <= worst + 1e-9).all()
    mixed, _ = ibp.ibp_loss(model, x, y, 0.05, 0.5)
    assert torch.allclose(mixed, 0.5 * F.cross_entropy(model(x), y) + 0.5 * worst.mean())
    mixed.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unsupported_layers_and_bad_budgets_are_refused_by_name():
    x = _images(2).float()
    with pytest.raises(ValueError, match="MaxPool2d"):
        ibp.logit_bounds(nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), x, 0.1)
    with pytest.raises(ValueError, match="Tanh"):
        ibp.logit_bounds(nn.Sequential(nn.Flatten(), nn.Tanh()), x, 0.1)
    with pytest.raises(ValueError, match="eps"):
        ibp.input_box(x, -0.1)
    with pytest.raises(ValueError, match="eps"):
        ibp.input_box(x, 2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ibp.input_box(x + 1, 0.1)
    with pytest.raises(ValueError, match="kappa"):
        ibp.ibp_loss(_conv_net().float(), x, torch.zeros(2, dtype=torch.long), 0.1, 1.5)


def test_fit_takes_an_objective_or_an_attack_not_both():
    from course_utils.train import fit

    model, x, y = _conv_net().float(), _images(8).float(), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="objective"):
        fit(model, x, y, epochs=1, attack=lambda m, a, b: a, objective=lambda m, a, b: (m(a).sum(), m(a)), progress=False)


def test_ibp_training_through_the_zoo_certifies_far_more_than_standard_training(mnist, tmp_path, monkeypatch):
    """A small MLP on 1,000 digits: IBP training certifies many digits at ε = 0.05, the same MLP trained
    normally almost none (measured: ~70 % against ~0 %; the thresholds leave wide margins)."""
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    from course_utils.config import get_profile
    from course_utils.zoo import Recipe, ibp_schedule, trained_model

    x_train, y_train, x_test, y_test = mnist
    profile = get_profile("fast").replace(n_train=1000, batch_size=100)
    x_eval, y_eval = x_test[:300], y_test[:300]
    certified = {}
    for method in ("standard", "ibp"):
        recipe = Recipe(method, 0.05, 6, ramp=0.5, monitor=False, model="mlp", lr_peak=5e-3)
        model, _ = trained_model(recipe, profile, x_train[:1000], y_train[:1000], progress=False)
        certified[method] = ibp.certified_accuracy(model, x_eval, y_eval, 0.05)
    assert certified["standard"] < 0.1 and certified["ibp"] > 0.4, certified


def test_the_ibp_schedule_warms_up_then_ramps_eps_and_kappa_together():
    from course_utils.zoo import IBP_WARMUP, Recipe, ibp_schedule

    schedule = ibp_schedule(Recipe("ibp", 0.2, 4, ramp=0.5, monitor=False))
    assert schedule(0.0).keywords == {"eps": 0.0, "kappa": 1.0}  # the warm-up is clean training
    half = schedule(IBP_WARMUP + 0.25).keywords
    assert half["eps"] == pytest.approx(0.1) and half["kappa"] == pytest.approx(0.75)
    assert schedule(0.99).keywords == {"eps": 0.2, "kappa": 0.5}
