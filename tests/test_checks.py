"""The exercise self-checks pass the reference solutions and fail (without raising) typical mistakes."""
import pytest
import torch
import torch.nn.functional as F

from course_utils import attacks
from course_utils.checks import (check_adversarial_training_step, check_fgsm, check_pgd, check_project_linf,
                                 check_white_box_vs_transfer)


def _grad(model, x, y):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)[0]


# ----------------------------------------------------------------------------- student mistakes
def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def crashes(*args, **kwargs):
    return [][0]


def fgsm_wrong_sign(model, x, y, eps):
    return torch.clamp(x - eps * _grad(model, x, y).sign(), 0, 1).detach()


def fgsm_with_backward(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()  # also fills the parameters' .grad
    return torch.clamp(x + eps * x.grad.sign(), 0, 1).detach()


def fgsm_no_clip(model, x, y, eps):
    return (x + eps * _grad(model, x, y).sign()).detach()


def fgsm_not_detached(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    g = torch.autograd.grad(F.cross_entropy(model(x), y), x, create_graph=True)[0]
    return torch.clamp(x + eps * g.sign(), 0, 1)


def project_no_box(x, x0, eps):
    return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps)


def project_rescales(x, x0, eps):
    """Stays in the ball and in [0, 1], but shrinks the whole δ instead of clipping each pixel."""
    delta = x - x0
    biggest = delta.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return torch.clamp(x0 + delta * torch.clamp(eps / biggest, max=1.0), 0, 1)


def project_no_ball(x, x0, eps):
    return torch.clamp(x, 0, 1)


def pgd_never_projects(model, x, y, eps, alpha, steps, random_start=True):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv = torch.clamp(x_adv + alpha * _grad(model, x_adv, y).sign(), 0, 1)
    return x_adv.detach()


def pgd_gradient_at_x0_only(model, x, y, eps, alpha, steps, random_start=True):
    """Projects correctly, but reuses ∇ at x0 every step: just a slower FGSM."""
    g = _grad(model, x, y).sign()
    x_adv = x.clone()
    for _ in range(steps):
        x_adv = attacks.project_linf(x_adv + alpha * g, x, eps)
    return x_adv.detach()


def pgd_descends(model, x, y, eps, alpha, steps, random_start=True):
    return attacks.pgd(model, x, y, eps, alpha, steps, random_start=random_start, targeted=True)


# ----------------------------------------------------------------------------- tests
def _passes(check, fn, capsys):
    result = check(fn)
    out = capsys.readouterr().out
    return result, out


@pytest.mark.parametrize("check,reference", [
    (check_fgsm, attacks.fgsm),
    (check_project_linf, attacks.project_linf),
    (check_pgd, lambda model, x, y, eps, alpha, steps, random_start=True:
        attacks.pgd(model, x, y, eps, alpha, steps, random_start=random_start)),
])
def test_reference_implementations_pass(check, reference, capsys):
    result, out = _passes(check, reference, capsys)
    assert result is True
    assert out.startswith("✅") and check.__name__ in out


@pytest.mark.parametrize("check,broken", [
    (check_fgsm, not_implemented),
    (check_fgsm, crashes),
    (check_fgsm, fgsm_wrong_sign),
    (check_fgsm, fgsm_with_backward),
    (check_fgsm, fgsm_no_clip),
    (check_fgsm, fgsm_not_detached),
    (check_project_linf, not_implemented),
    (check_project_linf, project_no_box),
    (check_project_linf, project_rescales),
    (check_project_linf, project_no_ball),
    (check_pgd, not_implemented),
    (check_pgd, pgd_never_projects),
    (check_pgd, pgd_gradient_at_x0_only),
    (check_pgd, pgd_descends),
], ids=lambda f: f.__name__)
def test_broken_implementations_fail_without_raising(check, broken, capsys):
    result, out = _passes(check, broken, capsys)
    assert result is False
    assert out.startswith("❌") and check.__name__ in out


def test_messages_say_what_is_wrong(capsys):
    """The printed line points at the actual mistake, not a generic failure."""
    _, out = _passes(check_fgsm, not_implemented, capsys)
    assert "not implemented" in out
    _, out = _passes(check_fgsm, fgsm_with_backward, capsys)
    assert "autograd.grad" in out
    _, out = _passes(check_fgsm, fgsm_wrong_sign, capsys)
    assert "up" in out.split("Hint:")[1]
    _, out = _passes(check_project_linf, project_no_box, capsys)
    assert "[0, 1]" in out
    _, out = _passes(check_pgd, crashes, capsys)
    assert "IndexError" in out


# ----------------------------------------------------------------------------- adversarial training step
def _good_step(model, optimizer, x, y, attack):
    x_adv = attack(model, x, y)
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def test_adversarial_training_step_check_passes_the_recipe(capsys):
    assert check_adversarial_training_step(_good_step) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [
    ("clean", "model(x_adv)"),
    ("no_zero_grad", "zero_grad"),
    ("no_attack", "never called attack"),
    ("no_return", "as a number"),
    ("unfinished", "not implemented"),
])
def test_adversarial_training_step_check_names_the_mistake(mistake, hint, capsys):
    def step(model, optimizer, x, y, attack):
        if mistake == "unfinished":
            raise NotImplementedError
        x_in = x if mistake == "no_attack" else attack(model, x, y)
        if mistake == "clean":
            x_in = x
        loss = F.cross_entropy(model(x_in), y)
        if mistake != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return None if mistake == "no_return" else loss.item()

    assert check_adversarial_training_step(step) is False
    assert hint in capsys.readouterr().out


# ----------------------------------------------------------------------------- white-box vs transfer
def _white_transfer(model, surrogate, x, y, attack, *, swap=False, ignore_clean=False):
    with torch.no_grad():
        ok = model(x).argmax(1) == y
        if ignore_clean:
            ok = torch.ones_like(ok)
        white = ((model(attack(model, x, y)).argmax(1) == y) & ok).float().mean().item()
        transfer = ((model(attack(surrogate, x, y)).argmax(1) == y) & ok).float().mean().item()
    return (transfer, white) if swap else (white, transfer)


def test_white_box_vs_transfer_check_passes_the_reference(capsys):
    assert check_white_box_vs_transfer(_white_transfer) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, hint", [({"swap": True}, "swapped"), ({"ignore_clean": True}, "clean version")])
def test_white_box_vs_transfer_check_names_the_mistake(kwargs, hint, capsys):
    assert check_white_box_vs_transfer(lambda *a: _white_transfer(*a, **kwargs)) is False
    assert hint in capsys.readouterr().out


# ----------------------------------------------------------------------------- 07: the ℓ2 threat model
def test_l2_threat_check_passes_the_reference(capsys):
    from course_utils.attacks import project_l2, step_l2
    from course_utils.checks import check_l2_threat

    assert check_l2_threat(step_l2, project_l2) is True
    assert "✅ check_l2_threat: passed" in capsys.readouterr().out


def _flat_norm(t):
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


@pytest.mark.parametrize("mistake, hint", [
    ("unnormalised", "own ℓ2 norm"),
    ("batch_norm", "per image"),
    ("descent", "ascent"),
    ("always_rescale", "never above 1"),
    ("no_clip", "clamp(0, 1)"),
])
def test_l2_threat_check_names_each_mistake(mistake, hint, capsys):
    from course_utils.attacks import project_l2, step_l2
    from course_utils.checks import check_l2_threat

    def step(x, grad, alpha):
        if mistake == "unnormalised":
            return x + alpha * grad
        if mistake == "batch_norm":
            return x + alpha * grad / grad.norm()
        if mistake == "descent":
            return x - alpha * grad / _flat_norm(grad)
        return step_l2(x, grad, alpha)

    def project(x, x0, eps):
        delta = x - x0
        if mistake == "always_rescale":
            return (x0 + delta * eps / _flat_norm(delta)).clamp(0, 1)
        if mistake == "no_clip":
            return x0 + delta * (eps / _flat_norm(delta)).clamp(max=1)
        return project_l2(x, x0, eps)

    assert check_l2_threat(step, project) is False
    assert hint in capsys.readouterr().out


# ----------------------------------------------------------------------------- 08: a new corruption
def test_pixelate_check_passes_the_reference_and_names_mistakes(capsys):
    import torch.nn.functional as F
    from course_utils.checks import PIXELATE_SIDES, check_pixelate, reference_pixelate

    assert check_pixelate(reference_pixelate) is True
    assert "✅ check_pixelate: passed" in capsys.readouterr().out

    def bilinear(x, severity):
        side = PIXELATE_SIDES[severity - 1]
        return F.interpolate(F.interpolate(x, size=(side, side), mode="bilinear"), size=(28, 28), mode="nearest")

    def no_upsample(x, severity):
        return F.interpolate(x, size=(PIXELATE_SIDES[severity - 1],) * 2, mode="area")

    def in_place(x, severity):
        x.mul_(1.0).add_(0.0)
        x[0, 0, 0, 0] = 0.5
        return reference_pixelate(x, severity)

    for broken, hint in ((bilinear, "mode='area'"), (no_upsample, "resize back"), (in_place, "in place")):
        assert check_pixelate(broken) is False
        assert hint in capsys.readouterr().out


# ----------------------------------------------------------------------------- answers that game the checks
def _zero_the_model_then(result):
    """An 'attack' that zeroes the model, so a reference computed on it afterwards agrees with anything."""
    def fn(model, x, *args, **kwargs):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return result(x)
    return fn


@pytest.mark.parametrize("check,fn", [
    (check_fgsm, _zero_the_model_then(lambda x: x.detach().clone())),
    (check_pgd, _zero_the_model_then(lambda x: x.detach().clone())),
    (check_white_box_vs_transfer, lambda model, surrogate, x, y, attack: (float("nan"), float("nan"))),
    (check_fgsm, lambda model, x, y, eps: torch.full_like(x, float("nan"))),
])
def test_checks_are_not_fooled_by_nan_or_by_changing_the_model(check, fn, capsys):
    """Found by a review of the grader: NaN passes every `abs(got − ref) > tol` test, and a reference
    computed after the student's call on a model they zeroed agrees with a blank answer."""
    assert check(fn) is False
    out = capsys.readouterr().out
    assert "NaN" in out or "changed the model's weights" in out, out
