"""Attacks against oracles: closed forms on a linear model, torchattacks, direct computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from course_utils.attacks.apgd import StrongAttack, apgd, apgd_targeted
from course_utils.attacks import (
    L1_STEP_FRACTION,
    fgsm,
    margin_loss,
    pgd,
    project_l1,
    project_l2,
    project_linf,
    random_sign_noise,
    step_l1,
)
from course_utils.evaluate import accuracy
from course_utils.models import linear


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- FGSM: closed form
def _linear_problem(seed: int = 0, n: int = 16):
    """A float64 softmax-regression model and a batch with pixels at 0 and 1, so clipping matters."""
    g = _gen(seed)
    model = linear().double()
    with torch.no_grad():
        model[1].weight.copy_(0.05 * torch.randn(10, 784, generator=g, dtype=torch.float64))
        model[1].bias.copy_(torch.randn(10, generator=g, dtype=torch.float64))
    x = torch.rand(n, 1, 28, 28, generator=g, dtype=torch.float64)
    x[:, :, :4] = 0.0
    x[:, :, -4:] = 1.0
    y = torch.randint(0, 10, (n,), generator=g)
    return model, x, y


def _fgsm_by_hand(model, x, labels, eps, sign):
    """NumPy oracle: ∇x CE = Wᵀ(softmax(Wx + b) − onehot); x_adv = clip(x0 + sign·ε·sign(∇))."""
    w = model[1].weight.detach().numpy()
    b = model[1].bias.detach().numpy()
    flat = x.flatten(1).numpy()
    z = flat @ w.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad = (p - np.eye(10)[labels.numpy()]) @ w
    return np.clip(flat + sign * eps * np.sign(grad), 0.0, 1.0).reshape(x.shape)


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.3])
def test_fgsm_untargeted_equals_closed_form_on_linear_model(eps):
    """Oracle: x0 + ε·sign(Wᵀ(p − e_y)), clipped to [0, 1]."""
    model, x, y = _linear_problem(seed=1)
    got = fgsm(model, x, y, eps)
    np.testing.assert_allclose(got.numpy(), _fgsm_by_hand(model, x, y, eps, +1), rtol=0, atol=1e-12)


def test_fgsm_targeted_equals_closed_form_and_raises_target_probability():
    """Oracle: x0 − ε·sign(Wᵀ(p − e_t)) for target t; the target's mean log-probability goes up."""
    model, x, y = _linear_problem(seed=2)
    target = (y + 3) % 10
    eps = 0.02
    got = fgsm(model, x, target, eps, targeted=True)
    np.testing.assert_allclose(got.numpy(), _fgsm_by_hand(model, x, target, eps, -1), rtol=0, atol=1e-12)
    with torch.no_grad():
        before = model(x).log_softmax(1).gather(1, target[:, None]).mean()
        after = model(got).log_softmax(1).gather(1, target[:, None]).mean()
    assert after > before


# ----------------------------------------------------------------------------- PGD vs torchattacks
# Without a random start our PGD and torchattacks' run the same deterministic algorithm, so
# robust accuracy must agree to 1 point (it agrees exactly in practice). With random starts
# both use independent random draws: on 400 images the few borderline examples that depend
# on the start make the two accuracies differ by up to ~1 point (σ ≈ 0.5–1 point), so we allow 3.
# For ℓ2 the random starts are moreover drawn differently (torchattacks: radius ε·U;
# ours: uniform in the ball, radius ε·U^(1/d)), which is one more reason for the wider band.
@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_pgd_linf_matches_torchattacks_without_random_start(trained_cnn, eval_batch, eps):
    """Oracle: torchattacks.PGD(random_start=False) at the same ε, α, steps — within 1 point."""
    x, y = eval_batch
    steps, alpha = 10, 2.5 * eps / 10
    ours = pgd(trained_cnn, x, y, eps, alpha, steps, random_start=False)
    theirs = torchattacks.PGD(trained_cnn, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    ours_acc, theirs_acc = accuracy(trained_cnn, ours, y), accuracy(trained_cnn, theirs, y)
    assert theirs_acc < accuracy(trained_cnn, x, y) - 0.1  # the attack really bites at this ε
    assert abs(ours_acc - theirs_acc) <= 0.01


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_pgd_linf_matches_torchattacks_with_random_start(trained_cnn, eval_batch, eps):
    """Oracle: torchattacks.PGD(random_start=True) — within 3 points (independent random starts)."""
    x, y = eval_batch
    steps, alpha = 10, 2.5 * eps / 10
    ours = pgd(trained_cnn, x, y, eps, alpha, steps, random_start=True, generator=_gen(1))
    torch.manual_seed(1)
    theirs = torchattacks.PGD(trained_cnn, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    assert abs(accuracy(trained_cnn, ours, y) - accuracy(trained_cnn, theirs, y)) <= 0.03


@pytest.mark.parametrize("random_start,tol", [(False, 0.01), (True, 0.03)])
@pytest.mark.parametrize("eps", [1.0, 2.0])
def test_pgd_l2_matches_torchattacks(trained_cnn, eval_batch, eps, random_start, tol):
    """Oracle: torchattacks.PGDL2 at the same ε, α, steps (tolerance: see the comment above)."""
    x, y = eval_batch
    steps, alpha = 10, 2.5 * eps / 10
    ours = pgd(trained_cnn, x, y, eps, alpha, steps, norm=2, random_start=random_start, generator=_gen(2))
    torch.manual_seed(2)
    theirs = torchattacks.PGDL2(trained_cnn, eps=eps, alpha=alpha, steps=steps, random_start=random_start)(x, y)
    ours_acc, theirs_acc = accuracy(trained_cnn, ours, y), accuracy(trained_cnn, theirs, y)
    assert theirs_acc < accuracy(trained_cnn, x, y) - 0.1
    assert abs(ours_acc - theirs_acc) <= tol


# ----------------------------------------------------------------------------- PGD iterates
def _linf(t):
    return t.flatten(1).abs().amax(dim=1)


def _l2(t):
    return t.flatten(1).norm(dim=1)


def _next_iterate_by_hand(model, x, x0, y, eps, alpha, norm):
    """One PGD step written out: ascend the summed cross-entropy, project onto the ball, clip."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    with torch.no_grad():
        if norm == "inf":
            moved = x + alpha * g.sign()
            return torch.clamp(torch.minimum(torch.maximum(moved, x0 - eps), x0 + eps), 0, 1)
        moved = x + alpha * g / _l2(g).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = moved - x0
        scale = (eps / _l2(delta).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1)
        return torch.clamp(x0 + delta * scale, 0, 1)


@pytest.mark.parametrize("norm,eps,tol", [("inf", 0.3, 1e-6), (2, 2.0, 1e-5)])
def test_every_pgd_iterate_stays_in_ball_and_box_and_follows_the_update(trained_cnn, eval_batch, norm, eps, tol):
    """steps=k with one generator seed gives the k-th iterate of one trajectory: check each of them."""
    x0, y = eval_batch[0][:64], eval_batch[1][:64]
    alpha = eps / 2  # large steps, so the iterates press against the ball
    dist = _linf if norm == "inf" else _l2
    iterates = [pgd(trained_cnn, x0, y, eps, alpha, k, norm=norm, generator=_gen(5)) for k in range(7)]
    for k, xk in enumerate(iterates):
        assert dist(xk - x0).max() <= eps + tol, f"iterate {k} left the ball"
        assert xk.min() >= 0 and xk.max() <= 1, f"iterate {k} left [0, 1]"
        if k:
            expected = _next_iterate_by_hand(trained_cnn, iterates[k - 1], x0, y, eps, alpha, "inf" if norm == "inf" else 2)
            torch.testing.assert_close(xk, expected, rtol=0, atol=1e-5)
    # The ball constraint was actually active (for ℓ2 clipping to [0, 1] shortens δ a little).
    assert dist(iterates[-1] - x0).max() >= 0.9 * eps


# ----------------------------------------------------------------------------- random starts
def _random_starts(norm, eps, n=4000):
    """steps=0 returns the (projected) random start; x0 = 0.5 keeps clipping to [0, 1] out of play."""
    x0 = torch.full((n, 1, 2, 2), 0.5)
    out = pgd(nn.Flatten(), x0, torch.zeros(n, dtype=torch.int64), eps, 0.01, 0, norm=norm, generator=_gen(11))
    return out - x0


def test_linf_random_start_is_uniform_in_the_cube():
    """Oracle: each pixel of δ ~ U(−ε, ε): quartiles at −ε/2, 0, ε/2, and never beyond ±ε."""
    eps = 0.1
    delta = _random_starts("inf", eps).flatten()
    assert delta.abs().max() <= eps + 1e-7
    quartiles = torch.quantile(delta, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(quartiles, torch.tensor([-eps / 2, 0.0, eps / 2]), rtol=0, atol=0.02 * eps)


def test_l2_random_start_is_uniform_in_the_ball():
    """Oracle: in d = 4 dimensions P(‖δ‖ ≤ tε) = t⁴, and the direction has mean zero."""
    eps = 0.3
    delta = _random_starts(2, eps).flatten(1)
    r = delta.norm(dim=1)
    assert r.max() <= eps + 1e-6
    for t in (0.5, 0.8, 0.95):
        assert (r <= t * eps).float().mean().item() == pytest.approx(t**4, abs=0.03)
    assert (delta / r[:, None]).mean(dim=0).abs().max() < 0.05


# ----------------------------------------------------------------------------- PGD vs FGSM, restarts
def test_pgd_is_stronger_than_fgsm(trained_cnn, eval_batch):
    """Oracle: FGSM is one point of PGD's search space, so PGD's loss is higher and its accuracy lower."""
    x, y = eval_batch
    eps = 0.1
    x_fgsm = fgsm(trained_cnn, x, y, eps)
    x_pgd = pgd(trained_cnn, x, y, eps, 2.5 * eps / 10, 10, generator=_gen(0))
    with torch.no_grad():
        loss_fgsm = F.cross_entropy(trained_cnn(x_fgsm), y).item()
        loss_pgd = F.cross_entropy(trained_cnn(x_pgd), y).item()
    assert loss_pgd >= loss_fgsm
    assert accuracy(trained_cnn, x_pgd, y) <= accuracy(trained_cnn, x_fgsm, y)


@pytest.mark.parametrize("norm,eps", [("inf", 0.1), (2, 1.0), (1, 8.0)])
def test_restarts_keep_the_worst_case_per_example(trained_cnn, eval_batch, norm, eps):
    """With one seed, restart 1 of restarts=3 *is* the restarts=1 run: nothing it fooled may come back."""
    x, y = eval_batch[0][:200], eval_batch[1][:200]
    alpha, steps = 2.5 * eps / 5, 5
    one = pgd(trained_cnn, x, y, eps, alpha, steps, norm=norm, restarts=1, generator=_gen(7))
    three = pgd(trained_cnn, x, y, eps, alpha, steps, norm=norm, restarts=3, generator=_gen(7))
    with torch.no_grad():
        logits_one, logits_three = trained_cnn(one), trained_cnn(three)
    fooled_one = logits_one.argmax(1) != y
    fooled_three = logits_three.argmax(1) != y
    assert fooled_one.any()
    assert not (fooled_one & ~fooled_three).any()
    # Among examples neither run fooled, the kept one has at least the first run's loss.
    neither = ~fooled_one & ~fooled_three
    loss_one = F.cross_entropy(logits_one, y, reduction="none")
    loss_three = F.cross_entropy(logits_three, y, reduction="none")
    assert (loss_three[neither] >= loss_one[neither] - 1e-5).all()
    assert accuracy(trained_cnn, three, y) <= accuracy(trained_cnn, one, y)


# ----------------------------------------------------------------------------- projections
def test_project_l2_against_direct_computation():
    """Oracle: outside the ball x0 + δ·ε/‖δ‖₂, inside unchanged (x0 = 0.5 keeps the box inactive)."""
    g = _gen(3)
    x0 = torch.full((6, 1, 4, 4), 0.5)
    eps = 0.5
    delta = torch.randn(x0.shape, generator=g)
    delta = delta / _l2(delta).view(-1, 1, 1, 1) * torch.tensor([0.1, 0.3, 0.49, 0.8, 1.5, 3.0]).view(-1, 1, 1, 1)
    got = project_l2(x0 + delta, x0, eps)
    for i in range(6):
        norm = math.sqrt(float((delta[i] ** 2).sum()))
        expected = x0[i] + delta[i] * eps / norm if norm > eps else x0[i] + delta[i]
        torch.testing.assert_close(got[i], expected, rtol=0, atol=1e-6)


def test_project_l2_output_in_ball_and_box_and_clips_after_shrinking():
    """Oracle: clip(x0 + δ·min(1, ε/‖δ‖₂), 0, 1) in NumPy; the result stays in the ball and in [0, 1]."""
    g = _gen(4)
    x0 = torch.rand(8, 1, 5, 5, generator=g)
    x = x0 + 2.0 * torch.randn(x0.shape, generator=g)
    eps = 1.0
    got = project_l2(x, x0, eps)
    d = (x - x0).flatten(1).numpy().astype(np.float64)
    scale = np.minimum(1.0, eps / np.linalg.norm(d, axis=1, keepdims=True))
    expected = np.clip(x0.flatten(1).numpy() + d * scale, 0, 1).reshape(x.shape)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    assert (_l2(got - x0) <= eps + 1e-5).all()
    assert got.min() >= 0 and got.max() <= 1


def test_project_linf_against_per_pixel_numpy():
    """Oracle: for every pixel, min(max(x, x0 − ε), x0 + ε) clipped to [0, 1], written as a loop."""
    g = _gen(5)
    x0 = torch.rand(3, 1, 4, 4, generator=g)
    x = x0 + 0.8 * (torch.rand(x0.shape, generator=g) - 0.5) + 0.3 * torch.randn(x0.shape, generator=g)
    eps = 0.1
    got = project_linf(x, x0, eps).numpy().ravel()
    for i, (xi, x0i) in enumerate(zip(x.numpy().ravel().tolist(), x0.numpy().ravel().tolist())):
        expected = min(max(min(max(xi, x0i - eps), x0i + eps), 0.0), 1.0)
        assert got[i] == pytest.approx(expected, abs=1e-6), f"pixel {i}"


@pytest.mark.parametrize("project,eps", [(project_linf, 0.1), (project_l2, 0.7)])
def test_projections_are_idempotent(project, eps):
    """Oracle: a projection of a projected point changes nothing."""
    g = _gen(6)
    x0 = torch.rand(5, 1, 6, 6, generator=g)
    once = project(x0 + torch.randn(x0.shape, generator=g), x0, eps)
    assert not torch.equal(once, x0)
    torch.testing.assert_close(project(once, x0, eps), once, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- hygiene
ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, 0.1),
    "pgd_linf": lambda m, x, y: pgd(m, x, y, 0.1, 0.03, 3, generator=_gen(0)),
    "pgd_l2": lambda m, x, y: pgd(m, x, y, 1.0, 0.3, 3, norm=2, generator=_gen(0)),
    "pgd_l1": lambda m, x, y: pgd(m, x, y, 5.0, 2.0, 3, norm=1, generator=_gen(0)),
    "pgd_restarts": lambda m, x, y: pgd(m, x, y, 0.1, 0.03, 3, restarts=2, generator=_gen(0)),
    "pgd_targeted": lambda m, x, y: pgd(m, x, (y + 1) % 10, 0.1, 0.03, 3, targeted=True, generator=_gen(0)),
    "pgd_margin": lambda m, x, y: pgd(m, x, y, 0.1, 0.03, 3, loss_fn=margin_loss, generator=_gen(0)),
    "apgd_ce": lambda m, x, y: apgd(m, x, y, 0.1, 5, generator=_gen(0)),
    "apgd_dlr_l2": lambda m, x, y: apgd(m, x, y, 1.0, 5, norm=2, loss="dlr", generator=_gen(0)),
    "apgd_targeted": lambda m, x, y: apgd_targeted(m, x, y, 0.1, 5, targets=2, generator=_gen(0)),
    "strong": StrongAttack(0.1, steps=5, targets=2),
}


def _dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))


@pytest.fixture
def small_batch(eval_batch):
    return eval_batch[0][:16].clone(), eval_batch[1][:16].clone()


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_leaves_parameter_gradients_alone(trained_cnn, small_batch, name):
    """Oracle: grads that were None stay None; grads that existed are bit-for-bit unchanged."""
    x, y = small_batch
    trained_cnn.zero_grad(set_to_none=True)
    ATTACKS[name](trained_cnn, x, y)
    assert all(p.grad is None for p in trained_cnn.parameters())
    for p in trained_cnn.parameters():
        p.grad = torch.randn_like(p)
    before = [p.grad.clone() for p in trained_cnn.parameters()]
    ATTACKS[name](trained_cnn, x, y)
    for p, b in zip(trained_cnn.parameters(), before):
        assert torch.equal(p.grad, b)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_runs_in_eval_mode_and_restores_train_mode(small_batch, name):
    """A Dropout net in train mode: results are deterministic and equal the eval-mode ones; mode is restored."""
    x, y = small_batch
    net = _dropout_net()
    expected = ATTACKS[name](net.eval(), x, y)
    net.train()
    first, second = ATTACKS[name](net, x, y), ATTACKS[name](net, x, y)
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(first, second)
    assert torch.equal(first, expected)
    net.eval()
    ATTACKS[name](net, x, y)
    assert not any(m.training for m in net.modules())


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_returns_detached_and_leaves_input_alone(trained_cnn, small_batch, name):
    """The output is a new detached tensor even when x requires grad; x itself is not modified."""
    x, y = small_batch
    x_in = x.clone().requires_grad_(True)
    out = ATTACKS[name](trained_cnn, x_in, y)
    assert not out.requires_grad and out.grad_fn is None
    assert torch.equal(x_in.detach(), x)
    assert x_in.grad is None
    assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_works_under_no_grad_and_with_inference_tensors(trained_cnn, small_batch, name):
    """Oracle: the same output as a plain call, inside torch.no_grad() and for inference-mode inputs."""
    x, y = small_batch
    expected = ATTACKS[name](trained_cnn, x, y)
    assert not torch.equal(expected, x)
    with torch.no_grad():
        assert torch.equal(ATTACKS[name](trained_cnn, x, y), expected)
    with torch.inference_mode():
        x_inf, y_inf = x.clone(), y.clone()  # e.g. labels from evaluate.predict
    assert x_inf.is_inference() and y_inf.is_inference()
    assert torch.equal(ATTACKS[name](trained_cnn, x_inf, y_inf), expected)


# ----------------------------------------------------------------------------- bad inputs
@pytest.fixture
def tiny():
    g = _gen(8)
    torch.manual_seed(8)
    return linear(), torch.rand(4, 1, 28, 28, generator=g), torch.randint(0, 10, (4,), generator=g)


PGD_OK = dict(eps=0.1, alpha=0.02, steps=3)
BAD_PGD = [
    (dict(eps=-0.1), "^eps"),
    (dict(eps=float("nan")), "^eps"),
    (dict(eps=float("inf")), "^eps"),
    (dict(eps=1.5), "^eps"),
    (dict(alpha=0.0), "^alpha"),
    (dict(alpha=-0.01), "^alpha"),
    (dict(alpha=float("nan")), "^alpha"),
    (dict(steps=-1), "^steps"),
    (dict(steps=2.5), "^steps"),
    (dict(steps="3"), "^steps"),
    (dict(restarts=0), "^restarts"),
    (dict(restarts=2, random_start=False), "^restarts"),
    (dict(norm=3), "^norm"),
    (dict(norm="l0"), "^norm"),
    (dict(norm="euclid"), "^norm"),
]


@pytest.mark.parametrize("changes,match", BAD_PGD, ids=[str(c) for c, _ in BAD_PGD])
def test_pgd_rejects_bad_arguments(tiny, changes, match):
    """Each bad argument raises ValueError naming that argument."""
    model, x, y = tiny
    with pytest.raises(ValueError, match=match):
        pgd(model, x, y, **{**PGD_OK, **changes})


@pytest.mark.parametrize("eps,match", [(-0.1, "^eps"), (float("nan"), "^eps"), (1.5, "^eps")])
def test_fgsm_and_noise_reject_bad_eps(tiny, eps, match):
    model, x, y = tiny
    with pytest.raises(ValueError, match=match):
        fgsm(model, x, y, eps)
    with pytest.raises(ValueError, match=match):
        random_sign_noise(x, eps)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attacks_reject_bad_batches(tiny, attack):
    """Normalised inputs (outside [0, 1]) and mismatched batch sizes are refused, naming x or y."""
    model, x, y = tiny
    run = (lambda xx, yy: fgsm(model, xx, yy, 0.1)) if attack == "fgsm" else (lambda xx, yy: pgd(model, xx, yy, **PGD_OK))
    with pytest.raises(ValueError, match="^x must"):
        run((x - 0.1307) / 0.3081, y)
    with pytest.raises(ValueError, match="^x must"):
        run((x * 255).round().to(torch.uint8), y)
    with pytest.raises(ValueError, match="^y must"):
        run(x, y[:3])
    with pytest.raises(ValueError, match="^y must"):
        run(x, y[:, None])


def test_l2_budget_may_exceed_one(tiny):
    """The ε ≤ 1 rule is for ℓ∞ only: an ℓ2 budget of 3 is a normal MNIST setting."""
    model, x, y = tiny
    out = pgd(model, x, y, 3.0, 0.5, 3, norm=2, generator=_gen(0))
    assert (_l2(out - x) <= 3.0 + 1e-5).all()


# ----------------------------------------------------------------------------- losses and noise
def test_margin_loss_against_hand_computation():
    """max_{j≠y} z_j − z_y, worked out by hand (ties and negative logits included)."""
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0], [-2.0, -1.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([1, 0, 1, 2])
    expected = torch.tensor([2.0 - 3.0, 0.0 - 5.0, -1.0 - (-1.0), 0.5 - 0.0])
    torch.testing.assert_close(margin_loss(logits, y), expected)


def test_random_sign_noise_has_size_eps_where_not_clipped():
    """Oracle: |δ| = ε exactly on unclipped pixels, clipped ones sit at 0 or 1; both signs ≈ half."""
    g = _gen(9)
    x = torch.rand(10, 1, 20, 20, generator=g)
    eps = 0.1
    out = random_sign_noise(x, eps, generator=_gen(10))
    delta = (out - x).abs()
    inner = (x >= eps) & (x <= 1 - eps)
    torch.testing.assert_close(delta[inner], torch.full_like(delta[inner], eps), rtol=0, atol=1e-6)
    clipped = ~torch.isclose(delta, torch.full_like(delta, eps), atol=1e-6)
    assert ((out[clipped] == 0) | (out[clipped] == 1)).all()
    assert (delta <= eps + 1e-6).all() and out.min() >= 0 and out.max() <= 1
    up = (out > x)[inner].float().mean().item()
    assert 0.4 < up < 0.6
    assert torch.equal(out, random_sign_noise(x, eps, generator=_gen(10)))


# ----------------------------------------------------------------------------- ℓ1: projection
def _project_l1_by_slsqp(x, x0, eps):
    """Oracle: min ½‖x0 + p − m − x‖² over p, m ≥ 0 with Σ(p + m) ≤ ε and 0 ≤ x0 + p − m ≤ 1.

    Splitting δ = p − m makes the ℓ1 ball a linear constraint, so SLSQP solves this smooth
    convex QP to machine precision; nothing in it shares code with `project_l1`.
    """
    from scipy.optimize import minimize

    x, x0 = x.ravel().astype(np.float64), x0.ravel().astype(np.float64)
    d = x.size
    split = np.hstack([np.eye(d), -np.eye(d)])
    residual = lambda z: x0 + split @ z - x
    constraints = [
        {"type": "ineq", "fun": lambda z: eps - z.sum(), "jac": lambda z: -np.ones(2 * d)},
        {"type": "ineq", "fun": lambda z: x0 + split @ z, "jac": lambda z: split},
        {"type": "ineq", "fun": lambda z: 1.0 - x0 - split @ z, "jac": lambda z: -split},
    ]
    result = minimize(
        lambda z: 0.5 * residual(z) @ residual(z), np.zeros(2 * d), jac=lambda z: split.T @ residual(z),
        bounds=[(0.0, None)] * (2 * d), constraints=constraints, method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    assert result.success, result.message
    return x0 + split @ result.x


def _l1_cases(seed: int, n: int):
    """Small problems of dims 3–20: x0 with pixels at 0 and 1, x far outside the box, budgets small to large."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        d = int(rng.integers(3, 21))
        x0 = rng.uniform(0, 1, d)
        x0[rng.random(d) < 0.3] = 0.0
        x0[rng.random(d) < 0.15] = 1.0
        x = x0 + rng.normal(0, float(rng.choice([0.05, 0.5, 2.0])), d)
        yield x, x0, float(rng.choice([0.0, 0.1, 0.5, 2.0, 8.0]))


@pytest.mark.parametrize("seed", range(4))
def test_project_l1_matches_a_qp_solver(seed):
    """Oracle: SLSQP on the split QP, to 1e-5, on 10 random problems per seed (float64)."""
    for x, x0, eps in _l1_cases(seed, 10):
        got = project_l1(torch.from_numpy(x)[None], torch.from_numpy(x0)[None], eps)[0].numpy()
        np.testing.assert_allclose(got, _project_l1_by_slsqp(x, x0, eps), rtol=0, atol=1e-5, err_msg=f"ε={eps}")


def test_project_l1_special_cases_by_hand():
    """Inside the ball and box: unchanged. Box-only violation: just the clip. Ball only: soft-thresholding."""
    x0 = torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    inside = torch.tensor([[0.6, 0.4, 0.5, 0.55]], dtype=torch.float64)
    torch.testing.assert_close(project_l1(inside, x0, 1.0), inside, rtol=0, atol=1e-12)
    # ‖clip(x) − x0‖₁ = 0.5 + 0.5 = 1 ≤ ε: the box alone is active.
    boxed = torch.tensor([[1.7, -0.3, 0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(project_l1(boxed, x0, 1.0), torch.tensor([[1.0, 0.0, 0.5, 0.5]], dtype=torch.float64))
    # δ = (0.3, −0.2, 0.1, 0): soft-threshold at λ = 0.1 gives (0.2, −0.1, 0, 0), ‖·‖₁ = 0.3.
    ball = x0 + torch.tensor([[0.3, -0.2, 0.1, 0.0]], dtype=torch.float64)
    expected = x0 + torch.tensor([[0.2, -0.1, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(project_l1(ball, x0, 0.3), expected, rtol=0, atol=1e-12)
    # Ball-then-clip would give 0.5 + 0.25 = 0.75 for the first pixel; the intersection
    # spends the budget the clip frees: x0 = 0.9 can only rise 0.1, so the rest goes to pixel 2.
    x0 = torch.tensor([[0.9, 0.5]], dtype=torch.float64)
    x = x0 + torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(project_l1(x, x0, 0.5), torch.tensor([[1.0, 0.9]], dtype=torch.float64), rtol=0, atol=1e-12)


def test_project_l1_satisfies_the_kkt_conditions_on_mnist_sized_inputs():
    """Oracle: optimality, pixel by pixel. With v = x − x0 and r = v − δ there is one λ > 0 (the ball is
    active) such that: r_j = λ·sign(δ_j) where δ_j ≠ 0 and x_j is inside (0, 1); r_j·sign(δ_j) ≥ λ
    where δ_j ≠ 0 and x_j sits at 0 or 1; |v_j| ≤ λ where δ_j = 0 though x_j could move towards
    v_j; and ‖δ‖₁ = ε."""
    g = _gen(12)
    x0 = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64)
    x0[x0 < 0.5] = 0.0  # most MNIST pixels are black
    x = x0 + 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps = 10.0
    out = project_l1(x, x0, eps)
    for v, delta, xo, xz in zip((x - x0).flatten(1), (out - x0).flatten(1), out.flatten(1), x0.flatten(1)):
        r = v - delta
        free = (delta != 0) & (xo > 0) & (xo < 1)
        capped = (delta != 0) & ~free
        zero_with_room = (delta == 0) & torch.where(v > 0, xz < 1, xz > 0)
        assert free.any() and capped.any() and zero_with_room.any()
        lam = (r[free] * delta[free].sign()).mean()
        assert lam > 0 and delta.abs().sum().item() == pytest.approx(eps, rel=1e-9)
        torch.testing.assert_close(r[free], lam * delta[free].sign(), rtol=0, atol=1e-9)
        assert (r[capped] * delta[capped].sign() >= lam - 1e-9).all()
        assert (v[zero_with_room].abs() <= lam + 1e-9).all()


def test_project_l1_output_is_feasible_and_idempotent_in_float32():
    """‖x − x0‖₁ ≤ ε(1 + 1e-5) and 0 ≤ x ≤ 1, from tiny to huge violations; projecting twice changes nothing."""
    g = _gen(13)
    x0 = torch.rand(32, 1, 28, 28, generator=g)
    x0[x0 < 0.6] = 0.0
    for scale in (0.01, 0.3, 3.0):
        x = x0 + scale * torch.randn(x0.shape, generator=g)
        for eps in (0.5, 5.0, 40.0):
            once = project_l1(x, x0, eps)
            assert (_l1(once - x0) <= eps * (1 + 1e-5)).all(), (scale, eps)
            assert once.min() >= 0 and once.max() <= 1
            torch.testing.assert_close(project_l1(once, x0, eps), once, rtol=0, atol=1e-6)
    assert torch.equal(project_l1(x, x0, 0.0), x0)


# ----------------------------------------------------------------------------- ℓ1: step and start
def _l1(t):
    return t.flatten(1).abs().sum(dim=1)


def test_step_l1_moves_the_top_k_gradient_pixels_by_alpha_over_k():
    """Oracle: the k = 1 % largest |g| move by sign(g)·η/k; everything else stays; ‖step‖₁ = η."""
    g = _gen(14)
    x = torch.rand(5, 1, 28, 28, generator=g) * 0.8 + 0.1  # interior: nothing is blocked
    grad = torch.randn(x.shape, generator=g)
    alpha = 2.0
    k = max(1, int(L1_STEP_FRACTION * 784))
    step = (step_l1(x, grad, alpha) - x).flatten(1)
    torch.testing.assert_close(_l1(step), torch.full((5,), alpha), rtol=1e-6, atol=0)
    assert ((step != 0).sum(dim=1) == k).all()
    top = grad.flatten(1).abs().topk(k, dim=1).indices
    moved = torch.zeros_like(step, dtype=torch.bool).scatter(1, top, True)
    assert torch.equal(step != 0, moved)
    torch.testing.assert_close(step[moved], (grad.flatten(1).sign() * alpha / k)[moved])


def test_step_l1_skips_pixels_pinned_at_a_bound():
    """A pixel at 0 pushed down or at 1 pushed up cannot move: the step goes to the next-largest |g|."""
    x = torch.zeros(2, 1, 10, 10)  # d = 100 → k = 1
    x[1, 0, 0, :5] = 1.0
    grad = torch.zeros_like(x)
    grad[:, 0, 0, 0] = -5.0  # largest |g|, but sample 0 is at 0 (blocked) and sample 1 at 1 (free to go down)
    grad[:, 0, 0, 1] = 3.0   # sample 0: free to go up; sample 1: at 1 and pushed up, blocked
    grad[:, 0, 0, 2] = 1.0
    out = step_l1(x, grad, 0.5)
    expected = x.clone()
    expected[0, 0, 0, 1] += 0.5
    expected[1, 0, 0, 0] -= 0.5
    assert torch.equal(out, expected)
    # Nothing can move (all pixels at 0, all pushed down): the step is zero, not NaN.
    assert torch.equal(step_l1(torch.zeros(1, 1, 10, 10), -torch.ones(1, 1, 10, 10), 0.5), torch.zeros(1, 1, 10, 10))


def test_step_l1_spreads_alpha_over_fewer_pixels_when_fewer_can_move():
    """d = 400 → k = 4; only two pixels have a gradient, so each moves η/2 and ‖step‖₁ is still η."""
    x = torch.full((1, 1, 20, 20), 0.5)
    grad = torch.zeros_like(x)
    grad[0, 0, 3, 3], grad[0, 0, 7, 1] = 2.0, -1.0
    step = step_l1(x, grad, 1.0) - x
    assert (step != 0).sum() == 2
    assert step[0, 0, 3, 3] == 0.5 and step[0, 0, 7, 1] == -0.5


def test_l1_random_start_is_uniform_in_the_ball():
    """Oracle: in d = 4, P(‖δ‖₁ ≤ tε) = t⁴, and |δ_1|/‖δ‖₁ ~ Beta(1, 3) (uniform on the ℓ1 sphere)."""
    eps = 0.3
    delta = _random_starts(1, eps).flatten(1)
    r = delta.abs().sum(dim=1)
    assert r.max() <= eps + 1e-6
    for t in (0.5, 0.8, 0.95):
        assert (r <= t * eps).float().mean().item() == pytest.approx(t**4, abs=0.03)
    share = delta[:, 0].abs() / r
    for s in (0.1, 0.25, 0.5):
        assert (share <= s).float().mean().item() == pytest.approx(1 - (1 - s) ** 3, abs=0.03)
    assert (delta / r[:, None]).mean(dim=0).abs().max() < 0.02


# ----------------------------------------------------------------------------- ℓ1: PGD
def test_every_l1_pgd_iterate_stays_in_ball_and_box(linear_mnist_300):
    """steps=k with one seed gives the k-th iterate of one trajectory: each lies in the ℓ1 ball ∩ [0, 1]."""
    model, x0, y = linear_mnist_300
    x0, y = x0[:64], y[:64]
    eps = 6.0
    for k in range(6):
        xk = pgd(model, x0, y, eps, eps / 2, k, norm=1, generator=_gen(15))
        assert _l1(xk - x0).max() <= eps * (1 + 1e-5), f"iterate {k} left the ball"
        assert xk.min() >= 0 and xk.max() <= 1, f"iterate {k} left [0, 1]"
    assert _l1(xk - x0).median() >= 0.99 * eps  # the ball constraint is active


def test_l1_pgd_beats_random_l1_noise_of_the_same_size(linear_mnist_300):
    """Oracle: at ε = 8 random ℓ1 noise leaves accuracy alone; PGD-ℓ1 at least halves it.

    The noise is a random point on the ℓ1 sphere with each pixel's sign turned towards the
    inside of [0, 1], so that clipping does not shrink it (half of a plain random start on
    MNIST's black background is clipped away).
    """
    model, x, y = linear_mnist_300
    eps = 8.0
    clean = accuracy(model, x, y)
    start = pgd(model, x, y, eps, 1.0, 0, norm=1, generator=_gen(16)) - x
    inward = start.abs() * torch.where(x < 0.5, 1.0, -1.0)
    noise = project_l1(x + eps * inward / _l1(inward).view(-1, 1, 1, 1), x, eps)
    attacked = pgd(model, x, y, eps, 2.5 * eps / 10, 10, norm=1, generator=_gen(16))
    assert _l1(noise - x).min() >= 0.99 * eps  # the noise really is of size ε
    assert accuracy(model, noise, y) >= clean - 0.03
    assert accuracy(model, attacked, y) <= clean / 2
    # More steps, lower accuracy: the step size 2.5ε/steps works for ℓ1 as well.
    five = pgd(model, x, y, eps, 2.5 * eps / 5, 5, norm=1, generator=_gen(16))
    assert accuracy(model, attacked, y) <= accuracy(model, five, y)


@pytest.mark.parametrize("norm", [1, "1", "l1", "L1", 1.0])
def test_pgd_accepts_every_spelling_of_l1(tiny, norm):
    model, x, y = tiny
    out = pgd(model, x, y, 3.0, 1.0, 3, norm=norm, generator=_gen(0))
    assert torch.equal(out, pgd(model, x, y, 3.0, 1.0, 3, norm=1, generator=_gen(0)))
    assert (_l1(out - x) <= 3.0 * (1 + 1e-5)).all()


def test_unknown_norm_error_lists_the_norms(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match=r"^norm must be 'inf', 2 or 1, got 'l0'"):
        pgd(model, x, y, 1.0, 0.5, 2, norm="l0")


def test_pgd_linf_box_clamp_equals_project_linf():
    """PGD clamps to the precomputed box [max(x0 − ε, 0), min(x0 + ε, 1)]; that must be project_linf exactly."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(50, 1, 6, 6, generator=g)
    x0[:10] = x0[:10].round()  # pixels exactly at 0 and 1, where the two clips interact
    x = x0 + 0.6 * torch.randn(50, 1, 6, 6, generator=g)
    for eps in (0.0, 0.05, 0.3, 1.0):
        box = torch.clamp(x, (x0 - eps).clamp(min=0), (x0 + eps).clamp(max=1))
        assert torch.equal(box, project_linf(x, x0, eps))


# ----------------------------------------------------------------------------- one budget per image
def test_per_image_budgets_equal_separate_calls(trained_cnn, eval_batch):
    """Oracle: FGSM and ℓ∞ PGD with a tensor of budgets give, image by image, the scalar-budget answer."""
    x, y = eval_batch[0][:6], eval_batch[1][:6]
    eps = torch.tensor([0.0, 0.02, 0.05, 0.1, 0.2, 0.3])
    together = fgsm(trained_cnn, x, y, eps)
    no_start = pgd(trained_cnn, x, y, eps, 2.5 * eps / 5, 5, random_start=False)
    for i, e in enumerate(eps.tolist()):
        torch.testing.assert_close(together[i:i + 1], fgsm(trained_cnn, x[i:i + 1], y[i:i + 1], e))
        torch.testing.assert_close(no_start[i:i + 1], pgd(trained_cnn, x[i:i + 1], y[i:i + 1], e, 2.5 * e / 5 or 1e-9, 5,
                                                          random_start=False), atol=1e-6, rtol=0)
    with_start = pgd(trained_cnn, x, y, eps, 2.5 * eps / 5, 5, generator=_gen(0))
    assert (_linf(with_start - x) <= eps + 1e-6).all()


def test_per_image_budgets_are_checked(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match="^eps"):
        fgsm(model, x, y, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="^eps"):
        fgsm(model, x, y, torch.tensor([0.1, 0.2, 1.5, 0.1]))
    with pytest.raises(ValueError, match="ℓ∞ attacks only"):
        pgd(model, x, y, torch.full((4,), 0.5), 0.1, 2, norm=2)
    with pytest.raises(ValueError, match="^alpha"):
        pgd(model, x, y, 0.1, torch.tensor([0.1, -0.1, 0.1, 0.1]), 2)
