"""The exact MILP verifier against oracles: brute force over activation patterns, the model itself, IBP and PGD."""
import copy
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import OptimizeResult, linprog
from torch import nn

from course_utils.attacks import margin_loss, pgd
from course_utils.certify import ibp
from course_utils.certify.milp import Verification, _interpret, affine_form, unstable_relus, verify, verify_batch
from course_utils.models import Normalize, linear, mlp


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_net(seed: int, widths=(4, 6, 5, 3), scale: float = 1.0) -> nn.Sequential:
    """Flatten → Linear/ReLU … → Linear with N(0, scale²/fan_in) weights: margins of order 1, not 0.1."""
    g = _gen(seed)
    layers = [nn.Flatten()]
    for fan_in, fan_out in zip(widths, widths[1:]):
        layer = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(fan_out, fan_in, generator=g) * scale / fan_in ** 0.5)
            layer.bias.copy_(torch.randn(fan_out, generator=g) * 0.3)
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def _predicted(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def _margins(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return -margin_loss(model(x), y)


# ----------------------------------------------------------------------------- the brute-force oracle
def _dense_maps(model: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of every Linear layer, read off the weights (the oracle's own route, not `affine_form`)."""
    return [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
            for m in model if isinstance(m, nn.Linear)]


def _oracle_bounds(maps, lower, upper):
    """Interval bounds of every hidden pre-activation, by corners (not IBP's centre/radius form)."""
    boxes = []
    for weight, bias in maps[:-1]:
        pos, neg = np.clip(weight, 0, None), np.clip(weight, None, 0)
        lo, hi = pos @ lower + neg @ upper + bias, pos @ upper + neg @ lower + bias
        boxes.append((lo, hi))
        lower, upper = np.clip(lo, 0, None), np.clip(hi, 0, None)
    return boxes


def _brute_force_min_margin(maps, x0: np.ndarray, eps: float, y: int) -> tuple[float, int]:
    """The exact min over the ball ∩ [0, 1] of z_y − z_j over j ≠ y, and the number of unstable units.

    Every activation pattern of the unstable units makes the network one linear function of x on the
    polytope where the pre-activations have the pattern's signs; an LP per pattern and class, the
    smallest feasible optimum is the minimum (the polytopes cover the ball).
    """
    lower, upper = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    boxes = _oracle_bounds(maps, lower, upper)
    free = [(k, i) for k, (lo, hi) in enumerate(boxes) for i in np.flatnonzero((lo < 0) & (hi > 0))]
    assert len(free) <= 12, "the oracle enumerates 2^n patterns"
    best = np.inf
    for bits in itertools.product([0.0, 1.0], repeat=len(free)):
        signs = [(lo >= 0).astype(float) for lo, _ in boxes]
        for (k, i), bit in zip(free, bits):
            signs[k][i] = bit
        a, c = np.eye(len(x0)), np.zeros(len(x0))  # the current layer as a @ x + c
        a_ub, b_ub = [], []
        for (weight, bias), s in zip(maps[:-1], signs):
            a, c = weight @ a, weight @ c + bias
            flip = np.where(s > 0, -1.0, 1.0)  # active: −ẑ ≤ 0; inactive: ẑ ≤ 0
            a_ub.append(flip[:, None] * a)
            b_ub.append(-flip * c)
            a, c = s[:, None] * a, s * c
        weight, bias = maps[-1]
        a, c = weight @ a, weight @ c + bias
        for j in range(len(c)):
            if j == y:
                continue
            res = linprog(a[y] - a[j], A_ub=np.vstack(a_ub), b_ub=np.concatenate(b_ub),
                          bounds=list(zip(lower, upper)), method="highs")
            if res.status == 0:
                best = min(best, res.fun + c[y] - c[j])
            else:
                assert res.status == 2, res.message  # an empty pattern, nothing else
    return best, len(free)


def test_verify_agrees_with_brute_force_over_activation_patterns():
    """Oracle: the exact minimum margin by enumerating patterns; same decision, same minimum when robust."""
    outcomes = []
    for seed in range(5):
        model = _random_net(seed)
        x0 = torch.rand(1, 1, 2, 2, generator=_gen(100 + seed))
        y = int(_predicted(model, x0))
        for eps in (0.05, 0.15, 0.3):
            exact, free = _brute_force_min_margin(_dense_maps(model), x0.flatten().double().numpy(), eps, y)
            result = verify(model, x0, y, eps)
            assert result.unstable == free
            assert result.robust == (exact >= 0), (seed, eps, exact, result)
            if result.robust:
                assert result.min_margin == pytest.approx(exact, abs=1e-6), (seed, eps)
                assert result.status == "robust" and result.adversarial is None
            else:
                assert result.min_margin < 0 and result.adversarial is not None
            outcomes.append(result.robust)
    assert True in outcomes and False in outcomes  # both branches were exercised


def test_verify_agrees_with_brute_force_on_a_normalised_conv_net():
    """The conv net's dense maps for the oracle come from autograd's Jacobian, not from `affine_form`'s probing."""
    torch.manual_seed(7)
    model = nn.Sequential(Normalize([0.5], [0.5]), nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    ref = copy.deepcopy(model).double()
    first = lambda v: ref[3](ref[1](ref[0](v.view(1, 1, 4, 4)))).flatten()  # Normalize → Conv2d → Flatten
    zero = torch.zeros(16, dtype=torch.float64)
    maps = [(torch.autograd.functional.jacobian(first, zero).numpy(), first(zero).detach().numpy())]
    maps += _dense_maps(model)
    outcomes = []
    for seed in range(3):
        x0 = torch.rand(1, 1, 4, 4, generator=_gen(200 + seed))
        y = int(_predicted(model, x0))
        for eps in (0.02, 0.1):
            exact, _ = _brute_force_min_margin(maps, x0.flatten().double().numpy(), eps, y)
            result = verify(model, x0, y, eps)
            assert result.robust == (exact >= 0), (seed, eps, exact, result)
            if result.robust:
                assert result.min_margin == pytest.approx(exact, abs=1e-6)
            outcomes.append(result.robust)
    assert True in outcomes


def test_verify_on_a_linear_model_finds_the_closed_form_minimum():
    """Oracle: min over the box of (w_y − w_j)·x + b_y − b_j is at the corner that follows the signs of w_y − w_j."""
    torch.manual_seed(3)
    model = linear(16, 5).eval()
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    for seed in range(4):
        x0 = torch.rand(1, 1, 4, 4, generator=_gen(400 + seed))
        y = int(_predicted(model, x0))
        lower, upper = (x0.double() - 0.05).clamp(0, 1).flatten(), (x0.double() + 0.05).clamp(0, 1).flatten()
        diff = w[y] - w
        corners = torch.where(diff > 0, lower, upper)
        exact = min(float(diff[j] @ corners[j] + b[y] - b[j]) for j in range(5) if j != y)
        result = verify(model, x0, y, 0.05)
        assert result.unstable == 0 and result.robust == (exact >= 0)
        if result.robust:
            assert result.min_margin == pytest.approx(exact, abs=1e-6)
        else:  # the first class found below 0, not necessarily the lowest: a margin found, so ≥ the minimum
            assert exact - 1e-6 <= result.min_margin < 0


# ----------------------------------------------------------------------------- the affine form
def _run_maps(maps, x: torch.Tensor) -> torch.Tensor:
    v = x.flatten(1)
    for weight, bias in maps[:-1]:
        v = (v @ weight.T + bias).clamp(min=0)
    weight, bias = maps[-1]
    return v @ weight.T + bias


@pytest.mark.parametrize("make, shape, relus", [
    (lambda: mlp(16, hidden=10, classes=4), (1, 4, 4), 2),
    (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(27, 5)),
     (1, 6, 6), 1),
    (lambda: nn.Sequential(Normalize([0.1307], [0.3081]), nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2),
                           nn.ReLU(), nn.Flatten(), nn.Linear(8, 6), nn.Linear(6, 3)), (1, 6, 6), 1),
    (lambda: nn.Sequential(Normalize([0.5, 0.4], [0.2, 0.3]), nn.Flatten(), nn.Sequential(nn.Linear(18, 4), nn.ReLU()),
                           nn.Linear(4, 2)), (2, 3, 3), 1),
])
def test_affine_form_reproduces_the_model(make, shape, relus):
    """Oracle: the model itself in float64; consecutive affine layers become one map, one map per ReLU + 1."""
    torch.manual_seed(0)
    model = make()
    before = [p.clone() for p in model.parameters()]
    maps = affine_form(model, shape)
    assert len(maps) == relus + 1
    assert all(w.dtype == torch.float64 and b.shape == (w.shape[0],) for w, b in maps)
    assert maps[0][0].shape[1] == int(np.prod(shape))
    x = torch.rand(8, *shape, dtype=torch.float64, generator=_gen(1))
    with torch.no_grad():
        expected = model.double()(x)
    torch.testing.assert_close(_run_maps(maps, x), expected, rtol=1e-10, atol=1e-10)
    model.float()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # probing worked on a copy


def test_affine_form_rejects_what_is_not_piecewise_linear_or_ends_in_a_relu():
    with pytest.raises(ValueError, match="^model.*Tanh"):
        affine_form(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)), (1, 2, 2))
    with pytest.raises(ValueError, match="^model.*ReLU"):
        affine_form(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU()), (1, 2, 2))
    with pytest.raises(ValueError, match="^model must output one vector"):
        affine_form(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 4, 4))
    with pytest.raises(ValueError, match="^input_shape"):
        affine_form(mlp(4, 3, 2), (4,))


# ----------------------------------------------------------------------------- adversarial examples
def test_adversarial_examples_are_real():
    """Oracle: the float32 model. Inside the ball, in [0, 1], misclassified, and the margin the solver reports."""
    found = 0
    for seed in range(6):
        model = _random_net(seed, widths=(16, 10, 8, 4))
        x0 = torch.rand(1, 1, 4, 4, generator=_gen(300 + seed))
        y = int(_predicted(model, x0))
        eps = 0.2
        result = verify(model, x0, y, eps)
        if result.robust:
            continue
        found += 1
        x_adv = result.adversarial
        assert result.status == "not robust" and result.clean_correct
        assert x_adv.shape == x0.shape and x_adv.dtype == torch.float32 and x_adv.device == x0.device
        assert (x_adv - x0).abs().max() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert int(_predicted(model, x_adv)) != y
        assert result.min_margin < 0
        assert float(_margins(model, x_adv, torch.tensor([y]))) == pytest.approx(result.min_margin, abs=1e-4)
    assert found >= 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_verify_on_cuda_returns_its_adversarial_example_on_x0s_device():
    model = _random_net(1, widths=(16, 10, 8, 4))
    x0 = torch.rand(1, 1, 4, 4, generator=_gen(301))
    y = int(_predicted(model, x0))
    on_cpu = verify(model, x0, y, 0.2)
    on_gpu = verify(copy.deepcopy(model).cuda(), x0.cuda(), y, 0.2)
    assert on_gpu.robust == on_cpu.robust and on_gpu.min_margin == pytest.approx(on_cpu.min_margin, abs=1e-6)
    if not on_gpu.robust:
        assert on_gpu.adversarial.device == x0.cuda().device


def test_a_misclassified_clean_image_is_its_own_adversarial_example():
    model = _random_net(0)
    x0 = torch.rand(1, 1, 2, 2, generator=_gen(1))
    wrong = (int(_predicted(model, x0)) + 1) % 3
    result = verify(model, x0, wrong, 0.01)
    assert result.robust is False and not result.clean_correct and result.status == "misclassified"
    assert torch.equal(result.adversarial, x0) and result.adversarial is not x0
    assert result.min_margin < 0


# ----------------------------------------------------------------------------- soundness against IBP and PGD
def test_verify_is_between_ibp_and_pgd():
    """certified by IBP ⇒ robust by MILP ⇒ PGD (margin loss, restarts) finds nothing, and min_margin ≤ PGD's margin."""
    model = _random_net(11, widths=(16, 16, 12, 4), scale=1.5)
    x = torch.rand(16, 1, 4, 4, generator=_gen(12))
    y = _predicted(model, x)
    for eps in (0.02, 0.06):
        results = verify_batch(model, x, y, eps, progress=False)
        robust = torch.tensor([r.robust for r in results])
        assert all(r.robust is not None for r in results)
        certified = ibp.certified(model, x, y, eps)
        assert not (certified & ~robust).any()
        x_pgd = pgd(model, x, y, eps, eps / 8, 40, restarts=4, loss_fn=margin_loss, generator=_gen(13))
        margins = _margins(model, x_pgd, y)
        assert not ((margins < 0) & robust).any()
        for r, m in zip(results, margins.tolist()):
            assert r.min_margin <= m + 1e-5
        assert robust.any() and (~robust).any()
    assert (robust & ~certified).any()  # at the larger ε the exact verifier proves what IBP cannot


def test_verify_batch_matches_verify_image_by_image():
    model = _random_net(3, widths=(16, 8, 3))
    x = torch.rand(4, 1, 4, 4, generator=_gen(4))
    y = _predicted(model, x)
    results = verify_batch(model, x, y, 0.1, progress=False)
    assert len(results) == 4 and all(isinstance(r, Verification) for r in results)
    for i, r in enumerate(results):
        alone = verify(model, x[i:i + 1], int(y[i]), 0.1)
        assert (r.robust, r.unstable, r.status) == (alone.robust, alone.unstable, alone.status)
        assert r.min_margin == pytest.approx(alone.min_margin, abs=1e-9)
    with pytest.raises(ValueError, match="^y"):
        verify_batch(model, x, torch.full((4,), 3), 0.1, progress=False)


def test_exact_margin_false_decides_the_same_with_an_upper_bound_on_the_margin():
    """Skipping every class IBP rules out changes no decision; an IBP-certified image needs no solve at all."""
    model = _random_net(11, widths=(16, 16, 12, 4), scale=1.5)
    x = torch.rand(8, 1, 4, 4, generator=_gen(14))
    y = _predicted(model, x)
    eps = 0.02
    exact = verify_batch(model, x, y, eps, progress=False)
    quick = verify_batch(model, x, y, eps, exact_margin=False, progress=False)
    assert [r.robust for r in quick] == [r.robust for r in exact]
    certified = ibp.certified(model, x, y, eps)
    assert certified.any()
    clean = _margins(model, x, y)
    for e, q, c, m in zip(exact, quick, certified.tolist(), clean.tolist()):
        if e.robust:
            assert q.min_margin >= e.min_margin - 1e-9
        if c:  # nothing solved: the margin found is x0's own
            assert q.min_margin == pytest.approx(m, abs=1e-5) and q.status.startswith("robust")


# ----------------------------------------------------------------------------- time limits
def test_a_tiny_time_limit_gives_no_answer_or_a_right_one():
    """Oracle: PGD's adversarial examples. On digits PGD breaks, a short budget may say None, never robust."""
    model = _random_net(5, widths=(64, 64, 64, 10), scale=1.5)
    x = torch.rand(4, 1, 8, 8, generator=_gen(6))
    y = _predicted(model, x)
    eps = 0.1
    broken = _margins(model, pgd(model, x, y, eps, eps / 4, 20, loss_fn=margin_loss, generator=_gen(7)), y) < 0
    assert broken.sum() >= 2
    for i in np.flatnonzero(broken.numpy()):
        assert unstable_relus(model, x[i:i + 1], eps) >= 30
        for limit in (1e-3, 0.05):
            result = verify(model, x[i:i + 1], int(y[i]), eps, time_limit=limit)
            assert result.robust is not True
            if result.robust is None:
                assert result.status == "time limit" and result.adversarial is None
            else:
                assert int(_predicted(model, result.adversarial)) != int(y[i])


def _result(status, x=None, fun=None, bound=None):
    return OptimizeResult(status=status, x=x, fun=fun, mip_dual_bound=bound, message=f"status {status}")


def test_every_solver_status_is_read_for_what_it_proves():
    """Optimal: exact. Time limit: a point and/or a bound, neither exact. Infeasible, unbounded, other: errors."""
    optimal = _interpret(_result(0, np.array([0.5, 0.25, 9.0]), -1.0), 0.5, 2)
    assert (optimal.value, optimal.lower, optimal.exact) == (-0.5, -0.5, True) and optimal.x.tolist() == [0.5, 0.25]
    point = _interpret(_result(1, np.array([0.1, 0.2]), 2.0, 1.0), 0.5, 2)
    assert (point.value, point.lower, point.exact) == (2.5, 1.5, False)
    nothing = _interpret(_result(1, None, None, None), 0.5, 2)
    assert nothing.value is None and nothing.x is None and nothing.lower == -np.inf
    assert _interpret(_result(1, None, None, -np.inf), 0.0, 2).lower == -np.inf
    with pytest.raises(RuntimeError, match="infeasible"):
        _interpret(_result(2), 0.0, 2)
    with pytest.raises(RuntimeError, match="unbounded"):
        _interpret(_result(3), 0.0, 2)
    with pytest.raises(RuntimeError, match="status 4"):
        _interpret(_result(4), 0.0, 2)


# ----------------------------------------------------------------------------- unstable ReLUs
def test_unstable_relus_grow_with_eps_and_vanish_at_zero():
    model = _random_net(2, widths=(16, 12, 10, 4))
    x0 = torch.rand(1, 1, 4, 4, generator=_gen(8))
    counts = [unstable_relus(model, x0, eps) for eps in (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)]
    assert counts[0] == 0 and counts[-1] > 0
    assert counts == sorted(counts)
    assert counts[2] == verify(model, x0, int(_predicted(model, x0)), 0.03).unstable


# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("change, name", [
    (dict(eps=-0.1), "eps"),
    (dict(eps=1.5), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(x0=torch.full((1, 1, 2, 2), 1.5)), "x0"),
    (dict(x0=torch.rand(2, 1, 2, 2)), "x0"),
    (dict(x0=torch.rand(1, 4)), "x0"),
    (dict(y=3), "y"),
    (dict(y=-1), "y"),
    (dict(y=1.0), "y"),
    (dict(time_limit=0.0), "time_limit"),
    (dict(model=nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3))), "model"),
    (dict(model=nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 3))), "model"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(change, name):
    args = dict(model=_random_net(0), x0=torch.rand(1, 1, 2, 2, generator=_gen(0)), y=0, eps=0.1, time_limit=5.0)
    args.update(change)
    with pytest.raises(ValueError, match=f"^{name}"):
        verify(args.pop("model"), args.pop("x0"), args.pop("y"), args.pop("eps"), **args)


def test_unstable_relus_checks_its_inputs_too():
    with pytest.raises(ValueError, match="^x0"):
        unstable_relus(_random_net(0), torch.rand(2, 1, 2, 2), 0.1)
    with pytest.raises(ValueError, match="^eps"):
        unstable_relus(_random_net(0), torch.rand(1, 1, 2, 2), 2.0)
