"""Self-checks for the exercises of 10_breaking_defenses: the BPDA gradient and the EOT gradient."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.core import input_gradient
from ..defenses import quantize
from .harness import CheckFailed, report, require_finite, require_same_weights, require_untouched_parameter_grads, weights

BPDA_LEVELS = (2, 5, 16)


def _tiny_classifier(seed: int) -> nn.Module:
    """A seeded 3-class classifier of 2×4 images whose input gradient is non-zero almost everywhere."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def _tiny_batch(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 4, generator=g)
    return x, torch.randint(0, 3, (n,), generator=g)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _require_plain_tensor(name: str, got, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name} returned {type(got).__name__}, expected a tensor shaped like x {tuple(like.shape)}")
    if got.shape != like.shape:
        raise CheckFailed(f"{name} returned shape {tuple(got.shape)}, expected x's shape {tuple(like.shape)}",
                          "the gradient with respect to x has x's shape: take torch.autograd.grad(loss, x)")
    if got.requires_grad:
        raise CheckFailed(f"{name} returned a tensor that still requires grad", "return grad.detach()")
    require_finite(f"{name}'s result", got)
    return got


def check_bpda_gradient(bpda_gradient: Callable) -> bool:
    """bpda_gradient(model, x, y, levels) must return ∇x of the summed cross-entropy of model(q(x)), with q
    the quantiser on the forward pass and the identity on the backward pass: the model's gradient at q(x)."""

    def body() -> str:
        for seed, levels in enumerate(BPDA_LEVELS):
            model = _tiny_classifier(seed)
            x, y = _tiny_batch(seed)
            before = weights(model)
            got = _require_plain_tensor("bpda_gradient", bpda_gradient(model, x, y, levels), x)
            require_same_weights(model, before)
            require_untouched_parameter_grads(model, "take the gradient with torch.autograd.grad(loss, x), not loss.backward()")
            q = quantize(x, levels)
            want = input_gradient(model, q, y)
            where = f"levels = {levels}"
            if _close(got, want):
                continue
            if torch.count_nonzero(got) == 0:
                raise CheckFailed(f"{where}: your gradient is all zeros — the plain quantiser's gradient, which is what the "
                                  "defence shows every gradient attack", "the backward pass must return grad_output unchanged")
            if _close(got, input_gradient(model, x, y)):
                raise CheckFailed(f"{where}: this is the model's gradient at x, without the quantiser: the forward pass "
                                  "must still quantise (the attacker differentiates the real defence)",
                                  "forward returns quantize(x, levels); only backward is the identity")
            if _close(got * len(y), want):
                raise CheckFailed(f"{where}: your gradient is 1/N of the expected one: the loss was averaged over the batch",
                                  'use F.cross_entropy(..., reduction="sum"), so each image gets its own gradient')
            if _close(got, want.sign()):
                raise CheckFailed(f"{where}: you returned the sign of the gradient", "return the gradient itself; PGD takes the sign")
            steps = levels
            wrong_grid = input_gradient(model, torch.round(x * steps) / steps, y)
            if _close(got, wrong_grid):
                raise CheckFailed(f"{where}: your quantiser uses {levels} steps, i.e. {levels + 1} grey levels",
                                  "use quantize(x, levels) from course_utils.defenses: levels − 1 steps")
            raise CheckFailed(f"{where}: your gradient differs from the model's gradient at quantize(x, levels) "
                              f"(largest difference {(got - want).abs().max().item():.3g})",
                              "forward: quantize(x, levels); backward: return grad_output, None; loss summed over the batch")
        # Per example: the first half's gradient does not depend on the second half.
        model, (x, y) = _tiny_classifier(7), _tiny_batch(7)
        whole = bpda_gradient(model, x, y, 5)
        half = bpda_gradient(model, x[:3], y[:3], 5)
        if not _close(whole[:3], half):
            raise CheckFailed("an image's gradient changed with the other images in the batch", "sum the per-image losses")
        return f"straight-through gradient at {len(BPDA_LEVELS)} quantisation grids, per image, model untouched"

    return report("check_bpda_gradient", body)


class _Alternating(nn.Module):
    """A 'random' model made for the check: branch A on even calls, B on odd ones, and a count of its calls.
    With an even number of samples the expected gradient is (∇A + ∇B)/2, wherever the count starts."""

    def __init__(self, seed: int):
        super().__init__()
        self.a, self.b = _tiny_classifier(seed), _tiny_classifier(seed + 100)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.a if self.calls % 2 == 0 else self.b)(x)


def check_eot_gradient(eot_gradient: Callable) -> bool:
    """eot_gradient(model, x, y, samples) must return the mean over `samples` forward/backward passes of ∇x of
    the summed cross-entropy: the gradient of the expected loss over the model's randomness."""

    def body() -> str:
        deterministic, (x, y) = _tiny_classifier(3), _tiny_batch(3)
        got = _require_plain_tensor("eot_gradient", eot_gradient(deterministic, x, y, 3), x)
        want = input_gradient(deterministic, x, y)
        if _close(got, 3 * want):
            raise CheckFailed("on a deterministic model, 3 samples gave 3 times its gradient: you summed the draws",
                              "divide the sum by samples: EOT is an average")
        if _close(got * len(y), want):
            raise CheckFailed("your gradient is 1/N of the expected one: the loss was averaged over the batch",
                              'use F.cross_entropy(..., reduction="sum")')
        if _close(got, want.sign()):
            raise CheckFailed("you averaged the signs of the gradients", "average the gradients themselves; PGD takes the sign")
        if not _close(got, want):
            raise CheckFailed("on a model without randomness, the EOT gradient must equal the model's own input gradient",
                              "average the input gradients of `samples` forward/backward passes")
        for seed, samples in ((0, 2), (1, 6)):
            model, (x, y) = _Alternating(seed), _tiny_batch(seed + 10)
            before = weights(model)
            start = model.calls
            got = _require_plain_tensor("eot_gradient", eot_gradient(model, x, y, samples), x)
            require_same_weights(model, before)
            require_untouched_parameter_grads(model, "take each gradient with torch.autograd.grad(loss, x)")
            ga, gb = input_gradient(model.a, x, y), input_gradient(model.b, x, y)
            want = (ga + gb) / 2
            where = f"samples = {samples}, a model with two equally likely branches"
            if _close(got, want):
                if model.calls - start not in (0, samples):  # 0: the grader's proxy does not report the count back
                    raise CheckFailed(f"{where}: right answer, but the model was called {model.calls - start} times",
                                      "one forward and one backward pass per sample")
                continue
            if _close(got, ga) or _close(got, gb):
                raise CheckFailed(f"{where}: your gradient is one branch's gradient: only one draw was used",
                                  "loop over samples, each with its own forward pass")
            if _close(got, samples * want):
                raise CheckFailed(f"{where}: your gradient is the sum over draws, {samples} times the average",
                                  "divide by samples")
            if _close(got, (ga.sign() + gb.sign()) / 2):
                raise CheckFailed(f"{where}: you averaged the signs of the gradients", "average the gradients themselves")
            xs = x.detach().requires_grad_(True)
            mean_logits = (model.a(xs) + model.b(xs)) / 2
            (of_mean,) = torch.autograd.grad(F.cross_entropy(mean_logits, y, reduction="sum"), xs)
            if _close(got, of_mean):
                raise CheckFailed(f"{where}: you averaged the logits and took one gradient; EOT averages the gradients "
                                  "of the loss over draws", "compute the loss and its gradient inside the loop, then average")
            if _close(got * len(y), want):
                raise CheckFailed(f"{where}: your gradient is 1/N of the expected one: the loss was averaged over the batch",
                                  'use F.cross_entropy(..., reduction="sum")')
            raise CheckFailed(f"{where}: expected the mean of the two branches' gradients "
                              f"(largest difference {(got - want).abs().max().item():.3g})",
                              "sum the input gradients of `samples` passes and divide by samples")
        return "the mean of the draws' input gradients, equal to the plain gradient without randomness, model untouched"

    return report("check_eot_gradient", body)
