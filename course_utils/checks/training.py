"""Self-check for the exercise of 04_adversarial_training: one step of adversarial training."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .fgsm import fgsm_closed_form
from .harness import CheckFailed, linear_case, report


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
        model, x, y = linear_case(5, n=12)
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
            if not abs(float(losses[0]) - ref_losses[0]) <= 1e-4:  # NaN fails too
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

    return report("check_adversarial_training_step", body)
