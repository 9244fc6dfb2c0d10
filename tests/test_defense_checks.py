"""The self-checks of 10's exercises (course_utils/checks/defenses.py): each passes the reference, fails each
named mistake with its own message, and never raises."""
import pytest
import torch
import torch.nn.functional as F

from course_utils import defenses
from course_utils.attacks.eot import eot_gradient
from course_utils.checks import check_bpda_gradient, check_eot_gradient


def _grad(model, x, y, reduction="sum"):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction=reduction), x)
    return g.detach()


class _Plain(torch.autograd.Function):  # forgets the straight-through backward: torch.round's zero derivative
    @staticmethod
    def forward(ctx, x, levels):
        return defenses.quantize(x, levels)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g), None


BPDA_MISTAKES = {
    "all zeros": lambda m, x, y, l: _grad(lambda v: m(_Plain.apply(v, l)), x, y),
    "without the quantiser": lambda m, x, y, l: _grad(m, x, y),
    "averaged over the batch": lambda m, x, y, l: _grad(m, defenses.quantize(x, l), y, "mean"),
    "sign of the gradient": lambda m, x, y, l: _grad(m, defenses.quantize(x, l), y).sign(),
    "grey levels": lambda m, x, y, l: _grad(m, torch.round(x * l) / l, y),
    "still requires grad": lambda m, x, y, l: _grad(m, defenses.quantize(x, l), y).requires_grad_(True),
    "shape": lambda m, x, y, l: _grad(m, defenses.quantize(x, l), y).flatten(1),
    "parameter gradients": lambda m, x, y, l: (F.cross_entropy(m(defenses.quantize(x, l)), y, reduction="sum").backward(),
                                               _grad(m, defenses.quantize(x, l), y))[1],
}


def test_bpda_check_passes_the_reference(capsys):
    assert check_bpda_gradient(defenses.bpda_gradient) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", BPDA_MISTAKES)
def test_bpda_check_names_each_mistake(mistake, capsys):
    assert check_bpda_gradient(BPDA_MISTAKES[mistake]) is False
    assert mistake in capsys.readouterr().out


def _mean_of_logits(model, x, y, samples):
    x = x.detach().requires_grad_(True)
    logits = sum(model(x) for _ in range(samples)) / samples
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return g


EOT_MISTAKES = {
    "summed the draws": lambda m, x, y, s: eot_gradient(m, x, y, s) * s,
    "only one draw": lambda m, x, y, s: eot_gradient(m, x, y, 1),
    "signs": lambda m, x, y, s: sum(_grad(m, x, y).sign() for _ in range(s)) / s,
    "averaged the logits": _mean_of_logits,
    "averaged over the batch": lambda m, x, y, s: sum(_grad(m, x, y, "mean") for _ in range(s)) / s,
    "NaN": lambda m, x, y, s: torch.full_like(x, float("nan")),
}


def test_eot_check_passes_the_reference(capsys):
    assert check_eot_gradient(eot_gradient) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", EOT_MISTAKES)
def test_eot_check_names_each_mistake(mistake, capsys):
    assert check_eot_gradient(EOT_MISTAKES[mistake]) is False
    assert mistake in capsys.readouterr().out


@pytest.mark.parametrize("check", [check_bpda_gradient, check_eot_gradient])
def test_unfinished_and_crashing_exercises_fail_without_raising(check, capsys):
    def unfinished(*args):
        raise NotImplementedError()

    def crashes(*args):
        return 1 / 0

    assert check(unfinished) is False and "not implemented yet" in capsys.readouterr().out
    assert check(crashes) is False and "ZeroDivisionError" in capsys.readouterr().out
