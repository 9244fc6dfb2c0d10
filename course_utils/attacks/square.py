"""The Square attack (Andriushchenko et al. 2020), ℓ∞: a score-based black-box attack.

It never asks for a gradient. It asks the model for its scores and does a random search over
the corners of the ℓ∞ ball: start from vertical stripes of ±ε, then, one query at a time,
re-draw the sign of a random square window (per channel) and keep the change only if the
margin between the true class and the best other class went down. The window's side starts at
about √(p_init·H·W) pixels and shrinks on a fixed schedule as the queries are spent, so the
search moves from coarse to fine.

The loss is the margin of the log-probabilities, log p_y − max_{j≠y} log p_j. That is exactly the
logit margin (log-softmax subtracts the same number from every logit), so the attack sees what an
API returning probabilities at full precision would give away, nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .core import attack_inputs, check_count, check_eps, check_number, eval_mode

# Andriushchenko et al.'s schedule, written for 10,000 queries and rescaled to the budget: after each
# of these query counts the share p of pixels in the window halves.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass(frozen=True)
class SquareResult:
    """The adversarial batch and, per example, the queries it used (forward passes of that image,
    the first one included); an example still standing at the end used the whole budget."""

    x_adv: torch.Tensor
    queries: torch.Tensor
    fooled: torch.Tensor


def score_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p_y − max_{j≠y} log p_j per example: positive while the model is right, negative once it is fooled."""
    logp = F.log_softmax(logits, dim=1)
    true = logp.gather(1, y[:, None]).squeeze(1)
    others = logp.masked_fill(F.one_hot(y, logp.shape[1]).bool(), float("-inf"))
    return true - others.amax(dim=1)


def window_fraction(p_init: float, query: int, budget: int) -> float:
    """The share of the image's pixels covered by the window at `query` of `budget` (the rescaled schedule)."""
    progress = int(query / budget * 10_000)
    halvings = sum(progress > t for t in P_HALVINGS)
    return p_init / 2 ** halvings


def window_side(p: float, height: int, width: int) -> int:
    """The side of a square covering a share p of an H×W image, at least 1 and smaller than the image."""
    side = int(round((p * height * width) ** 0.5))
    return max(1, min(side, min(height, width) - 1))


def _random_windows(n: int, side: int, height: int, width: int, generator, device) -> torch.Tensor:
    """n boolean masks (n×1×H×W), each a side×side square at a uniformly random position."""
    top = torch.randint(0, height - side + 1, (n,), generator=generator).to(device)
    left = torch.randint(0, width - side + 1, (n,), generator=generator).to(device)
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + side)
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _random_signs(shape, generator, device) -> torch.Tensor:
    return (2 * torch.randint(0, 2, shape, generator=generator) - 1).float().to(device)


@torch.no_grad()
def square_search(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    queries: int = 1000,
    p_init: float = 0.8,
    generator: torch.Generator | None = None,
) -> SquareResult:
    """The ℓ∞ Square attack with a budget of `queries` forward passes per image (untargeted).

    Each example stops querying as soon as it is misclassified. The model is only ever called
    under `torch.no_grad()`: it may refuse gradients altogether (`defenses.GradientBlocked`).
    `generator` (a CPU generator) makes the random search reproducible.
    """
    x0, y = attack_inputs(model, x, y)
    eps = check_eps(eps, "inf", x0)
    budget = check_count("queries", queries)
    p_init = check_number("p_init", p_init, positive=True)
    if p_init > 1:
        raise ValueError(f"p_init is a share of the image's pixels, in (0, 1], got {p_init}")
    n, channels, height, width = x0.shape
    if min(height, width) < 2:
        raise ValueError(f"the Square attack needs images of at least 2×2 pixels, got {height}×{width}")
    with eval_mode(model):
        # Vertical stripes: one random sign per channel and column, the paper's initialisation.
        x_best = torch.clamp(x0 + eps * _random_signs((n, channels, 1, width), generator, x0.device), 0.0, 1.0)
        margin = score_margin(model(x_best), y)
        used = torch.ones(n, dtype=torch.long, device=x0.device)
        for query in range(1, budget):
            active = (margin > 0).nonzero().squeeze(1)
            if len(active) == 0:
                break
            side = window_side(window_fraction(p_init, query, budget), height, width)
            window = _random_windows(len(active), side, height, width, generator, x0.device)
            signs = _random_signs((len(active), channels, 1, 1), generator, x0.device)
            base, current = x0[active], x_best[active]
            candidate = torch.where(window, torch.clamp(base + eps * signs, 0.0, 1.0), current)
            # A window already at the drawn corner would waste the query: the opposite signs change it.
            unchanged = ~((candidate != current) & window).flatten(1).any(1)
            if unchanged.any():
                flipped = torch.where(window, torch.clamp(base - eps * signs, 0.0, 1.0), current)
                candidate = torch.where(unchanged[:, None, None, None], flipped, candidate)
            new_margin = score_margin(model(candidate), y[active])
            used[active] += 1
            better = new_margin < margin[active]
            x_best[active[better]] = candidate[better]
            margin[active[better]] = new_margin[better]
    return SquareResult(x_best.detach(), used, margin <= 0)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, queries: int = 1000,
           p_init: float = 0.8, generator: torch.Generator | None = None) -> torch.Tensor:
    """`square_search`'s adversarial batch alone, for use wherever an `Attack` is expected."""
    return square_search(model, x, y, eps, queries=queries, p_init=p_init, generator=generator).x_adv
