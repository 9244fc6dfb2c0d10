"""Training loops: standard and adversarial (train on attack(x, y*) instead of x)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attacks.core import Attack
from .data import batches
from .progress import bar as progress_bar


# A training loss in place of the cross-entropy: (model, x, y) -> (loss, logits on x).
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Schedule:
    """Something that changes during training: `at(t)` for t, the fraction of training done, in [0, 1).

    `fit` takes a Schedule wherever it takes a fixed attack (an ε that ramps up, a threat per batch)
    and, as any function of t, for the learning rate (`cyclic_lr`).
    """

    at: Callable[[float], object]

    def __call__(self, t: float):
        return self.at(t)


def _optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    attack: Attack | Schedule | None = None,
    objective: Objective | Schedule | None = None,
    lr: float | Callable[[float], float] = 1e-3,
    batch_size: int = 64,
    clean_weight: float = 0.0,
    optimizer: str = "adam",
    eval_fn: Callable[[nn.Module], dict] | None = None,
    keep_best: str | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "training",
) -> list[dict]:
    """Train `model` in place and return one dict per epoch.

    With `attack`, each mini-batch is replaced by attack(model, x, y*) before the update
    (the lecture's recipe); `clean_weight` > 0 mixes in the clean loss as well (its step 3).
    `eval_fn(model)` runs after every epoch and its numbers join that epoch's record, e.g.
    {"clean_acc": ..., "pgd_acc": ...} on a held-out split.

    Both `attack` and `lr` may change during training: a `Schedule` of attacks gives the attack
    for each mini-batch (None for a clean one; e.g. an ε that ramps up, see `eps_ramp`), and `lr`
    may be any function of the fraction of training done (e.g. `cyclic_lr`, Wong et al. 2020).
    `objective(model, x, y) -> (loss, logits)` replaces the cross-entropy on the (attacked) batch by
    another training loss, e.g. IBP's bound on the worst case (`certify.ibp.ibp_loss`); it may be a
    Schedule too (an ε and a weight that change during training). It cannot be combined with `attack`.
    `keep_best="pgd_acc"` restores, at the end, the weights of the epoch where `eval_fn`
    reported the highest "pgd_acc": early stopping on a robustness check.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int ≥ 0, got {epochs!r}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if not 0.0 <= clean_weight <= 1.0:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
    if attack is not None and objective is not None:
        raise ValueError("pass either an attack (inputs replaced, cross-entropy loss) or an objective, not both")
    attack_at = attack.at if isinstance(attack, Schedule) else (lambda t: attack)
    objective_at = objective.at if isinstance(objective, Schedule) else (lambda t: objective)
    lr_at = lr if callable(lr) else None
    if keep_best is not None and eval_fn is None:
        raise ValueError(f"keep_best={keep_best!r} needs an eval_fn that reports it")
    opt = _optimizer(model, optimizer, 0.0 if lr_at is not None else lr)  # a schedule sets the rate before each step
    history = []
    best_value, best_state = -math.inf, None
    n_batches = (len(y) + batch_size - 1) // batch_size
    total, done = epochs * n_batches, 0
    bar = progress_bar(total=epochs * n_batches, desc=desc, unit="batch", disable=not progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=x.device)
            correct_sum = torch.zeros((), device=x.device)
            for xb, yb in batches(x, y, batch_size, shuffle=True, generator=generator):
                t = done / total
                done += 1
                batch_attack = attack_at(t)
                if lr_at is not None:
                    for group in opt.param_groups:
                        group["lr"] = lr_at(t)
                x_in = batch_attack(model, xb, yb) if batch_attack is not None else xb
                model.train()
                batch_objective = objective_at(t)
                if batch_objective is not None:
                    loss, logits = batch_objective(model, x_in, yb)
                else:
                    logits = model(x_in)
                    loss = F.cross_entropy(logits, yb)
                if batch_attack is not None and clean_weight > 0:
                    loss = (1 - clean_weight) * loss + clean_weight * F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                # Accumulate on the device: no host sync per batch.
                loss_sum += loss.detach() * len(yb)
                correct_sum += (logits.argmax(1) == yb).sum()
                bar.update(1)
            record = {
                "epoch": epoch,
                "loss": loss_sum.item() / len(y),
                "train_acc": correct_sum.item() / len(y),
                "seconds": time.perf_counter() - start,
            }
            model.eval()
            if eval_fn is not None:
                record.update({k: float(v) for k, v in eval_fn(model).items()})
                if keep_best is not None:
                    if keep_best not in record:
                        raise ValueError(f"keep_best={keep_best!r}: eval_fn reported only {sorted(record)}")
                    if record[keep_best] > best_value:
                        best_value = record[keep_best]
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.append(record)
            bar.set_postfix({k: round(v, 3) for k, v in record.items() if k != "epoch"})
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def eps_ramp(eps: float, ramp: float) -> Callable[[float], float]:
    """ε as a function of training progress t: rising linearly from 0 over the first `ramp` of training.

    Large budgets (ε = 0.3 on MNIST) from the first batch stop a fresh network from learning
    at all; a short ramp lets it learn the digits first. `ramp=0` means ε from the start.
    """
    if not 0.0 <= ramp <= 1.0:
        raise ValueError(f"ramp must be a fraction of training in [0, 1], got {ramp}")
    if ramp == 0:
        return lambda t: eps
    # Never exactly 0: the first batch still gets a (tiny) attack, and ε > 0 is what attacks accept.
    return lambda t: eps * min(1.0, max(t, 1e-3) / ramp)


def cyclic_lr(peak: float, warmup: float = 0.5) -> Schedule:
    """Learning rate rising linearly from 0 to `peak` over the first `warmup` of training, then back to 0."""
    if not 0.0 < warmup < 1.0:
        raise ValueError(f"warmup must be in (0, 1), got {warmup}")
    return Schedule(lambda t: peak * (t / warmup if t < warmup else (1 - t) / (1 - warmup)))
