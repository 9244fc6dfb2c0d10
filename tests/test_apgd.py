"""APGD and the strong evaluation against oracles: closed forms, the paper's schedule, torchattacks."""
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from course_utils.attacks.apgd import (
    StrongAttack,
    apgd,
    apgd_targeted,
    checkpoints,
    dlr_loss,
    target_classes,
    targeted_dlr_loss,
)
from course_utils.attacks import pgd
from course_utils.evaluate import accuracy, correct, robust_accuracy


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- losses
def test_dlr_loss_against_hand_computation_and_invariances():
    """Oracle: −(z_y − max_{j≠y} z_j)/(z_π1 − z_π3) by hand; unchanged by scaling and shifting the logits."""
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0], [0.0, 5.0, 2.0, 1.0], [1.0, 1.0, 0.5, 0.0]])
    y = torch.tensor([0, 2, 2])
    expected = torch.tensor([-(4 - 3) / (4 - 1), -(2 - 5) / (5 - 1), -(0.5 - 1) / (1 - 0.5)])
    torch.testing.assert_close(dlr_loss(z, y), expected)
    torch.testing.assert_close(dlr_loss(1e4 * z - 7, y), expected, rtol=1e-4, atol=1e-5)
    assert (dlr_loss(z, y) > 0).tolist() == (z.argmax(1) != y).tolist()  # positive exactly when misclassified


def test_targeted_dlr_loss_against_hand_computation():
    """Oracle: −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2), scale-invariant, rising as z_t grows."""
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    expected = torch.tensor([-(4 - 3) / (4 - 0.5 * (1 + 0))])
    torch.testing.assert_close(targeted_dlr_loss(z, y, t), expected)
    torch.testing.assert_close(targeted_dlr_loss(100 * z + 3, y, t), expected, rtol=1e-5, atol=1e-6)
    higher = z.clone()
    higher[0, 2] = 3.5
    assert targeted_dlr_loss(higher, y, t) > targeted_dlr_loss(z, y, t)


def test_dlr_losses_need_enough_classes():
    with pytest.raises(ValueError, match="3 classes"):
        dlr_loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="4 classes"):
        targeted_dlr_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), torch.ones(2, dtype=torch.int64))


def test_target_classes_are_ranked_by_clean_logit():
    z = torch.tensor([[0.1, 0.9, 0.5, 0.3], [2.0, 0.0, 1.0, 3.0]])
    assert target_classes(z, 1).tolist() == [1, 3]
    assert target_classes(z, 2).tolist() == [2, 0]
    assert target_classes(z, 4).tolist() == [0, 1]


# ----------------------------------------------------------------------------- the step-size schedule
def _paper_checkpoints(steps: int) -> list[int]:
    """Croce & Hein's recurrence written out: p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return [round(q * steps) for q in p[1:] if round(q * steps) <= steps]


def test_checkpoints_follow_the_papers_recurrence():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99] == _paper_checkpoints(100)
    assert checkpoints(200) == _paper_checkpoints(200)
    assert checkpoints(0) == []
    assert all(b > a for a, b in zip(checkpoints(37), checkpoints(37)[1:]))
    with pytest.raises(ValueError, match="^steps"):
        checkpoints(-1)


# ----------------------------------------------------------------------------- closed forms on linear models
def _two_class_linear(seed: int = 0, n: int = 32, interior: bool = False):
    """A float64 two-class linear model: its cross-entropy rises with the margin z_other − z_y, a linear
    function of x, so the worst point of the ball ∩ box has a closed form."""
    g = _gen(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(49, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, 49, generator=g, dtype=torch.float64))
        model[1].bias.zero_()
    x = torch.rand(n, 1, 7, 7, generator=g, dtype=torch.float64)
    if interior:
        x = 0.3 + 0.4 * x  # ℓ2 budgets below keep the box out of play
    y = torch.randint(0, 2, (n,), generator=g)
    w = model[1].weight.detach()
    direction = (w[1 - y] - w[y]).view(n, 1, 7, 7)  # ∇x of the margin, the same at every x
    return model, x, y, direction


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def test_apgd_linf_reaches_the_closed_form_optimum_of_a_linear_margin():
    """Oracle: the maximiser is x0 + ε·sign(∇margin), clipped to [0, 1] (a corner of ball ∩ box)."""
    model, x, y, direction = _two_class_linear(1)
    eps = 0.1
    optimum = (x + eps * direction.sign()).clamp(0, 1)
    out = apgd(model, x, y, eps, 20, generator=_gen(0))
    # Examples fooled early stop at their first fooling iterate; the others must reach the optimum.
    standing = correct(model, out, y)
    torch.testing.assert_close(_ce(model, out, y)[standing], _ce(model, optimum, y)[standing], rtol=1e-9, atol=1e-9)
    assert (correct(model, out, y) <= correct(model, optimum, y)).all()


def test_apgd_l2_reaches_the_closed_form_optimum_of_a_linear_margin():
    """Oracle: away from the box the maximiser is x0 + ε·∇margin/‖∇margin‖₂."""
    model, x, y, direction = _two_class_linear(2, interior=True)
    eps = 0.2
    optimum = x + eps * direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    out = apgd(model, x, y, eps, 50, norm=2, generator=_gen(0))
    standing = correct(model, out, y)
    torch.testing.assert_close(_ce(model, out, y)[standing], _ce(model, optimum, y)[standing], rtol=1e-6, atol=1e-6)
    assert (correct(model, out, y) <= correct(model, optimum, y)).all()


@pytest.mark.parametrize("norm,eps", [("inf", 0.3), (2, 2.0)])
def test_apgd_outputs_lie_in_the_ball_and_the_box(trained_cnn, eval_batch, norm, eps):
    x, y = eval_batch[0][:100], eval_batch[1][:100]
    for out in (apgd(trained_cnn, x, y, eps, 20, norm=norm, generator=_gen(0)),
                apgd_targeted(trained_cnn, x, y, eps, 10, norm=norm, targets=2, generator=_gen(0)),
                StrongAttack(eps, norm=norm, steps=10, targets=2)(trained_cnn, x, y)):
        delta = (out - x).flatten(1)
        size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
        assert size.max() <= eps + 1e-5
        assert out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------------------- torchattacks, the reference
# Same algorithm, independent random starts: on 400 digits the few borderline examples that depend on
# the start move the accuracy by a point at most (measured: equal, or 1–2 digits apart).
@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm,eps", [("inf", 0.1), (2, 1.5)])
def test_apgd_matches_torchattacks(trained_cnn, eval_batch, loss, norm, eps):
    """Oracle: torchattacks.APGD at the same ε, steps and loss — within 1 point."""
    x, y = eval_batch
    steps = 50 if norm == "inf" else 25  # torchattacks' ℓ2 projection is slow on a CPU
    ours = robust_accuracy(trained_cnn, x, y, lambda m, a, b: apgd(m, a, b, eps, steps, norm=norm, loss=loss, generator=_gen(3)))
    ref = torchattacks.APGD(trained_cnn, norm="Linf" if norm == "inf" else "L2", eps=eps, steps=steps, loss=loss, seed=3)
    theirs = robust_accuracy(trained_cnn, x, y, lambda m, a, b: ref(a, b))
    assert theirs < accuracy(trained_cnn, x, y) - 0.1  # the attack bites
    assert abs(ours - theirs) <= 0.01


def test_apgd_targeted_matches_torchattacks(trained_cnn, eval_batch):
    """Oracle: torchattacks.APGDT at the same ε, steps and target classes — within 1 point."""
    x, y = eval_batch
    eps = 0.1
    ours = robust_accuracy(trained_cnn, x, y, lambda m, a, b: apgd_targeted(m, a, b, eps, 20, targets=4, generator=_gen(4)))
    ref = torchattacks.APGDT(trained_cnn, eps=eps, steps=20, n_classes=5, seed=4)  # the 4 runner-up classes
    theirs = robust_accuracy(trained_cnn, x, y, lambda m, a, b: ref(a, b))
    assert abs(ours - theirs) <= 0.01


def test_strong_attack_is_never_weaker_than_pgd_40_with_restarts(robust_cnn, eval_batch):
    """The strong evaluation must find at least what PGD-40 × 2 finds (here on a PGD-trained model)."""
    x, y = eval_batch
    eps = 0.15
    strong = robust_accuracy(robust_cnn, x, y, StrongAttack(eps, steps=50, targets=3))
    pgd_acc = robust_accuracy(robust_cnn, x, y, lambda m, a, b: pgd(m, a, b, eps, 2.5 * eps / 40, 40, restarts=2,
                                                                    generator=_gen(0)))
    assert pgd_acc > 0.3  # a robust model, where the difference between attacks shows
    assert strong <= pgd_acc


def test_strong_attack_matches_torchattacks_autoattack(robust_cnn, eval_batch):
    """Oracle: torchattacks' AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square) — ours within 1 point.

    torchattacks runs each of its attacks for its default 10 steps; ours runs APGD for 100, so
    ours may well be the stronger one; it must never be weaker by more than a point.
    """
    x, y = eval_batch[0][:200], eval_batch[1][:200]
    eps = 0.15
    ours = robust_accuracy(robust_cnn, x, y, StrongAttack(eps))
    aa = torchattacks.AutoAttack(robust_cnn, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
    theirs = robust_accuracy(robust_cnn, x, y, lambda m, a, b: aa(a, b))
    assert theirs > 0.3
    assert ours <= theirs + 0.01
    assert ours >= theirs - 0.03  # a large gap the other way would mean a bug in one of the two


def test_strong_attack_counts_only_real_adversarial_examples(robust_cnn, eval_batch):
    """What the strong attack reports as broken is broken: re-running the model on its output agrees."""
    x, y = eval_batch[0][:200], eval_batch[1][:200]
    out = StrongAttack(0.2, steps=20, targets=2)(robust_cnn, x, y)
    assert ((out - x).abs().amax() <= 0.2 + 1e-6) and out.min() >= 0 and out.max() <= 1
    broken = ~correct(robust_cnn, out, y)
    assert broken.any() and not broken.all()
    assert robust_accuracy(robust_cnn, x, y, StrongAttack(0.2, steps=20, targets=2)) == pytest.approx(
        1 - broken.float().mean().item())


def test_strong_attack_is_deterministic_and_names_itself(trained_cnn, eval_batch):
    x, y = eval_batch[0][:32], eval_batch[1][:32]
    attack = StrongAttack(0.1, steps=10, targets=2, seed=5)
    assert torch.equal(attack(trained_cnn, x, y), attack(trained_cnn, x, y))
    assert attack.name == "APGD-CE + APGD-T (10 steps, 2 targets)"
    assert StrongAttack(0.1, targets=0).name == "APGD-CE (100 steps)"
    assert StrongAttack(0.5, norm="L2").norm == "2"


def test_later_attacks_only_add_broken_examples(trained_cnn, eval_batch):
    """Worst case per example: the strong attack breaks everything APGD-CE alone breaks, and more."""
    x, y = eval_batch
    ce_only = correct(trained_cnn, StrongAttack(0.1, steps=20, targets=0)(trained_cnn, x, y), y)
    both = correct(trained_cnn, StrongAttack(0.1, steps=20, targets=3)(trained_cnn, x, y), y)
    assert (both <= ce_only).all()
    assert both.sum() < ce_only.sum()


# ----------------------------------------------------------------------------- bad inputs
@pytest.fixture
def tiny():
    g = _gen(8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    return model, torch.rand(4, 1, 28, 28, generator=g), torch.randint(0, 10, (4,), generator=g)


BAD = [
    (dict(eps=-0.1), "^eps"),
    (dict(eps=1.5), "^eps"),
    (dict(eps=float("nan")), "^eps"),
    (dict(steps=-1), "^steps"),
    (dict(steps=2.5), "^steps"),
    (dict(restarts=0), "^restarts"),
    (dict(norm=1), "norm"),
    (dict(loss="hinge"), "^loss"),
    (dict(rho=0.0), "^rho"),
]


@pytest.mark.parametrize("changes,match", BAD, ids=[str(c) for c, _ in BAD])
def test_apgd_rejects_bad_arguments(tiny, changes, match):
    model, x, y = tiny
    with pytest.raises(ValueError, match=match):
        apgd(model, x, y, **{"eps": 0.1, "steps": 3, **changes})


def test_bad_images_and_targets_are_refused(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match="^x must"):
        apgd(model, (x - 0.13) / 0.31, y, 0.1, 3)
    with pytest.raises(ValueError, match="^targets"):
        apgd_targeted(model, x, y, 0.1, 3, targets=10)
    with pytest.raises(ValueError, match="^targets"):
        StrongAttack(0.1, targets=-1)
    with pytest.raises(ValueError, match="norm"):
        StrongAttack(0.1, norm=1)
    with pytest.raises(ValueError, match="^eps"):
        StrongAttack(2.0)
