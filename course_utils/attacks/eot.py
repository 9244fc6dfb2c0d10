"""Expectation over Transformation (EOT; Athalye et al. 2018): PGD against a randomised model.

A randomised defence answers every forward pass with a fresh random draw, so one input gradient
belongs to one draw and points somewhere that the next draw may not honour. The attacker's fix is
to attack the expected loss: its gradient is the average of the per-draw gradients, estimated
with `samples` forward and backward passes per step.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .core import (LossFn, attack_inputs, check_count, check_eps, check_number, check_steps, cross_entropy,
                   eval_mode, input_gradient)
from .lp import pgd_run

GradientFn = Callable[..., torch.Tensor]  # gradient(model, x, y, samples) -> ∇x, shaped like x


def eot_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int,
                 loss_fn: LossFn = cross_entropy) -> torch.Tensor:
    """The mean over `samples` forward passes of ∇x of the summed per-example loss: an unbiased estimate of
    the gradient of the expected loss E_t[loss(model_t(x), y)]. Parameter gradients are left alone."""
    samples = check_count("samples", samples)
    return sum(input_gradient(model, x, y, loss_fn) for _ in range(samples)) / samples


def pgd_with(
    gradient: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    *,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ℓ∞ PGD whose steps follow `gradient(model, x, y)` in place of the model's own input gradient: the
    frame of every adaptive attack (BPDA's gradient through a surrogate layer, EOT's average over draws).

    No worst case over candidates is taken: for a random model, whether a candidate fools it is itself
    random, so the last iterate is returned (evaluate a random model with `defenses.expected_correct`).
    """
    x0, y = attack_inputs(model, x, y)
    eps = check_eps(eps, "inf", x0)
    alpha = check_number("alpha", alpha, positive=True)
    steps = check_steps(steps)
    with eval_mode(model):
        return pgd_run(model, x0, y, eps, alpha, steps, "inf", random_start, False, cross_entropy, generator, gradient)


def eot_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, *,
            samples: int = 10, random_start: bool = True, generator: torch.Generator | None = None,
            gradient: GradientFn = eot_gradient) -> torch.Tensor:
    """PGD on the expected cross-entropy of a randomised model: every step follows
    `gradient(model, x, y, samples)` (by default `eot_gradient`). With samples=1 it is plain PGD on one
    draw per step."""
    samples = check_count("samples", samples)
    return pgd_with(lambda m, xb, yb: gradient(m, xb, yb, samples), model, x, y, eps, alpha, steps,
                    random_start=random_start, generator=generator)
