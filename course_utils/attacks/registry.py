"""Every threat of the course behind one call shape: `make_attack(name, size)` → attack(model, x, y).

07's table and its training loop (`zoo.threat_schedule`) treat all threats alike through it. Each
threat is one entry of `THREATS`: its units, its largest sensible size, whether it has something
random to restart, and how to build the attack; adding a threat means adding one entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..images import check_batch
from .core import Attack, as_plain, check_count, check_number, check_steps, eval_mode, worst_case
from .lp import pgd
from .threats import DEGREES_PER_PIXEL, adversarial_fog, elastic, gaussian_noise, rotation_translation

Builder = Callable[[float, int, int, "torch.Generator | None"], Attack]  # (size, steps, restarts, generator)


@dataclass(frozen=True)
class Threat:
    description: str  # what `size` measures, in which units
    build: Builder
    max_size: float = float("inf")
    restartable: Callable[[int], bool] = lambda steps: True  # does it draw anything random with these steps?


def _lp(norm) -> Builder:
    def build(size, steps, restarts, generator):
        alpha = 2.5 * size / max(steps, 1) if size > 0 else 1.0  # with ε = 0 any α > 0 stays at x0
        return lambda model, x, y: pgd(model, x, y, size, alpha, steps, norm=norm, restarts=restarts, generator=generator)

    return build


def _rotation(size, steps, restarts, generator):
    trials = steps * restarts if steps else None  # worst of k restarts of worst-of-k = worst-of-k·restarts
    return lambda model, x, y: rotation_translation(model, x, y, size, size / DEGREES_PER_PIXEL, trials=trials,
                                                    generator=generator)


def _noise(size, steps, restarts, generator):
    def attack(model, x, y):
        check_batch(x, y)
        return gaussian_noise(x, size, generator)

    return attack


def _parameter_search(search) -> Builder:
    def build(size, steps, restarts, generator):
        def attack(model, x, y):
            run = lambda: search(model, x, y, size, steps, generator=generator)
            if restarts == 1:
                return run()
            with eval_mode(model):
                return worst_case(model, as_plain(y), (run() for _ in range(restarts)))

        return attack

    return build


THREATS: dict[str, Threat] = {
    "linf": Threat("ℓ∞ PGD; size = ε, the largest change of any pixel (pixel units, e.g. 0.3)", _lp("inf"), max_size=1.0),
    "l2": Threat("ℓ2 PGD; size = ε, the Euclidean length of the change (pixel units, e.g. 2)", _lp(2)),
    "l1": Threat("ℓ1 PGD (sparse steps); size = ε, the sum of absolute pixel changes (pixel units, e.g. 10)", _lp(1)),
    "rotation": Threat("worst rotation and shift; size = largest angle in degrees, shifts up to size/10 pixels",
                       _rotation, max_size=180.0, restartable=lambda steps: steps > 0),
    "elastic": Threat("adversarial smooth warp; size = largest displacement of a pixel, in pixels",
                      _parameter_search(elastic)),
    "fog": Threat("adversarial low-frequency fog; size = fog strength ε in (x + ε·F)/(1 + ε)",
                  _parameter_search(adversarial_fog)),
    "noise": Threat("Gaussian noise, no model; size = σ, the noise's standard deviation in pixel units", _noise,
                    restartable=lambda steps: False),
}
THREAT_NAMES = tuple(THREATS)
DESCRIPTIONS = {name: threat.description for name, threat in THREATS.items()}


def make_attack(
    name: str,
    size: float,
    *,
    steps: int = 10,
    restarts: int = 1,
    generator: torch.Generator | None = None,
) -> Attack:
    """The attack `name` at budget `size`, as a function attack(model, x, y) → x_adv.

    Sizes are in each threat's own units (see DESCRIPTIONS). For the gradient attacks
    `steps` is the number of PGD steps, with step size 2.5·size/steps for the ℓp balls
    (the ℓ1 step is sparse, see `lp.step_l1`, and this rule also works there: more
    steps, lower accuracy) and the defaults of `elastic` and `adversarial_fog`. For "rotation",
    `steps` is the number of random transforms (worst-of-k) and 0 means the full grid.
    `restarts` > 1 keeps each example's worst case over fresh random starts (`core.worst_case`);
    it needs something random to restart, so the grid and "noise" refuse it.
    """
    if name not in THREATS:
        raise ValueError(f"unknown threat {name!r}; known: {', '.join(THREAT_NAMES)}")
    threat = THREATS[name]
    size = check_number("size", size)
    steps = check_steps(steps)
    restarts = check_count("restarts", restarts)
    if restarts > 1 and not threat.restartable(steps):
        raise ValueError(f"restarts > 1 needs a random search; {name!r} with steps={steps} has nothing to restart")
    if size > threat.max_size:
        raise ValueError(f"size must be ≤ {threat.max_size:g} for {name!r}, got {size}")
    attack = threat.build(size, steps, restarts, generator)
    attack.__doc__ = f"{name} attack of size {size:g}: {threat.description}"
    return attack
