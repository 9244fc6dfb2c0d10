"""The evaluation checklist: every item passes an honest evaluation and flags a broken one."""
import sys

import pytest
import torch

from course_utils import attacks
from course_utils.attacks.apgd import StrongAttack
from course_utils.checklist import (Verdict, agrees_with_reference, has_converged, iterative_beats_single_step,
                                    reaches_chance, summarize, white_box_beats_transfer)
from course_utils.models import ScaledLogits

EPS = 0.2


def _pgd(steps=20, restarts=1, seed=0):
    return lambda m, x, y: attacks.pgd(m, x, y, EPS, 2.5 * EPS / steps, steps, restarts=restarts,
                                       generator=torch.Generator().manual_seed(seed))


def _nothing(m, x, y):
    """An "attack" that returns the clean images: the extreme of a failed optimisation."""
    return x.clone()


@pytest.fixture
def batch(eval_batch):
    return eval_batch[0][:100], eval_batch[1][:100]


def test_chance_level_at_half_a_pixel(trained_cnn, batch):
    x, y = batch
    pgd_at = lambda m, xb, yb, e: attacks.pgd(m, xb, yb, e, e / 4, 10)
    good = reaches_chance(trained_cnn, x, y, pgd_at)
    assert good.passed and good.evidence["accuracy"] <= 0.15
    bad = reaches_chance(trained_cnn, x, y, lambda m, xb, yb, e: xb.clone())
    assert bad.passed is False and bad.evidence["accuracy"] > 0.5


def test_iterative_against_single_step(trained_cnn, batch):
    x, y = batch
    fgsm = lambda m, xb, yb: attacks.fgsm(m, xb, yb, EPS)
    assert iterative_beats_single_step(trained_cnn, x, y, fgsm, _pgd()).passed
    bad = iterative_beats_single_step(trained_cnn, x, y, fgsm, _nothing)
    assert bad.passed is False
    assert bad.evidence["iterative acc"] > bad.evidence["single-step acc"]


def test_convergence(trained_cnn, batch):
    x, y = batch
    weak = lambda m, xb, yb: attacks.pgd(m, xb, yb, EPS, EPS / 50, 1, random_start=False)  # one tiny step
    bad = has_converged(trained_cnn, x, y, weak, _pgd(20, 2))
    assert bad.passed is False and bad.evidence["with more effort"] < bad.evidence["accuracy"] - 0.02
    same = has_converged(trained_cnn, x, y, _pgd(20, 1, seed=1), _pgd(20, 1, seed=1))
    assert same.passed and same.evidence["accuracy"] == same.evidence["with more effort"]


def test_transfer_flags_a_masked_model(trained_cnn, batch):
    """Logits ×1e4 make the model's own cross-entropy gradient vanish; its unscaled twin still transfers."""
    x, y = batch
    fgsm = lambda m, xb, yb: attacks.fgsm(m, xb, yb, EPS)
    honest = white_box_beats_transfer(trained_cnn, x, y, fgsm, trained_cnn)
    assert honest.passed and honest.evidence["white-box acc"] == honest.evidence["transfer acc"]
    masked = ScaledLogits(trained_cnn, 1e4)
    flagged = white_box_beats_transfer(masked, x, y, fgsm, trained_cnn)
    assert flagged.passed is False
    assert flagged.evidence["white-box acc"] > flagged.evidence["transfer acc"] + 0.2


def test_independent_implementation(trained_cnn, batch):
    pytest.importorskip("torchattacks")
    x, y = batch[0][:60], batch[1][:60]
    good = agrees_with_reference(trained_cnn, x, y, StrongAttack(EPS, steps=20, targets=3), EPS, steps=20)
    assert good.passed, str(good)
    bad = agrees_with_reference(trained_cnn, x, y, _nothing, EPS, steps=20)
    reference = bad.evidence["torchattacks APGD-CE + APGD-T"]
    assert bad.passed is False and reference < bad.evidence["ours"] - 0.3
    assert f"finds {bad.evidence['ours'] - reference:.1%} more" in bad.explanation


def test_independent_implementation_says_which_way_the_difference_goes(trained_cnn, batch):
    """The explanation must describe the measured difference, never claim agreement it did not see."""
    pytest.importorskip("torchattacks")
    x, y = batch[0][:60], batch[1][:60]
    strongest = StrongAttack(EPS, steps=40, targets=9)
    v = agrees_with_reference(trained_cnn, x, y, strongest, EPS, steps=5, targets=0)  # a weaker reference
    ours, ref = v.evidence["ours"], v.evidence["torchattacks APGD-CE"]
    assert v.passed
    if ours < ref:
        assert "fewer" in v.explanation
    elif ours == ref:
        assert "exactly as many" in v.explanation
    else:
        assert "more" in v.explanation and "within the tolerance" in v.explanation


def test_missing_reference_library_means_not_run(trained_cnn, batch, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # makes `import torchattacks` raise ImportError
    verdict = agrees_with_reference(trained_cnn, *batch, _nothing, EPS)
    assert verdict.passed is None and "not installed" in verdict.explanation
    assert summarize([verdict]) is True
    assert summarize([verdict, Verdict("x", False)]) is False
    assert "not run" in str(verdict)


def test_verdict_text_and_tolerance_checks(trained_cnn, batch):
    v = Verdict("item", True, {"accuracy": 0.5, "steps": 40.0}, "fine")
    assert str(v) == "✅ pass | item: accuracy 50.0%, steps 40 — fine"
    with pytest.raises(ValueError, match="tolerance"):
        has_converged(trained_cnn, *batch, _nothing, _nothing, tolerance=2)


def test_remember_runs_the_attack_once_per_model_and_batch(trained_cnn, batch):
    from course_utils.checklist import remember

    calls = []

    def attack(m, x, y):
        calls.append(len(x))
        return x.clone()

    cached = remember(attack)
    x, y = batch
    first = cached(trained_cnn, x, y)
    assert cached(trained_cnn, x, y) is first and calls == [100]
    cached(trained_cnn, x[:50], y[:50])  # same storage, another shape: a different batch
    cached(ScaledLogits(trained_cnn, 2.0), x, y)  # another model
    assert calls == [100, 50, 100]


def test_run_checklist_passes_an_honest_evaluation_and_fails_a_masked_model(trained_cnn, batch):
    pytest.importorskip("torchattacks")
    from course_utils.checklist import run_checklist

    x, y = batch[0][:60], batch[1][:60]
    pgd_at = lambda m, xb, yb, e: attacks.pgd(m, xb, yb, e, e / 8, 20, generator=torch.Generator().manual_seed(0))
    kwargs = dict(attack_at=pgd_at, stronger=_pgd(50, 2, seed=1), single_step=lambda m, xb, yb: attacks.fgsm(m, xb, yb, EPS),
                  surrogate=trained_cnn, n_reference=60)
    honest = run_checklist(trained_cnn, x, y, EPS, **kwargs)
    assert len(honest) == 5 and summarize(honest), "\n".join(map(str, honest))
    masked = run_checklist(ScaledLogits(trained_cnn, 1e4), x, y, EPS, **kwargs)
    assert not summarize(masked)
    failed = {v.item for v in masked if v.passed is False}
    assert {"white-box ≥ transfer", "independent implementation agrees"} <= failed, "\n".join(map(str, masked))
