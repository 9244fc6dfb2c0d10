"""The attacks, one module per kind, each following the rules in `core`:

- `core`: losses, eval mode, input checks, input gradients, the `Attack` type, THE worst-case rule;
- `lp`: FGSM and PGD in the ℓ∞, ℓ2 and ℓ1 balls, over per-norm `random_start_*`, `step_*`, `project_*`;
- `apgd`: APGD, APGD-T and `StrongAttack`, the course's strong evaluation (AutoAttack's rule);
- `threats`: rotation + translation, elastic warps, adversarial fog, Gaussian noise;
- `registry`: `make_attack(name, size)`, every threat behind one call shape.

`from course_utils import attacks; attacks.pgd(...)` works as before: the names below are re-exported.
"""
from .apgd import StrongAttack, apgd, apgd_targeted, dlr_loss, targeted_dlr_loss
from .core import (
    Attack,
    LossFn,
    cross_entropy,
    eval_mode,
    input_gradient,
    margin_loss,
    norm_name,
    outcome,
    worst_case,
)
from .lp import (
    L1_STEP_FRACTION,
    NORMS,
    fgsm,
    pgd,
    project_l1,
    project_l2,
    project_linf,
    random_sign_noise,
    random_start_l1,
    random_start_l2,
    random_start_linf,
    step_l1,
    step_l2,
    step_linf,
)
from .registry import DESCRIPTIONS, THREAT_NAMES, THREATS, make_attack
