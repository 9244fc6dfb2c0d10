"""APGD (Croce & Hein 2020) and the course's strong evaluation, AutoAttack's rule.

Plain PGD has two knobs that an evaluation can get wrong without noticing: the step size
and the loss. APGD removes both.

- **Step size.** It starts at 2ε and halves, per example, at checkpoints placed at
  22 %, 41 %, 57 %, … of the iterations (each interval 3 % shorter than the last, never below
  6 %), whenever the loss rose in fewer than ρ = 75 % of the steps since the last
  checkpoint, or the step was not halved last time and the best loss has not improved
  since. After halving, the search restarts from the best point found so far.
- **Momentum.** Each iterate mixes the projected step with the previous move:
  x ← P(x + 0.75·(P(x + η·step(∇)) − x) + 0.25·(x − x_prev)).
- **Loss.** Besides the cross-entropy, the DLR loss −(z_y − max_{j≠y} z_j)/(z_π1 − z_π3)
  (π sorts the logits in decreasing order) and its targeted version
  −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2). Both are ratios of logit differences, so they do not
  change when the logits are scaled or shifted: a saturated softmax (05's masked model)
  cannot flatten them.

`strong_attack` combines APGD on the cross-entropy with targeted APGD on the DLR loss
against the most likely wrong classes, and keeps, per example, the first attack that fools
the model: AutoAttack's first two attacks and its worst-case rule. It is what the course
means by robust accuracy. Every attack follows the rules of `attacks.core`: detached outputs in
the ball and in [0, 1], gradients with respect to the input only, eval mode restored,
every example on its own (its own step size, its own checkpoints).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .core import LossFn, attack_inputs, check_count, check_eps, check_steps, cross_entropy, eval_mode, norm_name
from .lp import NORMS

MOMENTUM = 0.75  # weight of the new step; 1 − MOMENTUM goes to the previous move (Croce & Hein)
RHO = 0.75  # a step size is kept while the loss rose in at least this fraction of the steps


# ----------------------------------------------------------------------------- losses
def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example Difference of Logits Ratio: −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3).

    Positive once x is misclassified, and invariant to scaling and shifting the logits.
    """
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, got {logits.shape[1]}")
    top = logits.topk(3, dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return -(true - others) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example targeted DLR: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2). Rises as z_t overtakes z_y."""
    if logits.shape[1] < 4:
        raise ValueError(f"the targeted DLR loss needs at least 4 classes, got {logits.shape[1]}")
    top = logits.topk(4, dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    wanted = logits.gather(1, target[:, None]).squeeze(1)
    return -(true - wanted) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "dlr": dlr_loss}


# ----------------------------------------------------------------------------- the step-size schedule
def checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD checks, and maybe halves, its step size.

    Croce & Hein's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), in whole
    iterations as the reference implementation rounds them: intervals of ⌊0.22·steps⌋, then
    each ⌊0.03·steps⌋ shorter, never below ⌊0.06·steps⌋ (all at least 1). For 100 steps:
    22, 41, 57, 70, 80, 87, 93, 99.
    """
    check_steps(steps)
    first, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at, interval = [], 0, first
    while at + interval <= steps:
        at += interval
        marks.append(at)
        interval = max(interval - shrink, shortest)
    return marks


# ----------------------------------------------------------------------------- one run
def _value_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn):
    """Per-example loss, its input gradient (summed loss), and whether x is still classified right."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad, logits.detach().argmax(dim=1) == y


def _apgd_run(model, x0, y, eps, steps, norm, loss_fn, generator, rho):
    """One APGD run from a random start. Returns (adversarial or best point, still correct)."""
    start, step, project = NORMS[norm]
    if norm == "inf":  # the ball ∩ [0, 1] is a fixed box: one clamp per projection (see lp.pgd_run)
        low, high = (x0 - eps).clamp(min=0.0), (x0 + eps).clamp(max=1.0)
        project = lambda x, _x0, _eps: torch.clamp(x, low, high)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    x = project(start(x0, eps, generator), x0, eps)
    loss, grad, correct = _value_and_grad(model, x, y, loss_fn)
    best_x, best_loss, best_grad = x, loss, grad
    found = x  # the first iterate that fooled the model, for each example that has been fooled
    eta = torch.full((x0.shape[0],), 2.0 * eps, dtype=x0.dtype, device=x0.device)
    marks = checkpoints(steps)
    interval_ending = dict(zip(marks, [m - prev for m, prev in zip(marks, [0] + marks)]))
    rises = torch.zeros_like(loss)
    loss_at_mark, halved_at_mark = best_loss, torch.ones_like(correct)
    x_prev = x
    for i in range(steps):
        weight = 1.0 if i == 0 else MOMENTUM
        z = project(step(x, grad, eta.view(shape)), x0, eps)
        x_new = project(x + weight * (z - x) + (1.0 - weight) * (x - x_prev), x0, eps)
        x_prev, x = x, x_new
        new_loss, grad, now_correct = _value_and_grad(model, x, y, loss_fn)
        newly_fooled = correct & ~now_correct
        found = torch.where(newly_fooled.view(shape), x, found)
        correct = correct & now_correct
        rises += new_loss > loss
        loss = new_loss
        better = loss > best_loss
        best_x = torch.where(better.view(shape), x, best_x)
        best_grad = torch.where(better.view(shape), grad, best_grad)
        best_loss = torch.where(better, loss, best_loss)
        if i + 1 in interval_ending:
            halve = (rises <= rho * interval_ending[i + 1]) | (~halved_at_mark & (best_loss <= loss_at_mark))
            eta = torch.where(halve, eta / 2, eta)
            # The halved examples go back to their best point and lose their momentum.
            x = torch.where(halve.view(shape), best_x, x)
            x_prev = torch.where(halve.view(shape), best_x, x_prev)
            grad = torch.where(halve.view(shape), best_grad, grad)
            rises = torch.zeros_like(rises)
            loss_at_mark, halved_at_mark = best_loss, halve
    return torch.where(correct.view(shape), best_x, found).detach(), correct


def _loss_fn(loss) -> LossFn:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))} or a function, got {loss!r}")
    return LOSSES[loss]


def _check_apgd(eps, norm, steps, restarts, rho) -> tuple[float, str, int, int]:
    norm = norm_name(norm)
    if norm not in ("inf", "2"):
        raise ValueError(f"APGD supports norm 'inf' and 2, got {norm!r}")
    if not (isinstance(rho, (int, float)) and 0 < rho <= 1):
        raise ValueError(f"rho must be in (0, 1], got {rho!r}")
    return check_eps(eps, norm), norm, check_count("steps", steps, 0), check_count("restarts", restarts, 1)


def _on_survivors(x_adv: torch.Tensor, correct: torch.Tensor, run) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `run(idx) -> (points, still correct)` on the examples not yet fooled, and merge its results.

    This is AutoAttack's worst-case rule: an example, once fooled, keeps the point that fooled it,
    and later attacks only spend effort on the rest.
    """
    idx = correct.nonzero().squeeze(1)  # one host sync per run, never inside the iterations
    if idx.numel():
        points, still = run(idx)
        x_adv, correct = x_adv.index_copy(0, idx, points), correct.index_copy(0, idx, still)
    return x_adv, correct


def _clean_state(model, x0, y):
    logits = model(x0)
    return logits, x0.clone(), logits.argmax(dim=1) == y


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, *, norm="inf", loss="ce",
         restarts: int = 1, rho: float = RHO, generator: torch.Generator | None = None) -> torch.Tensor:
    """Auto-PGD in the ℓ∞ or ℓ2 ball of radius ε: no step size to choose.

    `loss` is "ce" (cross-entropy), "dlr" (the scale-invariant DLR loss) or a function
    `loss(logits, y)` giving one value per example to maximise. Every restart starts at a
    fresh random point and attacks only the examples no earlier restart has fooled. Per
    example the result is an iterate that fools the model if any did, else the last run's
    point of highest loss (the clean image where the clean image is already misclassified).
    """
    x0, y = attack_inputs(model, x, y)
    eps, norm, steps, restarts = _check_apgd(eps, norm, steps, restarts, rho)
    loss_fn = _loss_fn(loss)
    with eval_mode(model), torch.no_grad():
        _, x_adv, correct = _clean_state(model, x0, y)
        for _ in range(restarts):
            x_adv, correct = _on_survivors(x_adv, correct, lambda idx: _apgd_run(
                model, x0[idx], y[idx], eps, steps, norm, loss_fn, generator, rho))
    return x_adv


def target_classes(logits: torch.Tensor, rank: int) -> torch.Tensor:
    """Per example, the class with the `rank`-th largest logit (rank 1 is the prediction)."""
    return logits.argsort(dim=1, descending=True)[:, rank - 1]


def _targeted_runs(model, x0, y, logits, x_adv, correct, eps, steps, norm, targets, restarts, rho, generator):
    if not 1 <= targets <= logits.shape[1] - 1:
        raise ValueError(f"targets must be between 1 and the number of classes − 1 ({logits.shape[1] - 1}), got {targets}")
    for rank in range(2, targets + 2):
        wanted = target_classes(logits, rank)
        for _ in range(restarts):
            def run(idx, wanted=wanted):
                loss_fn = lambda z, labels: targeted_dlr_loss(z, labels, wanted[idx])
                return _apgd_run(model, x0[idx], y[idx], eps, steps, norm, loss_fn, generator, rho)

            x_adv, correct = _on_survivors(x_adv, correct, run)
    return x_adv, correct


def apgd_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, *, norm="inf",
                  targets: int = 9, restarts: int = 1, rho: float = RHO, generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD-T: targeted APGD on the DLR loss, once per target class, on the examples still standing.

    The targets are the classes with the 2nd, 3rd, …, (targets + 1)-th largest clean logits,
    as in AutoAttack. A run succeeds when the example is misclassified (as any class): the
    target only gives the search a direction.
    """
    x0, y = attack_inputs(model, x, y)
    eps, norm, steps, restarts = _check_apgd(eps, norm, steps, restarts, rho)
    targets = check_count("targets", targets, 1)
    with eval_mode(model), torch.no_grad():
        logits, x_adv, correct = _clean_state(model, x0, y)
        x_adv, _ = _targeted_runs(model, x0, y, logits, x_adv, correct, eps, steps, norm, targets, restarts, rho, generator)
    return x_adv


# ----------------------------------------------------------------------------- the strong evaluation
@dataclass(frozen=True)
class StrongAttack:
    """The course's strong evaluation at one budget: APGD-CE, then APGD-T (DLR) against `targets`
    target classes, each with `restarts` random restarts, per example the first that fools the model.

    A callable `attack(model, x, y)` (`core.Attack`) like every attack of the course, so `evaluate.robust_accuracy`
    and the checklist take it as they take PGD. Its random starts come from a generator seeded with
    `seed` at every call, so the same model and batch always get the same answer.
    With the defaults (100 steps, 9 targets, 1 restart) this is AutoAttack's APGD-CE + APGD-T.
    """

    eps: float
    norm: str = "inf"
    steps: int = 100
    targets: int = 9
    restarts: int = 1
    seed: int = 0

    def __post_init__(self):
        norm = norm_name(self.norm)
        if norm not in ("inf", "2"):
            raise ValueError(f"the strong attack supports norm 'inf' and 2, got {self.norm!r}")
        object.__setattr__(self, "norm", norm)
        object.__setattr__(self, "eps", check_eps(self.eps, norm))
        check_count("steps", self.steps, 1)
        check_count("targets", self.targets, 0)
        check_count("restarts", self.restarts, 1)
        check_count("seed", self.seed, 0)

    @property
    def name(self) -> str:
        """A label for tables, e.g. 'APGD-CE + APGD-T (100 steps, 9 targets)'."""
        restarts = f", {self.restarts} restarts" if self.restarts > 1 else ""
        targeted = " + APGD-T" if self.targets else ""
        targets = f", {self.targets} targets" if self.targets else ""
        return f"APGD-CE{targeted} ({self.steps} steps{targets}{restarts})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0, y = attack_inputs(model, x, y)
        generator = torch.Generator().manual_seed(self.seed)
        with eval_mode(model), torch.no_grad():
            logits, x_adv, correct = _clean_state(model, x0, y)
            for _ in range(self.restarts):
                x_adv, correct = _on_survivors(x_adv, correct, lambda idx: _apgd_run(
                    model, x0[idx], y[idx], self.eps, self.steps, self.norm, cross_entropy, generator, RHO))
            if self.targets:
                x_adv, correct = _targeted_runs(model, x0, y, logits, x_adv, correct, self.eps, self.steps, self.norm,
                                                self.targets, self.restarts, RHO, generator)
        return x_adv
