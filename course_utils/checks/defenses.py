"""Self-checks for the exercises of 10_breaking_defenses: the BPDA gradient and the EOT gradient.

- Exercise 1, `bpda_gradient(model, x, y, levels)`: ∇x of the summed cross-entropy of `model(q)`, q the
  straight-through quantised x (`defenses.quantize` forward, the identity backward), which is the model's own
  input gradient at `quantize(x, levels)` (the reference is `defenses.bpda_gradient`);
- Exercise 2, `eot_gradient(model, x, y, samples)`: the mean over `samples` forward/backward passes of ∇x of
  the summed cross-entropy, the gradient of the expected loss over the model's randomness (the reference is
  `attacks.eot.eot_gradient`).

Each check calls the student's function on tiny seeded models, compares it with an answer computed here
independently, and names the usual mistakes. Both run unchanged on the grader's proxies
(`classroom.remote`): the arguments are plain modules and tensors, and the "random" model of the EOT check
keeps its count of forward passes in a buffer, which the proxy mirrors back (a plain int attribute would not be).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.core import input_gradient
from ..defenses import quantize
from .harness import CheckFailed, report, require_finite, require_same_weights, require_untouched_parameter_grads, weights

BPDA_LEVELS = (2, 5, 16)  # a binary image, a coarse grid, a fine one
GRAD_HINT = ("take the input gradient with torch.autograd.grad(loss, x) instead of loss.backward(), which also "
             "fills the model's parameters' .grad")
SUM_HINT = 'use F.cross_entropy(logits, y, reduction="sum"): each image then gets the gradient of its own loss'


# ----------------------------------------------------------------------------- what both checks share
def _tiny_classifier(seed: int) -> nn.Module:
    """A seeded 3-class classifier of 1×2×4 images, non-linear (so that where the gradient is taken matters)."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def _tiny_batch(seed: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """N images with pixels uniform in [0, 1]: almost none on any quantisation grid, so rounding moves them all."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 2, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _gradient_of(name: str, got, x: torch.Tensor) -> torch.Tensor:
    """The student's answer as a float tensor shaped like x, or `CheckFailed`. A tensor that is not a leaf is
    fine (torch.autograd.grad returns one); one that still requires grad is not."""
    if got is None:
        raise CheckFailed(f"{name} returned None, expected the gradient, a tensor shaped like x {tuple(x.shape)}",
                          "end with `return grad.detach()`, grad from (grad,) = torch.autograd.grad(loss, x)")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name} returned {type(got).__name__}, expected a tensor shaped like x {tuple(x.shape)}",
                          "return the gradient itself, a tensor")
    if got.shape != x.shape:
        raise CheckFailed(f"{name} returned shape {tuple(got.shape)}, expected x's shape {tuple(x.shape)}",
                          "the gradient with respect to x has x's shape: (grad,) = torch.autograd.grad(loss, x)")
    require_finite(f"{name}'s result", got)
    if got.requires_grad:
        raise CheckFailed(f"{name} returned a tensor that still requires grad (it carries an autograd graph)",
                          "return grad.detach(), and take the gradient without create_graph=True")
    return got.detach().float()


# ----------------------------------------------------------------------------- exercise 1: BPDA
def _name_the_bpda_mistake(got: torch.Tensor, model: nn.Module, x: torch.Tensor, y: torch.Tensor, levels: int) -> None:
    """`CheckFailed` unless `got` is the model's input gradient at quantize(x, levels), naming the usual mistakes."""
    q = quantize(x, levels)
    want = input_gradient(model, q, y)
    if _close(got, want):
        return
    where = f"levels = {levels}"
    if not got.any():
        raise CheckFailed(f"{where}: your gradient is all zeros — the plain quantiser's gradient (torch.round has "
                          "derivative 0 almost everywhere); that is what the defence shows every gradient attack",
                          "in backward, pass the incoming gradient through: `return grad_output, None`; and quantise "
                          "with YourFunction.apply(x, levels), not with quantize(x, levels) directly")
    if _close(got, -want):
        raise CheckFailed(f"{where}: your gradient points in the opposite direction (−∇ of the loss)",
                          "differentiate the cross-entropy itself, not its negative: the attack ascends it")
    if _close(got, want.sign()):
        raise CheckFailed(f"{where}: you returned the sign of the gradient, not the gradient",
                          "return the gradient itself; PGD takes the sign when it steps")
    if _close(got, input_gradient(model, x, y)):
        raise CheckFailed(f"{where}: this is the model's gradient at x, without the quantiser: the quantiser was dropped "
                          "from the forward pass too, but the attacker must differentiate the real defence",
                          "forward returns quantize(x, levels); only backward is the identity")
    if _close(got * len(y), want):
        raise CheckFailed(f"{where}: your gradient is 1/N of the expected one (N = {len(y)}): the loss was averaged "
                          "over the batch", SUM_HINT)
    if _close(got, input_gradient(model, torch.round(x * levels) / levels, y)):
        raise CheckFailed(f"{where}: your quantiser uses {levels} steps, i.e. {levels + 1} grey values, not {levels}",
                          "use quantize(x, levels) from course_utils.defenses: levels − 1 steps, round(x·(levels−1)) / (levels−1)")
    if _close(got, input_gradient(model, torch.floor(x * (levels - 1)) / (levels - 1), y)):
        raise CheckFailed(f"{where}: your quantiser rounds down (floor), not to the nearest grey value",
                          "use quantize(x, levels) from course_utils.defenses, which rounds to the nearest")
    raise CheckFailed(f"{where}: your gradient differs from the model's gradient at quantize(x, levels) "
                      f"(largest difference {(got - want).abs().max().item():.3g})",
                      'forward: quantize(x, levels); backward: `return grad_output, None`; '
                      'loss F.cross_entropy(model(q), y, reduction="sum"); gradient with respect to x')


def check_bpda_gradient(bpda_gradient: Callable) -> bool:
    """bpda_gradient(model, x, y, levels) must return ∇x of the summed cross-entropy of model(q), q the
    quantiser on the forward pass and the identity on the backward pass: the model's gradient at quantize(x, levels),
    detached, per image, with the model's weights and parameter gradients left alone."""

    def call(model: nn.Module, x: torch.Tensor, y: torch.Tensor, levels: int) -> torch.Tensor:
        before = weights(model)
        got = bpda_gradient(model, x.clone(), y.clone(), levels)
        require_same_weights(model, before)
        require_untouched_parameter_grads(model, GRAD_HINT)
        return _gradient_of("bpda_gradient", got, x)

    def body() -> str:
        for seed, levels in enumerate(BPDA_LEVELS):
            model, (x, y) = _tiny_classifier(seed), _tiny_batch(seed)
            _name_the_bpda_mistake(call(model, x, y, levels), model, x, y, levels)
        # Per image: a batch's gradient is its halves' gradients put together.
        model, (x, y) = _tiny_classifier(7), _tiny_batch(7)
        whole = call(model, x, y, 5)
        _name_the_bpda_mistake(whole, model, x, y, 5)
        halves = torch.cat([call(model, x[:3], y[:3], 5), call(model, x[3:], y[3:], 5)])
        if not _close(whole, halves):
            raise CheckFailed("an image's gradient depends on the other images in the batch: the gradient of a batch of 6 "
                              "differs from the gradients of its two halves of 3 put together",
                              "each image's gradient must be that of its own loss: sum the per-image losses, and do not "
                              "rescale by the batch or mix images")
        return (f"the model's gradient at the quantised image for {len(BPDA_LEVELS)} grids (levels {BPDA_LEVELS}), "
                "per image, detached, model untouched")

    return report("check_bpda_gradient", body)


# ----------------------------------------------------------------------------- exercise 2: EOT
class _Cycling(nn.Module):
    """A 'random' model made for the check: call k (counting from `start`) uses branch k mod len(branches), and
    the buffer `calls` counts the forward passes. With two branches and an even number of samples, the expected
    gradient is (∇A + ∇B) / 2 wherever the count starts; with one branch the model is deterministic."""

    def __init__(self, *branches: nn.Module, start: int = 0):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.register_buffer("calls", torch.tensor(start))  # a buffer, so that the grader's proxy mirrors it back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.branches[int(self.calls) % len(self.branches)]
        with torch.no_grad():
            self.calls.add_(1)
        return branch(x)


def _of_mean_logits(branches, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇x of the cross-entropy of the branches' averaged logits: one gradient of an averaged model."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = sum(b(x) for b in branches) / len(branches)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return g


def _of_mean_probabilities(branches, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇x of −log of the branches' averaged probability of y."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        probs = sum(F.softmax(b(x), dim=1) for b in branches) / len(branches)
        (g,) = torch.autograd.grad(F.nll_loss(probs.log(), y, reduction="sum"), x)
    return g


def check_eot_gradient(eot_gradient: Callable) -> bool:
    """eot_gradient(model, x, y, samples) must return the mean over `samples` forward/backward passes of ∇x of
    the summed cross-entropy: the gradient of the expected loss over the model's randomness, detached, with the
    model's weights and parameter gradients left alone."""

    def call(model: _Cycling, x: torch.Tensor, y: torch.Tensor, samples: int) -> tuple[torch.Tensor, int]:
        """The student's gradient and how many forward passes it made."""
        before, start = weights(model.branches), int(model.calls)
        got = eot_gradient(model, x.clone(), y.clone(), samples)
        require_same_weights(model.branches, before)
        require_untouched_parameter_grads(model, GRAD_HINT)
        return _gradient_of("eot_gradient", got, x), int(model.calls) - start

    def too_few(where: str, samples: int, calls: int) -> CheckFailed:
        return CheckFailed(f"{where}: the model was called {calls} time{'s' * (calls != 1)} for samples = {samples}: "
                           "EOT needs one forward/backward per sample",
                           "loop `for _ in range(samples)`, with a forward pass, a loss and its gradient in each round")

    def body() -> str:
        # Two equally likely branches; an even number of samples, counted from an even and from an odd start.
        for seed, samples, start in ((0, 2, 0), (1, 6, 3)):
            a, b = _tiny_classifier(seed), _tiny_classifier(seed + 100)
            model, (x, y) = _Cycling(a, b, start=start), _tiny_batch(seed + 10)
            ga, gb = input_gradient(a, x, y), input_gradient(b, x, y)
            want = (ga + gb) / 2
            got, calls = call(model, x, y, samples)
            where = f"samples = {samples}, a model with two equally likely draws"
            if _close(got, want):
                if calls < samples:
                    raise too_few(where, samples, calls)
                continue
            if _close(got, ga) or _close(got, gb):
                raise CheckFailed(f"{where}: your gradient is one draw's gradient: only one draw was used "
                                  f"(the model was called {calls} time{'s' * (calls != 1)})",
                                  "average `samples` gradients, each from its own forward and backward pass")
            if _close(got, samples * want):
                raise CheckFailed(f"{where}: your gradient is {samples} times the average: you summed the draws",
                                  "divide the sum by samples: EOT is an average")
            if _close(got, (ga.sign() + gb.sign()) / 2):
                raise CheckFailed(f"{where}: you averaged the signs of the draws' gradients",
                                  "average the gradients themselves; PGD takes the sign of the average when it steps")
            if _close(got, want.sign()):
                raise CheckFailed(f"{where}: you returned the sign of the averaged gradient, not the gradient",
                                  "return the average itself; PGD takes the sign when it steps")
            if _close(got, _of_mean_logits((a, b), x, y)):
                raise CheckFailed(f"{where}: you averaged the logits and took one gradient; EOT averages the gradients "
                                  "of the loss over draws (the cross-entropy of a mean is not the mean of the cross-entropies)",
                                  "compute the loss and its gradient inside the loop, then average the gradients")
            if _close(got, _of_mean_probabilities((a, b), x, y)):
                raise CheckFailed(f"{where}: you averaged the probabilities and took one gradient; EOT averages the "
                                  "gradients of the loss over draws",
                                  "compute the loss and its gradient inside the loop, then average the gradients")
            if _close(got * len(y), want):
                raise CheckFailed(f"{where}: your gradient is 1/N of the expected one (N = {len(y)}): the loss was "
                                  "averaged over the batch", SUM_HINT)
            if calls < samples:
                raise too_few(where, samples, calls)
            raise CheckFailed(f"{where}: expected the mean of the two draws' gradients "
                              f"(largest difference {(got - want).abs().max().item():.3g})",
                              "sum the input gradients of `samples` forward/backward passes and divide by samples")

        # One sample: one draw's gradient. Either draw's: an extra forward pass (say, for the predictions) shifts which.
        a, b = _tiny_classifier(2), _tiny_classifier(102)
        model, (x, y) = _Cycling(a, b, start=1), _tiny_batch(12)
        got, calls = call(model, x, y, 1)
        where = "samples = 1"
        ga, gb = input_gradient(a, x, y), input_gradient(b, x, y)
        if not (_close(got, ga) or _close(got, gb)):
            if _close(got * len(y), ga) or _close(got * len(y), gb):
                raise CheckFailed(f"{where}: your gradient is 1/N of the expected one (N = {len(y)}): the loss was "
                                  "averaged over the batch", SUM_HINT)
            if calls < 1:
                raise too_few(where, 1, calls)
            raise CheckFailed(f"{where}: with one sample, EOT is the input gradient of one forward pass, and yours is "
                              "not that of either draw", "range(samples) with samples = 1 is one forward/backward pass")
        if calls < 1:
            raise too_few(where, 1, calls)

        # No randomness: the EOT gradient is the model's own input gradient.
        plain, (x, y) = _tiny_classifier(3), _tiny_batch(3)
        model, samples = _Cycling(plain), 3
        want = input_gradient(plain, x, y)
        got, calls = call(model, x, y, samples)
        where = f"samples = {samples}, a model without randomness"
        if _close(got, samples * want):
            raise CheckFailed(f"{where}: your gradient is {samples} times the model's gradient: you summed the draws",
                              "divide the sum by samples: EOT is an average")
        if _close(got * len(y), want):
            raise CheckFailed(f"{where}: your gradient is 1/N of the expected one (N = {len(y)}): the loss was averaged "
                              "over the batch", SUM_HINT)
        if _close(got, want.sign()):
            raise CheckFailed(f"{where}: you returned the sign of the gradient, not the gradient",
                              "return the average itself; PGD takes the sign when it steps")
        if not _close(got, want):
            raise CheckFailed(f"{where}: the EOT gradient must equal the model's own input gradient "
                              f"(largest difference {(got - want).abs().max().item():.3g})",
                              "average the input gradients of `samples` forward/backward passes")
        if calls < samples:
            raise too_few(where, samples, calls)
        return ("the mean of the draws' input gradients (2 and 6 samples of a two-draw model, 1 sample), the model's "
                "own gradient without randomness, one forward pass per sample, model untouched")

    return report("check_eot_gradient", body)
