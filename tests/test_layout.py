"""The package's layout holds together: old module names still import, every check is reachable
from `checks`, the classroom tooling stays free of torch, and no module leans on another's private names."""
import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import course_utils
import course_utils.checks
import course_utils.classroom

PACKAGE = Path(course_utils.__file__).parent

# What `course_utils.checks` and the `checks_*` modules offered in 0.1: notebooks written then import these.
PUBLIC_IN_0_1 = [
    "CheckFailed", "PIXELATE_SIDES", "check_adversarial_training_step", "check_fgsm", "check_input_gradient_l1",
    "check_l2_threat", "check_linf_distance", "check_loglog_fit", "check_maximise", "check_pgd", "check_pixelate",
    "check_project_linf", "check_white_box_vs_transfer", "fgsm_closed_form", "reference_pixelate",
]


def _modules_under(package) -> list[str]:
    return [info.name for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")]


@pytest.mark.parametrize("old, new", sorted(course_utils.MOVED.items()))
def test_an_old_module_name_imports_the_very_module_it_moved_to(old, new):
    assert importlib.import_module(f"course_utils.{old}") is importlib.import_module(f"course_utils.{new}")


def test_the_0_1_names_still_import_from_checks():
    missing = [name for name in PUBLIC_IN_0_1 if not hasattr(course_utils.checks, name)]
    assert not missing
    from course_utils.checks_corruptions import check_pixelate  # through MOVED, as 08 of 0.1 wrote it

    assert check_pixelate is course_utils.checks.check_pixelate


@pytest.mark.parametrize("module", _modules_under(course_utils.checks))
def test_every_check_is_importable_from_checks(module):
    mod = importlib.import_module(module)
    defined = [name for name, value in vars(mod).items()
               if name.startswith("check_") and callable(value) and value.__module__ == module]
    assert all(getattr(course_utils.checks, name, None) is vars(mod)[name] for name in defined), defined


@pytest.mark.parametrize("module", [m for m in _modules_under(course_utils.checks) if not m.endswith(".harness")])
def test_every_topic_module_names_its_notebook(module):
    notebooks = {p.stem for p in (PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    doc = importlib.import_module(module).__doc__ or ""
    assert any(stem in doc for stem in notebooks), f"{module}'s docstring names no notebook"


def test_classroom_and_paths_do_not_import_torch():
    """The runner and the grader start a kernel per notebook; importing torch first would cost seconds each time."""
    modules = ["course_utils.paths", *_modules_under(course_utils.classroom)]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False", f"one of {modules} imports torch"


def _private_imports(path: Path) -> list[str]:
    """`from .x import _y` (or `from course_utils.x import _y`) in the file at `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] == "course_utils"):
            found += [f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                      for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_private_name_of_another(path):
    """A helper another module needs is part of its module's interface: give it a public name."""
    assert not _private_imports(path)
