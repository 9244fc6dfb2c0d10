"""Self-check for the exercise of 05_gradient_masking: white-box against transfer accuracy."""
from __future__ import annotations

from typing import Callable

import torch

from .fgsm import fgsm_closed_form
from .harness import CheckFailed, linear_case, report, require_finite, require_same_weights, weights


def check_white_box_vs_transfer(fn: Callable) -> bool:
    """fn(model, surrogate, x, y, attack) → (white-box accuracy, transfer accuracy) of `model`."""

    def body() -> str:
        # Chosen so that all three numbers differ: some digits the model gets wrong when clean are
        # "fixed" by the transferred perturbation, and must not be counted.
        model, x, y = linear_case(6, n=100)
        surrogate, _, _ = linear_case(7, n=100)
        attack = lambda m, xb, yb: fgsm_closed_form(m, xb, yb, 0.1)
        with torch.no_grad():
            clean_ok = model(x).argmax(1) == y
            white = ((model(attack(model, x, y)).argmax(1) == y) & clean_ok).float().mean().item()
            transfer = ((model(attack(surrogate, x, y)).argmax(1) == y) & clean_ok).float().mean().item()
            transfer_any = (model(attack(surrogate, x, y)).argmax(1) == y).float().mean().item()
        before = weights(model), weights(surrogate)
        got = fn(model, surrogate, x.clone(), y.clone(), attack)
        require_same_weights(model, before[0])
        require_same_weights(surrogate, before[1])
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise CheckFailed("return a pair (white_box_accuracy, transfer_accuracy)")
        got_white, got_transfer = (float(v) for v in got)
        require_finite("the pair you returned", got_white)
        require_finite("the pair you returned", got_transfer)
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

    return report("check_white_box_vs_transfer", body)
