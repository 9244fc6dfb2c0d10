"""What every self-check shares: the failure it raises, the report it prints, the tiny test cases.

The contract: a check runs the student's function on tiny cases with known answers, prints one
clear line — a pass, or what is wrong and a hint — and returns a boolean that the notebook records
in its results JSON (the grader reads it). A check never raises: an unfinished exercise
(`NotImplementedError`) or a crash is reported as a failed check, so the rest of the notebook still runs.
"""
from __future__ import annotations

import math
import traceback
from typing import Callable

import torch
from torch import nn


class CheckFailed(AssertionError):
    """A self-check found a wrong answer; the message says what and gives a hint."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(what)
        self.what, self.hint = what, hint


def report(name: str, body: Callable[[], str]) -> bool:
    """Run `body` (which returns what passed, or raises `CheckFailed`), print one line, return whether it passed."""
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


def linear_case(seed: int = 0, n: int = 6, d: int = 8, classes: int = 3):
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


def weights(model: nn.Module) -> list[torch.Tensor]:
    """A copy of the model's parameters and buffers, to show later that a function left them alone."""
    return [t.detach().clone() for t in model.state_dict().values()]


def require_same_weights(model: nn.Module, before: list[torch.Tensor]) -> None:
    """Raise `CheckFailed` if the student's function changed the model's weights: an attack or a measurement
    reads the model, and a check that computed its reference on a changed model would be fooled."""
    if any(not torch.equal(a, b) for a, b in zip(before, model.state_dict().values())):
        raise CheckFailed("your function changed the model's weights", "read the model, never write to its parameters")


def require_finite(name: str, value) -> None:
    """Raise `CheckFailed` for NaN or infinite numbers, which pass every `>` and `<` test unnoticed."""
    values = value.detach().flatten().tolist() if isinstance(value, torch.Tensor) else [value]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise CheckFailed(f"{name} contains NaN or infinite values", "return finite numbers")


def require_untouched_parameter_grads(model: nn.Module, hint: str) -> None:
    """Raise `CheckFailed` if the student's function left gradients on the model's parameters."""
    if any(p.grad is not None for p in model.parameters()):
        raise CheckFailed("your function changed the model's parameter gradients", hint)


def require_linf_attack_output(name: str, x_adv, x: torch.Tensor, eps: float, model: nn.Module) -> None:
    """Raise `CheckFailed` unless `x_adv` is a detached batch shaped like `x`, in the ℓ∞ ball of radius
    `eps` around it and in [0, 1], made without touching the model's parameter gradients."""
    if not isinstance(x_adv, torch.Tensor):
        raise CheckFailed(f"{name} returned {type(x_adv).__name__}, not a tensor", "return the adversarial batch")
    if not bool(torch.isfinite(x_adv).all()):
        raise CheckFailed(f"{name} returned NaN or infinite pixels", "return the adversarial batch, in [0, 1]")
    if x_adv.shape != x.shape:
        raise CheckFailed(f"output shape {tuple(x_adv.shape)} differs from the input's {tuple(x.shape)}")
    if x_adv.requires_grad:
        raise CheckFailed("the returned tensor still requires grad", "return x_adv.detach()")
    if (x_adv - x).abs().max() > eps + 1e-6:
        raise CheckFailed(f"‖x_adv − x‖∞ = {(x_adv - x).abs().max():.4f} exceeds ε = {eps}",
                          "the perturbation must stay inside the ε-ball")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise CheckFailed("some pixels left [0, 1]", "clip with torch.clamp(x_adv, 0, 1)")
    require_untouched_parameter_grads(
        model, "take the input gradient with torch.autograd.grad(loss, x) instead of loss.backward()")
