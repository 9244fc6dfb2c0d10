"""The exercises' self-checks, one module per topic; every check is importable from here.

    from course_utils.checks import check_fgsm

| module         | notebook                    | checks                                            |
| -------------- | --------------------------- | ------------------------------------------------- |
| `threat_model` | 00_threat_model             | check_linf_distance                               |
| `fgsm`         | 01_fgsm                     | check_fgsm (and `fgsm_closed_form`, the oracle)   |
| `pgd`          | 02_pgd                      | check_project_linf, check_pgd                     |
| `scaling`      | 03_dimension_scaling        | check_input_gradient_l1, check_loglog_fit         |
| `training`     | 04_adversarial_training     | check_adversarial_training_step                   |
| `masking`      | 05_gradient_masking         | check_white_box_vs_transfer                       |
| `featviz`      | 06_feature_visualization    | check_maximise                                    |
| `threats`      | 07_unforeseen_attacks       | check_l2_threat                                   |
| `corruptions`  | 08_distribution_shift       | check_pixelate (and `reference_pixelate`)         |
| `certify`      | 09_certified_robustness     | check_interval_linear_relu, check_certified_radius |
|                |                             | (and `reference_…` of each)                        |
| `defenses`     | 10_breaking_defenses        | check_bpda_gradient, check_eot_gradient            |

`harness` holds what they share: `CheckFailed`, `report` (print one line, return a boolean,
never raise) and the tiny test cases.
"""
from .certify import (check_certified_radius, check_interval_linear_relu, reference_certified_radius,
                      reference_interval_linear_relu)
from .defenses import check_bpda_gradient, check_eot_gradient
from .corruptions import PIXELATE_SIDES, check_pixelate, reference_pixelate
from .featviz import check_maximise
from .fgsm import check_fgsm, fgsm_closed_form
from .harness import CheckFailed
from .masking import check_white_box_vs_transfer
from .pgd import check_pgd, check_project_linf
from .scaling import check_input_gradient_l1, check_loglog_fit
from .threat_model import check_linf_distance
from .threats import check_l2_threat
from .training import check_adversarial_training_step

__all__ = [
    "CheckFailed",
    "PIXELATE_SIDES",
    "check_adversarial_training_step",
    "check_bpda_gradient",
    "check_certified_radius",
    "check_eot_gradient",
    "check_fgsm",
    "check_input_gradient_l1",
    "check_interval_linear_relu",
    "check_l2_threat",
    "check_linf_distance",
    "check_loglog_fit",
    "check_maximise",
    "check_pgd",
    "check_pixelate",
    "check_project_linf",
    "check_white_box_vs_transfer",
    "fgsm_closed_form",
    "reference_certified_radius",
    "reference_interval_linear_relu",
    "reference_pixelate",
]
