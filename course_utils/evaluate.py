"""Accuracy, worst-case robust accuracy, and accuracy as a function of ε."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .attacks.core import Attack, eval_mode
from .data import batches

EpsAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels, in eval mode and without building a graph."""
    with eval_mode(model), torch.inference_mode():
        return torch.cat([model(xb).argmax(dim=1) for xb, _ in batches(x, x, batch_size)])


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per-example booleans: is the prediction right?"""
    return predict(model, x, batch_size) == y


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of examples classified correctly."""
    if len(y) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return correct(model, x, y, batch_size).float().mean().item()


def _attack_masks(model, x, y, attacks: Mapping[str, Attack], batch_size: int) -> dict[str, torch.Tensor]:
    """Per attack, per example: is the attacked input still classified right? Each attack runs once."""
    return {
        name: torch.cat([correct(model, attack(model, xb, yb), yb, batch_size) for xb, yb in batches(x, y, batch_size)])
        for name, attack in attacks.items()
    }


def robust_mask(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, Attack] | Sequence[Attack],
    batch_size: int = 500,
) -> torch.Tensor:
    """Per example: True only if the clean input and every attack's output are classified right.

    This is AutoAttack's worst-case rule (`attacks.core.worst_case`, in its form for accuracies). The
    minimum of per-attack accuracies would overstate robustness whenever different attacks break
    different examples.
    """
    named = attacks if isinstance(attacks, Mapping) else dict(enumerate(attacks))
    return _survives_all(correct(model, x, y, batch_size), _attack_masks(model, x, y, named, batch_size).values())


def _survives_all(clean: torch.Tensor, masks) -> torch.Tensor:
    mask = clean.clone()
    for attack_mask in masks:
        mask &= attack_mask
    return mask


def robust_accuracy_by_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, Attack],
    batch_size: int = 500,
    worst_case_label: str = "worst case over all attacks",
) -> dict[str, float]:
    """Accuracy under each attack alone, plus the per-example worst case over all of them.

    Every attack runs once; the worst case combines the per-example results, so it costs
    nothing extra and is never the (optimistic) minimum of the per-attack numbers.
    """
    clean = correct(model, x, y, batch_size)
    masks = {name: m & clean for name, m in _attack_masks(model, x, y, attacks, batch_size).items()}
    table = {name: m.float().mean().item() for name, m in masks.items()}
    table[worst_case_label] = _survives_all(clean, masks.values()).float().mean().item()
    return table


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, Attack] | Sequence[Attack] | Attack,
    batch_size: int = 500,
) -> float:
    """Fraction of examples that no attack (and no restart within one) manages to fool."""
    if callable(attacks) and not isinstance(attacks, Mapping):
        attacks = [attacks]
    return robust_mask(model, x, y, attacks, batch_size).float().mean().item()


def accuracy_vs_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: EpsAttack,
    eps_list: Sequence[float],
    batch_size: int = 500,
) -> list[float]:
    """Accuracy under `attack(model, x, y, eps)` for each ε (ε = 0 means clean accuracy)."""
    out = []
    for eps in eps_list:
        if eps == 0:
            out.append(accuracy(model, x, y, batch_size))
        else:
            out.append(robust_accuracy(model, x, y, lambda m, xb, yb, e=eps: attack(m, xb, yb, e), batch_size))
    return out


def minimal_flipping_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: EpsAttack,
    eps_grid: Sequence[float],
    batch_size: int = 500,
) -> torch.Tensor:
    """For each example, the smallest ε in `eps_grid` at which `attack` makes it misclassified.

    Examples misclassified already when clean get 0; those never flipped get +inf. A
    stronger attack gives smaller values: it "modifies the image less and is still wrong".
    """
    grid = sorted(float(e) for e in eps_grid)
    result = torch.full((len(y),), float("inf"), device=y.device)
    result[~correct(model, x, y, batch_size)] = 0.0
    for eps in grid:
        todo = torch.isinf(result)
        if not todo.any():
            break
        idx = todo.nonzero().squeeze(1)
        if eps == 0:
            continue
        flipped = ~robust_mask(model, x[idx], y[idx], [lambda m, xb, yb: attack(m, xb, yb, eps)], batch_size)
        result[idx[flipped]] = eps
    return result


def smallest_flipping_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: EpsAttack,
    eps_max: float,
    iterations: int = 10,
    batch_size: int = 500,
) -> torch.Tensor:
    """For each example, the smallest ε at which `attack` makes it misclassified, found by bisection.

    `attack(model, x, y, eps)` must accept `eps` as a tensor with one budget per image (FGSM
    and ℓ∞ PGD do). Each example keeps an interval (lo, hi] with the attack failing at lo and
    succeeding at hi, halved `iterations` times, all examples at once; the result is hi, an ε at
    which the attack was seen to succeed, within eps_max / 2**iterations of where it starts to.
    Examples misclassified already when clean get 0; those the attack cannot flip even at
    `eps_max` get +inf. Unlike a search on a coarse grid, two attacks rarely tie.
    """
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be an int ≥ 1, got {iterations!r}")
    if not (isinstance(eps_max, (int, float)) and 0 < eps_max <= 1):
        raise ValueError(f"eps_max must be in (0, 1], got {eps_max!r}")

    def fooled(eps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.cat([~correct(model, attack(model, xb, yb, eb), yb, batch_size)
                          for xb, yb, eb in zip(x[idx].split(batch_size), y[idx].split(batch_size), eps.split(batch_size))])

    result = torch.full((len(y),), float("inf"), device=y.device)
    clean = correct(model, x, y, batch_size)
    result[~clean] = 0.0
    idx = clean.nonzero().squeeze(1)
    if idx.numel() == 0:
        return result
    top = torch.full((idx.numel(),), float(eps_max), device=x.device)
    flips = fooled(top, idx)
    idx = idx[flips]
    lo, hi = torch.zeros(idx.numel(), device=x.device), torch.full((idx.numel(),), float(eps_max), device=x.device)
    for _ in range(iterations):
        if idx.numel() == 0:
            break
        mid = (lo + hi) / 2
        success = fooled(mid, idx)
        hi, lo = torch.where(success, mid, hi), torch.where(success, lo, mid)
    result[idx] = hi
    return result
