"""FGSM and PGD under ℓ∞, ℓ2 and ℓ1, written once over three small per-norm functions each.

Notation follows the lecture: x0 is the clean image, ε the budget, η (`alpha`) the step size,
and g = ∇x log p(y*|x). Maximising the cross-entropy −log p(y*|x) is the same as minimising
log p(y*|x), so FGSM is x = x0 − ε·sign(g) = x0 + ε·sign(∇x CE). Every attack follows the rules
in `attacks.core`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..images import check_images, normal, random_sign, uniform
from .core import (
    LossFn,
    attack_inputs,
    check_count,
    check_eps,
    check_number,
    check_steps,
    cross_entropy,
    eval_mode,
    input_gradient,
    norm_name,
    per_example_budget,
    worst_case,
)


# ----------------------------------------------------------------------------- per-norm pieces
def _per_example_l2(t: torch.Tensor) -> torch.Tensor:
    """‖t_i‖₂ for each example, shaped to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def random_start_linf(x0: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly from the ℓ∞ ball of radius ε around x0 (before clipping to [0, 1])."""
    return x0 + eps * uniform(x0.shape, x0, -1.0, 1.0, generator)  # ε may be one value per image


def step_linf(x: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """Steepest ascent for ℓ∞: move every pixel by η in the direction of its gradient's sign."""
    return x + alpha * grad.sign()


def project_linf(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Closest point to x with ‖x − x0‖∞ ≤ ε and 0 ≤ x ≤ 1 (both are per-pixel clips)."""
    return torch.clamp(torch.minimum(torch.maximum(x, x0 - eps), x0 + eps), 0.0, 1.0)


def random_start_l2(x0: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly from the ℓ2 ball of radius ε around x0: a Gaussian direction, radius ε·U^(1/d)."""
    direction = normal(x0.shape, x0, generator)
    direction = direction / _per_example_l2(direction).clamp_min(1e-12)
    d = x0[0].numel()
    radius = eps * uniform((x0.shape[0], 1), x0, 0.0, 1.0, generator) ** (1.0 / d)
    return x0 + direction * radius.view(-1, *([1] * (x0.dim() - 1)))


def step_l2(x: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """Steepest ascent for ℓ2: a step of length η along the gradient."""
    return x + alpha * grad / _per_example_l2(grad).clamp_min(1e-12)


def project_l2(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Shrink x − x0 onto the ℓ2 ball of radius ε, then clip to [0, 1].

    Clipping after the ball keeps the point inside the ball: since x0 is in [0, 1], each
    clipped coordinate moves towards x0.
    """
    delta = x - x0
    scale = (eps / _per_example_l2(delta).clamp_min(1e-12)).clamp(max=1.0)
    return torch.clamp(x0 + delta * scale, 0.0, 1.0)


# Fraction of the coordinates an ℓ1 step moves. The ℓ1 steepest-ascent direction moves a
# single pixel, which makes PGD crawl; Tramèr & Boneh (2019, "SLIDE") move the top 1 % of
# the gradient instead, which keeps the step sparse, as the ℓ1 ball's vertices are.
L1_STEP_FRACTION = 0.01


def _per_example_l1(t: torch.Tensor) -> torch.Tensor:
    """‖t_i‖₁ for each example, shaped to broadcast against t."""
    return t.flatten(1).abs().sum(dim=1).view(-1, *([1] * (t.dim() - 1)))


def random_start_l1(x0: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly from the ℓ1 ball of radius ε around x0: a Laplace direction, radius ε·U^(1/d).

    i.i.d. Laplace coordinates divided by their ℓ1 norm are uniform on the ℓ1 sphere, just
    as Gaussian ones are on the ℓ2 sphere.
    """
    # Laplace(0, 1) = E1 − E2 with Ei = −log(1 − Ui) exponential; 1 − U > 0 since U < 1.
    laplace = -torch.log1p(-uniform(x0.shape, x0, generator=generator)) + torch.log1p(-uniform(x0.shape, x0, generator=generator))
    direction = laplace / _per_example_l1(laplace).clamp_min(1e-12)
    d = x0[0].numel()
    radius = eps * uniform((x0.shape[0], 1), x0, 0.0, 1.0, generator) ** (1.0 / d)
    return x0 + direction * radius.view(-1, *([1] * (x0.dim() - 1)))


def step_l1(x: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
    """Sparse steepest ascent for ℓ1: move the top-k pixels of |g| by ±η/k (‖step‖₁ = η).

    k is `L1_STEP_FRACTION` of the pixels (at least one). A pixel already at 0 whose
    gradient points down, or at 1 pointing up, cannot move, so it is left out of the
    top-k: on MNIST most pixels sit at 0 and would otherwise swallow the whole step.
    If fewer than k pixels can move, the step spreads η over those that can.
    """
    flat_x, flat_g = x.flatten(1), grad.flatten(1)
    k = max(1, int(L1_STEP_FRACTION * flat_g.shape[1]))
    blocked = ((flat_x <= 0) & (flat_g < 0)) | ((flat_x >= 1) & (flat_g > 0))
    score = flat_g.abs().masked_fill(blocked, 0.0)
    top, index = score.topk(k, dim=1)
    movable = (top > 0).to(flat_g.dtype)  # a zero score is blocked or has no gradient
    signs = flat_g.gather(1, index).sign() * movable
    per_pixel = alpha / movable.sum(dim=1, keepdim=True).clamp_min(1.0)
    step = torch.zeros_like(flat_g).scatter(1, index, signs * per_pixel)
    return x + step.view_as(x)


def project_l1(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """The exact closest point to x with ‖x − x0‖₁ ≤ ε and 0 ≤ x ≤ 1 (the intersection).

    Neither ball-then-clip nor rescaling is the projection here. With v = x − x0 the
    Lagrangian solution is x0 + δ(λ), δ_j(λ) = clip(sign(v_j)·max(|v_j| − λ, 0), −x0_j, 1 − x0_j):
    soft-thresholding by λ, then the box. λ = 0 if that is already in the ball, else the
    λ > 0 where φ(λ) = ‖δ(λ)‖₁ = ε. φ is piecewise linear and non-increasing, with kinks
    where a pixel leaves its bound (λ = |v_j| − b_j, b_j the room towards sign(v_j)) and
    where it reaches x0_j (λ = |v_j|). We sort these 2d kinks per example, get φ at every
    kink from a cumulative sum of slopes, and interpolate linearly inside the segment
    that crosses ε: exact up to rounding, O(d log d), no data-dependent loop or host sync.
    The sum runs from the last kink, where φ = 0, backwards: then φ near ε carries an
    error relative to ε, not to ‖v‖₁, which in float32 is the difference between landing
    on the sphere and missing a small ε by 1e-4.
    """
    v, flat_x0 = (x - x0).flatten(1), x0.flatten(1)
    size = v.abs()
    room = torch.where(v > 0, 1.0 - flat_x0, flat_x0).clamp_min(0.0)
    leaves_bound = (size - room).clamp_min(0.0)  # below this λ the pixel stays clipped at its bound
    phi0 = (size - leaves_bound).sum(dim=1)  # ‖clip(v)‖₁, the ℓ1 size at λ = 0
    kinks = torch.cat([leaves_bound, size], dim=1)
    slope_change = torch.cat([-torch.ones_like(size), torch.ones_like(size)], dim=1)
    kinks, order = kinks.sort(dim=1)
    slope = slope_change.gather(1, order).cumsum(dim=1)  # slope of φ just after each kink
    fall = -slope[:, :-1] * kinks.diff(dim=1)  # how much φ falls over each segment, ≥ 0
    phi = torch.cat([fall.flip(1).cumsum(dim=1).flip(1), torch.zeros_like(fall[:, :1])], dim=1)  # φ at every kink
    # φ is non-increasing, so the kinks above ε form a prefix; the last of them starts the crossing segment.
    k = ((phi > eps).sum(dim=1, keepdim=True) - 1).clamp(0, kinks.shape[1] - 2)
    start, phi_start, slope_start = kinks.gather(1, k), phi.gather(1, k), slope.gather(1, k)
    lam = start + (phi_start - eps) / (-slope_start).clamp_min(1.0)
    lam = torch.minimum(lam, kinks.gather(1, k + 1)).clamp_min(0.0)  # rounding must not leave the segment
    lam = torch.where(phi0[:, None] > eps, lam, torch.zeros_like(lam))
    shrunk = v.sign() * (size - lam).clamp_min(0.0)
    # clamp(x0 + t, 0, 1) = x0 + clip(t, −x0, 1 − x0): the box is applied last, exactly as in δ(λ).
    return torch.clamp(x0 + shrunk.view_as(x), 0.0, 1.0)


NORMS = {
    "inf": (random_start_linf, step_linf, project_linf),
    "2": (random_start_l2, step_l2, project_l2),
    "1": (random_start_l1, step_l1, project_l1),
}


# ----------------------------------------------------------------------------- attacks
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    targeted: bool = False,
    loss_fn: LossFn = cross_entropy,
) -> torch.Tensor:
    """Fast Gradient Sign Method: x0 + ε·sign(∇x loss), clipped to [0, 1].

    Untargeted: `y` holds the true labels and the loss goes up. Targeted: `y` holds the
    labels we want the model to output and the loss towards them goes down. `eps` may be a
    tensor with one budget per image.
    """
    x0, y = attack_inputs(model, x, y)
    eps = check_eps(eps, "inf", x0)
    with eval_mode(model):
        grad = input_gradient(model, x0, y, loss_fn)
    direction = -grad.sign() if targeted else grad.sign()
    return torch.clamp(x0 + eps * direction, 0.0, 1.0).detach()


def pgd_run(model, x0, y, eps, alpha, steps, norm, random_start, targeted, loss_fn, generator, gradient=None):
    """One PGD run on validated inputs, the model already in eval mode (`pgd` and `eot.pgd_with` call it).

    `gradient(model, x, y)`, when given, replaces the model's own input gradient: the adaptive attacks of `eot`."""
    start, step, project = NORMS[norm]
    if norm == "inf":
        # The ℓ∞ ball ∩ [0, 1] is a fixed box, [max(x0 − ε, 0), min(x0 + ε, 1)]: computing its corners
        # once makes each projection one clamp (exactly `project_linf`, since clamping to [x0 − ε, x0 + ε]
        # and then to [0, 1] is clamping to their intersection).
        low, high = (x0 - eps).clamp_(min=0.0), (x0 + eps).clamp_(max=1.0)
        project = lambda x, _x0, _eps: torch.clamp(x, low, high)
    x = project(start(x0, eps, generator), x0, eps) if random_start else x0.clone()
    for _ in range(steps):
        grad = input_gradient(model, x, y, loss_fn) if gradient is None else gradient(model, x, y)
        x = project(step(x, -grad if targeted else grad, alpha), x0, eps)
    return x.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    *,
    norm="inf",
    random_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    loss_fn: LossFn = cross_entropy,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the loss, inside the ℓ∞, ℓ2 or ℓ1 ball of radius ε.

    `alpha` is the step size η, `steps` the number of iterations. With
    `random_start=False` and ℓ∞ this is the lecture's iterative sign method; with a random
    start it is Madry et al.'s PGD. For ℓ1 the step moves only the top 1 % of the pixels
    (`step_l1`) and the projection is the exact one onto the ball ∩ [0, 1] (`project_l1`).
    With `restarts > 1` the attack runs again from fresh random starts and keeps, for each
    example, the worst case: an adversarial input that fools the model if any restart
    found one (the first that did), else the one with the highest loss (`core.worst_case`). For ℓ∞, `eps` and `alpha` may be tensors
    with one value per image.
    """
    x0, y = attack_inputs(model, x, y)
    norm = norm_name(norm)
    eps = check_eps(eps, norm, x0)
    if isinstance(alpha, torch.Tensor) and alpha.numel() != 1:
        alpha = per_example_budget("alpha", alpha, norm, x0)
    else:
        alpha = check_number("alpha", alpha, positive=True)
    steps = check_steps(steps)
    restarts = check_count("restarts", restarts)
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True: without it every restart is identical")
    run = lambda: pgd_run(model, x0, y, eps, alpha, steps, norm, random_start, targeted, loss_fn, generator)
    with eval_mode(model):
        if restarts == 1:
            return run()
        return worst_case(model, y, (run() for _ in range(restarts)), targeted=targeted, loss_fn=loss_fn)


def random_sign_noise(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x0 ± ε per pixel with random signs, clipped to [0, 1]: the same size as FGSM, no gradient.

    The control experiment: if this barely changes accuracy while FGSM destroys it, the
    damage comes from the direction, not from the size of the perturbation.
    """
    check_images(x)
    eps = check_eps(eps, "inf")
    return torch.clamp(x.detach() + eps * random_sign(x.shape, x, generator), 0.0, 1.0)
