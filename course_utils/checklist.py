"""The evaluation checklist as code (Carlini et al. 2019, "On Evaluating Adversarial Robustness").

A robustness number is only as good as the attack behind it. Each function here runs one
sanity check on an evaluation and returns a `Verdict`: the measured evidence, whether the
evaluation passed, and one sentence saying what that means. A model whose gradients are
masked (05) fails some of them even though a weak attack reports it as robust.

Attacks are passed in as callables, so the checklist audits whatever attack the
evaluation used: `attack(model, x, y)` for a fixed budget, or `attack_at(model, x, y, eps)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .attacks.core import Attack
from .data import batches
from .evaluate import EpsAttack, correct, robust_accuracy, robust_mask



@dataclass(frozen=True)
class Verdict:
    """One checklist item's outcome. `passed` is None when the check could not run."""

    item: str
    passed: bool | None
    evidence: dict[str, float] = field(default_factory=dict)
    explanation: str = ""

    def __str__(self) -> str:
        mark = {True: "✅ pass", False: "❌ FAIL", None: "⚪ not run"}[self.passed]
        numbers = ", ".join(f"{k} {v:.1%}" if 0 <= v <= 1 else f"{k} {v:g}" for k, v in self.evidence.items())
        return f"{mark} | {self.item}: {numbers} — {self.explanation}"


def _check_tolerance(tolerance: float) -> float:
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    return float(tolerance)


def reaches_chance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack_at: EpsAttack, *, eps: float = 0.5,
                   n_classes: int = 10, tolerance: float = 0.05) -> Verdict:
    """Item 1: with a budget large enough to erase the image, accuracy must fall to chance or below.

    At ℓ∞ ε = 0.5 on images in [0, 1] every image can be turned into the same flat grey, so
    no classifier can do better than guessing; an attack that leaves more accuracy than
    1/n_classes (+ tolerance) is failing to optimise, not meeting a robust model.
    """
    _check_tolerance(tolerance)
    acc = robust_accuracy(model, x, y, lambda m, xb, yb: attack_at(m, xb, yb, eps))
    chance = 1.0 / n_classes
    passed = acc <= chance + tolerance
    explanation = (f"at ε = {eps:g} the attack drives accuracy to chance or below, as it must"
                   if passed else
                   f"at ε = {eps:g} the image can be erased, yet {acc:.0%} survive: the attack is not optimising")
    return Verdict("accuracy reaches chance at a huge ε", passed, {"accuracy": acc, "chance": chance}, explanation)


def iterative_beats_single_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, single_step: Attack,
                                iterative: Attack, *, tolerance: float = 0.01) -> Verdict:
    """Item 2: an iterative attack (PGD) must leave no more accuracy than a single step (FGSM).

    PGD can take FGSM's step and then improve on it; if FGSM does better, the iterative
    attack's gradients are misleading it (masking) or its step size is wrong.
    """
    _check_tolerance(tolerance)
    single = robust_accuracy(model, x, y, single_step)
    multi = robust_accuracy(model, x, y, iterative)
    passed = multi <= single + tolerance
    explanation = ("the iterative attack is at least as strong as the single step"
                   if passed else "the single step beats the iterative attack: its gradients mislead the iterations")
    return Verdict("iterative ≥ single-step", passed, {"single-step acc": single, "iterative acc": multi}, explanation)


def has_converged(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, stronger: Attack, *,
                  tolerance: float = 0.02) -> Verdict:
    """Item 3: more steps and more restarts must no longer lower the accuracy (by more than `tolerance`).

    The stronger run is combined with the original per example (worst case of both), so
    the drop is exactly the fraction of examples that only the extra effort breaks.
    """
    _check_tolerance(tolerance)
    base_mask = robust_mask(model, x, y, [attack])
    both_mask = base_mask & robust_mask(model, x, y, [stronger])
    base, both = base_mask.float().mean().item(), both_mask.float().mean().item()
    drop = base - both
    passed = drop <= tolerance
    explanation = (f"more steps and restarts break only {drop:.1%} more: the attack has converged"
                   if passed else f"more steps and restarts break {drop:.1%} more: the reported number is not a bound yet")
    return Verdict("more steps/restarts change nothing", passed, {"accuracy": base, "with more effort": both}, explanation)


def white_box_beats_transfer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                             surrogate: nn.Module, *, tolerance: float = 0.01) -> Verdict:
    """Item 4: attacking the model itself must beat attacking an independent model and transferring.

    `attack(surrogate, x, y)` makes the transfer examples. The white-box attacker knows
    strictly more, so if transferred examples fool the model more often, the model's own
    gradients are hiding the adversarial examples that exist.
    """
    _check_tolerance(tolerance)
    white = robust_accuracy(model, x, y, attack)
    transfer_mask = torch.cat([correct(model, attack(surrogate, xb, yb), yb) for xb, yb in batches(x, y, 500)])
    transfer = (transfer_mask & correct(model, x, y)).float().mean().item()
    passed = white <= transfer + tolerance
    explanation = ("attacking the model directly works better than transferring from another model"
                   if passed else "examples made on another model fool it more often than its own gradients do")
    return Verdict("white-box ≥ transfer", passed, {"white-box acc": white, "transfer acc": transfer}, explanation)


def agrees_with_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, eps: float, *,
                          steps: int = 50, targets: int = 3, tolerance: float = 0.03, seed: int = 0) -> Verdict:
    """Item 5: an independent implementation must not find much lower accuracy than ours.

    The reference is torchattacks' APGD on the cross-entropy and its APGD-T on the targeted
    DLR loss against `targets` target classes (Croce & Hein 2020; AutoAttack's first two
    attacks, written by other people than `apgd.py`), combined per example. If it beats the
    audited attack by more than `tolerance`, the audited number overstates robustness.
    Returns a verdict of None ("not run") when torchattacks is not installed.
    """
    _check_tolerance(tolerance)
    try:
        import torchattacks
    except ImportError:
        return Verdict("independent implementation agrees", None, {},
                       "torchattacks is not installed (pip install torchattacks scipy)")
    ours = robust_accuracy(model, x, y, attack)
    reference = [torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, loss="ce", seed=seed)]
    if targets:  # torchattacks attacks the n_classes − 1 runner-up classes
        reference.append(torchattacks.APGDT(model, norm="Linf", eps=eps, steps=steps, n_classes=targets + 1, seed=seed))
    # torchattacks leaves the model in eval mode and returns detached images in [0, 1].
    ref = robust_accuracy(model, x, y, [lambda m, xb, yb, a=a: a(xb, yb).detach() for a in reference])
    gap = ours - ref
    passed = gap <= tolerance
    if not passed:
        explanation = f"the reference finds {gap:.1%} more adversarial examples than our attack: our number overstates robustness"
    elif gap > 0:
        explanation = f"the reference finds {gap:.1%} more adversarial examples, within the tolerance of {tolerance:.0%}"
    elif gap == 0:
        explanation = "the reference finds exactly as many adversarial examples as our attack"
    else:
        explanation = f"the reference finds {-gap:.1%} fewer adversarial examples than our attack"
    name = "APGD-CE + APGD-T" if targets else "APGD-CE"
    return Verdict("independent implementation agrees", passed, {"ours": ours, f"torchattacks {name}": ref}, explanation)


def summarize(verdicts: Sequence[Verdict]) -> bool:
    """True when no item failed (items that could not run neither pass nor fail the evaluation)."""
    return all(v.passed is not False for v in verdicts)


def remember(attack: Attack) -> Attack:
    """`attack`, computed once per (model, batch): several checklist items audit the same evaluation.

    Only for deterministic attacks (seeded random starts), whose output for the same model and
    batch never changes; the key is the model's identity and the batch's storage and shape.
    """
    cache: dict = {}

    def cached(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        key = (id(model), x.data_ptr(), tuple(x.shape), y.data_ptr())
        if key not in cache:
            cache[key] = attack(model, x, y)
        return cache[key]

    return cached


def run_checklist(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    attack_at: EpsAttack,
    stronger: Attack,
    single_step: Attack,
    surrogate: nn.Module,
    n_reference: int = 100,
) -> list[Verdict]:
    """All five items for the evaluation `attack_at(·, ·, ·, eps)` of `model` on (x, y).

    `stronger` is the same attack with more steps and restarts (item 3), `single_step` e.g.
    FGSM (item 2), `surrogate` an independently trained model (item 4); APGD runs on the
    first `n_reference` examples (item 5). The audited attack runs once and is reused.
    """
    attack = remember(lambda m, xb, yb: attack_at(m, xb, yb, eps))
    return [
        reaches_chance(model, x, y, attack_at),
        iterative_beats_single_step(model, x, y, single_step, attack),
        has_converged(model, x, y, attack, stronger),
        white_box_beats_transfer(model, x, y, attack, surrogate),
        agrees_with_reference(model, x[:n_reference], y[:n_reference], attack, eps),
    ]
