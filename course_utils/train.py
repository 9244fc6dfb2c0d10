"""Training loops: standard and adversarial (train on attack(x, y*) instead of x)."""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import batches

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    attack: Attack | None = None,
    clean_weight: float = 0.0,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "training",
) -> list[dict]:
    """Train `model` in place and return one dict per epoch.

    With `attack`, each mini-batch is replaced by attack(model, x, y*) before the update
    (the lecture's recipe); `clean_weight` > 0 mixes in the clean loss as well (its step 3).
    `eval_fn(model)` runs after every epoch and its numbers join that epoch's record, e.g.
    {"clean_acc": ..., "pgd_acc": ...} on a held-out split.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int ≥ 0, got {epochs!r}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if not 0.0 <= clean_weight <= 1.0:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
    opt = _optimizer(model, optimizer, lr, weight_decay)
    history = []
    n_batches = (len(y) + batch_size - 1) // batch_size
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=x.device)
            correct_sum = torch.zeros((), device=x.device)
            for xb, yb in batches(x, y, batch_size, shuffle=True, generator=generator):
                x_in = attack(model, xb, yb) if attack is not None else xb
                model.train()
                logits = model(x_in)
                loss = F.cross_entropy(logits, yb)
                if attack is not None and clean_weight > 0:
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
            history.append(record)
            bar.set_postfix({k: round(v, 3) for k, v in record.items() if k != "epoch"})
    finally:
        bar.close()
    model.eval()
    return history
