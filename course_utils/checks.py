"""Self-checks for the exercises: run the student's function on tiny cases with known answers.

Each check prints one clear line — a pass, or what is wrong and a hint — and returns a
boolean that the notebook records in its results JSON (the grader reads it). A check
never raises: an unfinished exercise (`NotImplementedError`) or a crash is reported as
a failed check, so the rest of the notebook still runs.
"""
from __future__ import annotations

import traceback
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import attacks


class CheckFailed(AssertionError):
    """A self-check found a wrong answer; the message says what and gives a hint."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(what)
        self.what, self.hint = what, hint


def _report(name: str, body: Callable[[], str]) -> bool:
    try:
        with torch.random.fork_rng(devices=[]):  # the checks seed torch; the notebook's own RNG stays as it was
            detail = body()
    except NotImplementedError:
        print(f"❌ {name}: not implemented yet — replace `raise NotImplementedError()` with your code.")
        return False
    except CheckFailed as fail:
        print(f"❌ {name}: {fail.what}" + (f"\n   Hint: {fail.hint}" if fail.hint else ""))
        return False
    except Exception as err:  # the student's code crashed: show where, briefly
        where = traceback.extract_tb(err.__traceback__)[-1]
        print(f"❌ {name}: your function raised {type(err).__name__}: {err} (line {where.lineno}: {where.line})")
        return False
    print(f"✅ {name}: passed — {detail}")
    return True


def _linear_case(seed: int = 0, n: int = 6, d: int = 8, classes: int = 3):
    """A linear softmax model with inputs in (0.05, 0.95) and some pixels near the edges."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, d, generator=g))
        model[1].bias.copy_(torch.randn(classes, generator=g))
    x = 0.05 + 0.9 * torch.rand(n, 1, 2, d // 2, generator=g)
    x[0, 0, 0, 0], x[1, 0, 0, 1] = 0.98, 0.01  # clipping to [0, 1] must matter somewhere
    y = torch.randint(0, classes, (n,), generator=g)
    return model, x, y


def fgsm_closed_form(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM on a linear softmax model by hand: ∇x CE = Wᵀ(p − onehot(y)), no autograd involved."""
    w, b = model[1].weight, model[1].bias
    with torch.no_grad():
        flat = x.flatten(1)
        p = (flat @ w.T + b).softmax(dim=1)
        grad = (p - F.one_hot(y, w.shape[0]).float()) @ w
        return torch.clamp(flat + eps * grad.sign(), 0, 1).view_as(x)


def _common_output_checks(name: str, x_adv, x, eps: float, model: nn.Module) -> None:
    if not isinstance(x_adv, torch.Tensor):
        raise CheckFailed(f"{name} returned {type(x_adv).__name__}, not a tensor", "return the adversarial batch")
    if x_adv.shape != x.shape:
        raise CheckFailed(f"output shape {tuple(x_adv.shape)} differs from the input's {tuple(x.shape)}")
    if x_adv.requires_grad:
        raise CheckFailed("the returned tensor still requires grad", "return x_adv.detach()")
    if (x_adv - x).abs().max() > eps + 1e-6:
        raise CheckFailed(f"‖x_adv − x‖∞ = {(x_adv - x).abs().max():.4f} exceeds ε = {eps}",
                          "the perturbation must stay inside the ε-ball")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise CheckFailed("some pixels left [0, 1]", "clip with torch.clamp(x_adv, 0, 1)")
    if any(p.grad is not None for p in model.parameters()):
        raise CheckFailed("your function changed the model's parameter gradients",
                          "take the input gradient with torch.autograd.grad(loss, x) instead of loss.backward()")


def check_fgsm(fgsm: Callable) -> bool:
    """fgsm(model, x, y, eps) against the closed form on a linear model."""

    def body() -> str:
        for seed, eps in [(0, 0.1), (1, 0.25), (2, 0.0)]:
            model, x, y = _linear_case(seed)
            expected = fgsm_closed_form(model, x, y, eps)
            got = fgsm(model, x.clone(), y.clone(), eps)
            _common_output_checks("fgsm", got, x, eps, model)
            if not torch.allclose(got, expected, atol=1e-5):
                wrong_sign = torch.allclose(got, fgsm_closed_form(model, x, y, -eps), atol=1e-5)  # x0 − ε·sign(∇), clipped
                raise CheckFailed(
                    f"at ε = {eps} your output differs from x0 + ε·sign(∇x loss) "
                    f"(max difference {(got - expected).abs().max():.3g})",
                    "the step goes *up* the cross-entropy, i.e. x0 − ε·sign(g) with g = ∇x log p(y*|x)"
                    if wrong_sign else
                    "compute the loss at x0 with F.cross_entropy(model(x), y), take its gradient with respect "
                    "to x, and step by ε times its sign",
                )
        return "matches the closed form x0 + ε·sign(Wᵀ(p − e_y)) on a linear model, stays in the ball and in [0, 1]"

    return _report("check_fgsm", body)


def check_project_linf(project: Callable) -> bool:
    """project(x, x0, eps) must return the closest point of the ℓ∞ ball ∩ [0, 1]."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        x0 = torch.rand(5, 1, 4, 4, generator=g)
        for eps in (0.05, 0.3):
            x = x0 + 0.8 * (torch.rand(x0.shape, generator=g) - 0.5)  # some inside, some outside, some < 0 or > 1
            got = project(x.clone(), x0.clone(), eps)
            if not isinstance(got, torch.Tensor) or got.shape != x.shape:
                raise CheckFailed("project must return a tensor shaped like x")
            expected = attacks.project_linf(x, x0, eps)
            if (got - x0).abs().max() > eps + 1e-6:
                raise CheckFailed(f"a projected point is {(got - x0).abs().max():.3f} away from x0 in ℓ∞ (ε = {eps})",
                                  "clip each pixel into [x0 − ε, x0 + ε]")
            if got.min() < 0 or got.max() > 1:
                raise CheckFailed("a projected pixel is outside [0, 1]", "clip to the valid pixel range as well")
            if not torch.allclose(got, expected, atol=1e-6):
                raise CheckFailed("points already inside the ball moved, or points outside did not land on the "
                                  "nearest boundary", "clip, don't rescale: torch.clamp / torch.min / torch.max per pixel")
        return "every point lands in the ball and in [0, 1], and points are moved as little as possible"

    return _report("check_project_linf", body)


def check_pgd(pgd: Callable) -> bool:
    """pgd(model, x, y, eps, alpha, steps, random_start) for ℓ∞, checked on small models."""

    def body() -> str:
        # 1. One step of size ε from x0 is exactly FGSM.
        model, x, y = _linear_case(3)
        got = pgd(model, x.clone(), y.clone(), 0.1, 0.1, 1, random_start=False)
        _common_output_checks("pgd", got, x, 0.1, model)
        if not torch.allclose(got, fgsm_closed_form(model, x, y, 0.1), atol=1e-5):
            raise CheckFailed("with steps=1, alpha=ε and no random start, PGD should equal FGSM",
                              "each step is x + α·sign(∇x loss), then project onto the ball and [0, 1]")
        # 2. Many small steps on a curved model (large weights, tanh), where iterating pays:
        #    the reference PGD reaches a much higher loss than FGSM here.
        g = torch.Generator().manual_seed(4)
        torch.manual_seed(4)
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(5.0)
        xs = torch.rand(64, 1, 4, 4, generator=g)
        ys = torch.randint(0, 4, (64,), generator=g)
        eps = 0.3
        got = pgd(net, xs.clone(), ys.clone(), eps, eps / 4, 20, random_start=True)
        _common_output_checks("pgd", got, xs, eps, net)
        with torch.no_grad():
            loss_pgd = F.cross_entropy(net(got), ys).item()
            loss_fgsm = F.cross_entropy(net(attacks.fgsm(net, xs, ys, eps)), ys).item()
            loss_ref = F.cross_entropy(net(attacks.pgd(net, xs, ys, eps, eps / 4, 20)), ys).item()
        if loss_pgd < loss_fgsm + 0.5 * (loss_ref - loss_fgsm):
            raise CheckFailed(
                f"your PGD reaches a mean loss of {loss_pgd:.2f}: FGSM reaches {loss_fgsm:.2f} and the reference "
                f"PGD {loss_ref:.2f} at the same ε, α and steps",
                "recompute the gradient at the current iterate every step (not at x0), step in the direction "
                "that increases the loss, and project after every step",
            )
        return f"equals FGSM for one step, stays in the ball, and reaches loss {loss_pgd:.2f} (FGSM {loss_fgsm:.2f})"

    return _report("check_pgd", body)


def check_linf_distance(linf_distance: Callable) -> bool:
    """linf_distance(x, x0) must return ‖x_i − x0_i‖∞ for every example i."""

    def body() -> str:
        g = torch.Generator().manual_seed(1)
        x0 = torch.rand(7, 1, 5, 5, generator=g)
        x = x0 + 0.3 * torch.randn(x0.shape, generator=g)
        x[3] = x0[3]  # an unperturbed example has distance 0
        expected = (x - x0).flatten(1).abs().amax(dim=1)
        got = linf_distance(x.clone(), x0.clone())
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"returned {type(got).__name__}, not a tensor")
        if got.shape != expected.shape:
            raise CheckFailed(f"returned shape {tuple(got.shape)}; expected one number per example, {tuple(expected.shape)}",
                              "flatten each example (x - x0).flatten(1) and reduce over dim=1 only")
        if torch.allclose(got, (x - x0).flatten(1).abs().sum(dim=1), atol=1e-5):
            raise CheckFailed("that is the ℓ1 distance (a sum), not ℓ∞", "ℓ∞ takes the largest absolute difference")
        if not torch.allclose(got, expected, atol=1e-6):
            raise CheckFailed("values differ from max_j |x_j − (x0)_j|", "take the absolute value before the maximum")
        return "one ℓ∞ distance per example, max_j |x_j − (x0)_j|"

    return _report("check_linf_distance", body)


def _reference_training_step(model, optimizer, x, y, attack, *, train_on_clean=False, zero_grad=True) -> float:
    """The lecture's recipe for one mini-batch (and two classic mistakes, for diagnosing)."""
    x_in = x if train_on_clean else attack(model, x, y)
    model.train()
    loss = F.cross_entropy(model(x_in), y)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def check_adversarial_training_step(step: Callable) -> bool:
    """step(model, optimizer, x, y, attack) must update θ on (attack(model, x, y), y*) and return the loss."""

    def run(fn, **kwargs):
        model, x, y = _linear_case(5, n=12)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        calls = []

        def attack(m, xb, yb):  # FGSM by hand: deterministic, detached, and it records that it was called
            calls.append(m)
            return fgsm_closed_form(m, xb, yb, 0.2)

        losses = [fn(model, opt, x.clone(), y.clone(), attack, **kwargs) for _ in range(2)]
        return model, losses, calls

    def params(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    def body() -> str:
        expected, ref_losses, _ = run(_reference_training_step)
        got, losses, calls = run(step)
        if not calls:
            raise CheckFailed("your step never called attack(model, x, y)",
                              "step 1 of the recipe: x_adv = attack(model, x, y)")
        if any(m is not got for m in calls):
            raise CheckFailed("attack was called with a different model", "pass the model being trained to the attack")
        if not all(isinstance(v, (float, int)) or (isinstance(v, torch.Tensor) and v.numel() == 1) for v in losses):
            raise CheckFailed("the step should return the mini-batch loss as a number", "return loss.item()")
        if torch.allclose(params(got), params(expected), atol=1e-5):
            if abs(float(losses[0]) - ref_losses[0]) > 1e-4:
                raise CheckFailed(f"the returned loss {float(losses[0]):.4f} is not the adversarial loss {ref_losses[0]:.4f}",
                                  "return the cross-entropy on the attacked batch, computed before the update")
            return "updates θ on (attack(x), y*) with fresh gradients each step and returns the adversarial loss"
        if torch.allclose(params(got), params(run(_reference_training_step, train_on_clean=True)[0]), atol=1e-5):
            raise CheckFailed("the weights moved as if you trained on the clean batch",
                              "compute the loss on model(x_adv), not model(x)")
        if torch.allclose(params(got), params(run(_reference_training_step, zero_grad=False)[0]), atol=1e-5):
            raise CheckFailed("gradients from the previous step were added to this one",
                              "call optimizer.zero_grad() before loss.backward()")
        raise CheckFailed(f"after two steps the weights differ from the recipe's (max difference "
                          f"{(params(got) - params(expected)).abs().max():.3g})",
                          "x_adv = attack(model, x, y); loss = F.cross_entropy(model(x_adv), y); zero_grad, "
                          "backward, optimizer.step()")

    return _report("check_adversarial_training_step", body)


def check_white_box_vs_transfer(fn: Callable) -> bool:
    """fn(model, surrogate, x, y, attack) → (white-box accuracy, transfer accuracy) of `model`."""

    def body() -> str:
        # Chosen so that all three numbers differ: some digits the model gets wrong when clean are
        # "fixed" by the transferred perturbation, and must not be counted.
        model, x, y = _linear_case(6, n=100)
        surrogate, _, _ = _linear_case(7, n=100)
        attack = lambda m, xb, yb: fgsm_closed_form(m, xb, yb, 0.1)
        with torch.no_grad():
            clean_ok = model(x).argmax(1) == y
            white = ((model(attack(model, x, y)).argmax(1) == y) & clean_ok).float().mean().item()
            transfer = ((model(attack(surrogate, x, y)).argmax(1) == y) & clean_ok).float().mean().item()
            transfer_any = (model(attack(surrogate, x, y)).argmax(1) == y).float().mean().item()
        got = fn(model, surrogate, x.clone(), y.clone(), attack)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise CheckFailed("return a pair (white_box_accuracy, transfer_accuracy)")
        got_white, got_transfer = (float(v) for v in got)
        if abs(got_white - transfer) < 1e-6 and abs(got_transfer - white) < 1e-6 and white != transfer:
            raise CheckFailed("the two numbers are swapped", "return (white-box, transfer) in that order")
        if abs(got_white - white) > 1e-6:
            raise CheckFailed(f"white-box accuracy {got_white:.3f}, expected {white:.3f}",
                              "attack the model itself: attack(model, x, y), then classify with model")
        if abs(got_transfer - transfer) > 1e-6:
            raise CheckFailed(f"transfer accuracy {got_transfer:.3f}, expected {transfer:.3f}",
                              "make the examples on the surrogate, attack(surrogate, x, y), classify them with model, "
                              "and count only digits model gets right when clean"
                              if abs(got_transfer - transfer_any) > 1e-6 else
                              "count a digit only if model also classifies its clean version correctly")
        return f"white-box {white:.0%} and transfer {transfer:.0%} on two linear models, as the reference computes"

    return _report("check_white_box_vs_transfer", body)
