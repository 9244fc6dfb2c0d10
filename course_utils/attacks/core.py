"""What every attack shares: losses, eval mode, input checks, gradients, and THE worst-case rule.

The rules every attack of the course follows:
- it returns a detached batch in [0, 1] inside its threat model around the clean batch;
- it takes gradients with `torch.autograd.grad` with respect to its own variables only, so the
  model's parameter gradients are never touched;
- it runs the model in eval mode and gives it back the mode it found;
- it treats each example on its own (losses are summed, never averaged, so one example's step
  does not depend on the batch it sits in);
- over restarts or candidates it keeps, per example, the worst case (`worst_case`).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..images import check_batch

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # attack(model, x, y) -> x_adv
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # loss(logits, y) -> one value per example


# ----------------------------------------------------------------------------- losses
def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy, −log p(y|x)."""
    return F.cross_entropy(logits, y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example Carlini–Wagner margin: max_{j≠y} z_j − z_y (positive once x is misclassified).

    Unlike the cross-entropy it does not saturate when the softmax does, which is why it
    breaks defences that only flatten the softmax (05_gradient_masking).
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.amax(dim=1) - true


# ----------------------------------------------------------------------------- model mode
@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (no dropout, frozen batch-norm statistics), then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- input checks
def check_number(name: str, value, *, positive: bool = False) -> float:
    """`value` as a float, or a ValueError naming `name` unless it is a finite number ≥ 0 (> 0 if `positive`)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be ≥ 0, got {value}")
    return float(value)


def check_count(name: str, value, minimum: int = 1) -> int:
    """`value` unless it is not an int ≥ `minimum` (then a ValueError naming `name`)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    return value


def check_steps(steps) -> int:
    return check_count("steps", steps, 0)


def norm_name(norm) -> str:
    """'inf', '2' or '1' for any of the usual spellings (np.inf, 'linf', 2, 'l2', 1.0, …)."""
    key = str(norm).lower().lstrip("l")
    if key in ("inf", "infinity"):
        return "inf"
    if key in ("2", "2.0"):
        return "2"
    if key in ("1", "1.0"):
        return "1"
    raise ValueError(f"norm must be 'inf', 2 or 1, got {norm!r}")


def check_eps(eps, norm: str, x: torch.Tensor | None = None):
    """ε as a float, or, for ℓ∞ with a tensor of one budget per image of `x`, as an N×1×…×1 tensor."""
    if isinstance(eps, torch.Tensor) and eps.numel() != 1:
        return per_example_budget("eps", eps, norm, x)
    eps = check_number("eps", eps)
    if norm == "inf" and eps > 1:
        raise ValueError(
            f"eps={eps} is larger than the whole [0, 1] pixel range; ℓ∞ budgets are in pixel units "
            "(e.g. 0.1 on MNIST, 8/255 on CIFAR-10)"
        )
    return eps


def per_example_budget(name: str, value: torch.Tensor, norm: str, x: torch.Tensor | None) -> torch.Tensor:
    """One budget per image (e.g. for a bisection over ε, `evaluate.smallest_flipping_eps`), shaped to broadcast."""
    if norm != "inf" or x is None:
        raise ValueError(f"{name}: one value per image is supported for ℓ∞ attacks only, got a tensor for norm {norm!r}")
    if value.dim() != 1 or value.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must be a number or hold one value per image ({x.shape[0]}), got shape {tuple(value.shape)}")
    value = value.detach().to(device=x.device, dtype=x.dtype)
    lo, hi = torch.aminmax(value)
    if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < 0 or (name == "eps" and hi > 1):
        raise ValueError(f"{name} values must be finite and in [0, 1] (pixel units), got [{lo.item():.3g}, {hi.item():.3g}]")
    return value.view(-1, *([1] * (x.dim() - 1)))


def as_plain(x: torch.Tensor) -> torch.Tensor:
    """A detached tensor that autograd accepts (tensors made under inference_mode are not)."""
    x = x.detach()
    return x.clone() if x.is_inference() else x


def attack_inputs(model: nn.Module, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an attack's batch and return it as plain tensors (x0, y).

    x must be N×C×H×W images in [0, 1] without NaN, y one int64 label per image, and every label
    must be one of the model's classes: the model is asked once, on one image, how many it has, so
    a wrong label is a ValueError here rather than an IndexError deep inside the loss.
    """
    check_batch(x, y)
    x0, y = as_plain(x), as_plain(y)  # labels from predict() are inference tensors too
    if len(y):
        with eval_mode(model), torch.no_grad():
            classes = model(x0[:1]).shape[1]
        check_batch(x0, y, classes)
    return x0, y


# ----------------------------------------------------------------------------- gradients
def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = cross_entropy) -> torch.Tensor:
    """∇x of the summed per-example loss; the model's parameter gradients are left alone."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = loss_fn(model(x), y).sum()
        (grad,) = torch.autograd.grad(loss, x)
    return grad


# ----------------------------------------------------------------------------- the worst case
def per_example(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An N-vector shaped to broadcast against an N×… batch."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


@torch.no_grad()
def outcome(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *, targeted: bool = False,
            loss_fn: LossFn = cross_entropy) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: did the attack succeed, and how high is the attacker's objective."""
    logits = model(x_adv)
    pred = logits.argmax(dim=1)
    loss = loss_fn(logits, y)
    if targeted:
        return pred == y, -loss
    return pred != y, loss


def worst_case(model: nn.Module, y: torch.Tensor, candidates: Iterable[torch.Tensor], *, targeted: bool = False,
               loss_fn: LossFn = cross_entropy) -> torch.Tensor:
    """THE worst-case rule: per example, the first candidate that fools the model, else the one with
    the highest loss. The model must already be in eval mode.

    Keeping the first success (rather than a later one with a higher loss) means an example that
    the first candidate fools, e.g. the clean image, stays fooled, and that later candidates can
    only add successes. `candidates` may be a generator, so only one batch is alive at a time.
    APGD's restarts (`apgd`) follow the same rule by attacking only the examples still standing;
    `evaluate.robust_mask` is its form for accuracies: robust only if no attack fools the example.
    """
    best = best_fooled = best_loss = None
    for candidate in candidates:
        fooled, loss = outcome(model, candidate, y, targeted=targeted, loss_fn=loss_fn)
        if best is None:
            best, best_fooled, best_loss = candidate, fooled, loss
            continue
        better = ~best_fooled & (fooled | (loss > best_loss))
        best = torch.where(per_example(better, candidate), candidate, best)
        best_fooled, best_loss = best_fooled | fooled, torch.where(better, loss, best_loss)
    if best is None:
        raise ValueError("worst_case needs at least one candidate")
    return best
