"""Shared code for the adversarial robustness course notebooks.

One module per idea, one folder per kind of thing (README.md has the map):

- the machine learning: `config` (profiles, seeds, device), `paths`, `data`, `models`, `train`,
  `checkpoints`, `zoo` (the course's trained models), `evaluate`, `stats`, `checklist`, `warps`,
  `corruptions`, `scaling`, `featviz`, `viz`;
- `attacks/`: `core` (losses, validation, seeded draws, the worst-case rule), `lp` (FGSM, PGD and the
  per-norm steps and projections), `apgd` (APGD and the strong evaluation), `threats` (rotation,
  elastic, fog, noise), `registry` (`make_attack`);
- `checks/`: the exercises' self-checks, one module per topic (all importable from `checks`);
- `classroom/`: results files, the headless runner, student versions, grading, the seed sweep,
  the command line.

Importing the package does no work: no data, no devices, no downloads.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.2.0"

# Modules that moved in the layout of 0.2: the old name still imports the new module, so a
# student's notebook written against 0.1 (`from course_utils.setup import get_profile`) runs unchanged.
MOVED = {
    "setup": "config",
    "apgd": "attacks.apgd",
    "threats": "attacks.threats",
    "checks_scaling": "checks.scaling",
    "checks_featviz": "checks.featviz",
    "checks_threats": "checks.threats",
    "checks_corruptions": "checks.corruptions",
    "results": "classroom.results",
    "runner": "classroom.runner",
    "student": "classroom.student",
    "grade": "classroom.grading",
    "seeds": "classroom.seeds",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `course_utils.<old name>` and hands back the module it moved to (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = __name__ + "."
        if fullname.startswith(prefix) and fullname[len(prefix):] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED[spec.name[len(__name__) + 1:]]}")

    def exec_module(self, module):
        pass  # already executed under its new name


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.append(_Alias())
