"""Evaluation against hand counts and the worst-case-per-example rule."""
import pytest
import torch
from torch import nn

from course_utils.attacks import fgsm, pgd
from course_utils.evaluate import (
    accuracy,
    accuracy_vs_eps,
    correct,
    minimal_flipping_eps,
    predict,
    robust_accuracy,
    robust_accuracy_by_attack,
    smallest_flipping_eps,
)


def _logit_model():
    """A "model" whose inputs are its logits: predictions are the argmax of x, known by hand."""
    return nn.Flatten()


def test_accuracy_against_hand_count():
    """7 examples, 4 right (counted by hand), over batches of 3 so that batching is exercised."""
    x = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8], [0.1, 0.7, 0.2], [0.3, 0.6, 0.1],
                      [0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.0, 0.9, 0.1]])
    y = torch.tensor([0, 1, 1, 2, 0, 2, 0])
    # predictions:   0  2  1  1  0  2  1  → right at 0, 2, 4, 5
    assert predict(_logit_model(), x, batch_size=3).tolist() == [0, 2, 1, 1, 0, 2, 1]
    assert correct(_logit_model(), x, y, batch_size=3).tolist() == [True, False, True, False, True, True, False]
    assert accuracy(_logit_model(), x, y, batch_size=3) == pytest.approx(4 / 7)


def test_accuracy_of_empty_set_raises():
    with pytest.raises(ValueError):
        accuracy(_logit_model(), torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))


def _swap_half(which: int):
    """A fake attack that swaps the two logits of the first (0) or second (1) half of the batch."""
    def attack(model, x, y):
        out = x.clone()
        n = len(x) // 2
        part = slice(0, n) if which == 0 else slice(n, len(x))
        out[part] = x[part].flip(1)
        return out
    return attack


def test_robust_accuracy_is_worst_case_per_example():
    """Each attack alone leaves 50 %; together they break everything: worst case is 0, not min(0.5, 0.5)."""
    x = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    y = torch.tensor([0] * 4 + [1] * 4)
    model = _logit_model()
    a, b = _swap_half(0), _swap_half(1)
    assert accuracy(model, x, y) == 1.0
    assert robust_accuracy(model, x, y, a) == pytest.approx(0.5)
    assert robust_accuracy(model, x, y, [b]) == pytest.approx(0.5)
    assert robust_accuracy(model, x, y, [a, b]) == 0.0
    assert robust_accuracy(model, x, y, {"first": a, "second": b}) == 0.0
    assert robust_accuracy(model, x, y, [lambda m, xx, yy: xx]) == 1.0


def test_accuracy_by_attack_reports_each_attack_and_the_worst_case():
    """Same oracle as above, in one table: 0.5 per attack, 0 for the combination, each attack run once."""
    x = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    y = torch.tensor([0] * 4 + [1] * 4)
    calls = []
    counting = lambda attack: (lambda m, xx, yy: calls.append(1) or attack(m, xx, yy))
    table = robust_accuracy_by_attack(_logit_model(), x, y, {"first": counting(_swap_half(0)), "second": counting(_swap_half(1))},
                                      batch_size=8, worst_case_label="both")
    assert table == pytest.approx({"first": 0.5, "second": 0.5, "both": 0.0})
    assert len(calls) == 2


def test_robust_accuracy_counts_clean_mistakes_as_not_robust():
    """An example wrong on clean input is not robust even if the 'attack' happens to fix it."""
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 0])  # the first is misclassified when clean
    fixer = lambda m, xx, yy: torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert robust_accuracy(_logit_model(), x, y, fixer) == 0.5


def _pgd_eps(model, x, y, eps):
    return pgd(model, x, y, eps, 2.5 * eps / 5, 5, generator=torch.Generator().manual_seed(0))


def test_accuracy_vs_eps_starts_at_clean_accuracy_and_does_not_increase(trained_cnn, eval_batch):
    """ε = 0 is clean accuracy; a bigger PGD budget never helps the model."""
    x, y = eval_batch[0][:150], eval_batch[1][:150]
    curve = accuracy_vs_eps(trained_cnn, x, y, _pgd_eps, [0.0, 0.05, 0.1, 0.2, 0.3])
    assert len(curve) == 5
    assert curve[0] == accuracy(trained_cnn, x, y)
    assert all(later <= earlier for earlier, later in zip(curve, curve[1:])), curve
    assert curve[-1] < curve[0] - 0.3  # and the attack does bite


def test_minimal_flipping_eps(trained_cnn, eval_batch):
    """Clean mistakes get 0, flipped examples get the grid ε that flips them, PGD needs less ε than FGSM."""
    x, y = eval_batch[0][:100], eval_batch[1][:100]
    grid = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]
    wrong = ~correct(trained_cnn, x, y)
    assert wrong.any()
    found_pgd = minimal_flipping_eps(trained_cnn, x, y, _pgd_eps, grid)
    found_fgsm = minimal_flipping_eps(trained_cnn, x, y, lambda m, xx, yy, e: fgsm(m, xx, yy, e), grid)
    for found in (found_pgd, found_fgsm):
        assert (found[wrong] == 0).all()
        assert (found[~wrong] > 0).all()
        on_grid = torch.isclose(found[:, None], torch.tensor(grid)[None, :]).any(dim=1)
        assert (on_grid | torch.isinf(found)).all()
    assert found_pgd.median() <= found_fgsm.median()
    # Recheck FGSM's values directly: it flips each example at its ε and not at the grid point before.
    for previous, eps in [(0.02, 0.05), (0.05, 0.1)]:
        idx = (found_fgsm == eps).nonzero().squeeze(1)
        assert len(idx)
        assert not correct(trained_cnn, fgsm(trained_cnn, x[idx], y[idx], eps), y[idx]).any()
        assert correct(trained_cnn, fgsm(trained_cnn, x[idx], y[idx], previous), y[idx]).all()


def _two_class_linear(seed=0, n=64):
    """A float64 two-class linear model on interior images: FGSM lowers the margin z_y − z_other by
    exactly ε·‖w_y − w_other‖₁ while no pixel clips, so its smallest flipping ε is margin / ‖w_y − w_other‖₁."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, 16, generator=g, dtype=torch.float64))
        model[1].bias.zero_()
    x = 0.3 + 0.4 * torch.rand(n, 1, 4, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)  # every example starts correct
    w = model[1].weight.detach()
    margin = (model(x)[torch.arange(n), y] - model(x)[torch.arange(n), 1 - y]).detach()
    return model, x, y, margin / (w[y] - w[1 - y]).abs().sum(1)


def test_smallest_flipping_eps_finds_the_closed_form_by_bisection():
    """Oracle: FGSM on a linear two-class model flips exactly at margin / ‖w_y − w_other‖₁."""
    model, x, y, exact = _two_class_linear()
    eps_max, iterations = 0.06, 12  # about two thirds of the examples flip below it
    found = smallest_flipping_eps(model, x, y, fgsm, eps_max, iterations)
    reachable = exact < eps_max
    assert reachable.sum() >= 20 and (~reachable).sum() >= 1
    assert torch.isinf(found[~reachable]).all()
    err = found[reachable] - exact[reachable]
    assert (err >= -1e-9).all() and (err <= eps_max / 2**iterations + 1e-9).all()  # an upper bound, tight to the resolution


def test_smallest_flipping_eps_with_pgd_needs_no_more_than_fgsm(trained_cnn, eval_batch):
    """PGD contains FGSM's first step, so on a trained CNN it flips with a smaller ε on most digits,
    with few ties, and clean mistakes get 0."""
    x, y = eval_batch[0][:100], eval_batch[1][:100]
    pgd_eps = lambda m, xx, yy, e: pgd(m, xx, yy, e, 2.5 * e / 10, 10, generator=torch.Generator().manual_seed(0))
    found_fgsm = smallest_flipping_eps(trained_cnn, x, y, fgsm, 0.4)
    found_pgd = smallest_flipping_eps(trained_cnn, x, y, pgd_eps, 0.4)
    wrong = ~correct(trained_cnn, x, y)
    assert (found_fgsm[wrong] == 0).all() and (found_pgd[wrong] == 0).all()
    ok = ~wrong & torch.isfinite(found_fgsm)
    assert (found_pgd[ok] < found_fgsm[ok]).float().mean() >= 0.7
    assert (found_pgd[ok] == found_fgsm[ok]).float().mean() <= 0.1
    # Recheck: FGSM flips each digit at its ε, and not at 90 % of it (a coarser check than the resolution).
    idx = ok.nonzero().squeeze(1)[:20]
    assert not correct(trained_cnn, fgsm(trained_cnn, x[idx], y[idx], found_fgsm[idx]), y[idx]).any()


def test_smallest_flipping_eps_rejects_bad_arguments(trained_cnn, eval_batch):
    x, y = eval_batch[0][:4], eval_batch[1][:4]
    with pytest.raises(ValueError, match="^eps_max"):
        smallest_flipping_eps(trained_cnn, x, y, fgsm, 1.5)
    with pytest.raises(ValueError, match="^iterations"):
        smallest_flipping_eps(trained_cnn, x, y, fgsm, 0.3, 0)
