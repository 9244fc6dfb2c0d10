"""environment.yml and pyproject.toml describe the same install."""
import re
import tomllib

import pytest
import yaml

from course_utils.paths import repo_root

CONDA_TO_PIP = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    """'torch>=2.1' → 'torch'; names compared the way pip does (case, '-' vs '_')."""
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((repo_root() / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def environment():
    return yaml.safe_load((repo_root() / "environment.yml").read_text())


def _conda_deps(environment):
    return [d for d in environment["dependencies"] if isinstance(d, str)]


def _pip_deps(environment):
    return [p for d in environment["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]


def test_same_runtime_packages(pyproject, environment):
    runtime = {_name(r) for r in pyproject["project"]["dependencies"]}
    conda = {CONDA_TO_PIP.get(_name(d), _name(d)) for d in _conda_deps(environment)} - {"python", "pip"}
    assert conda == runtime


def test_environment_basics(environment):
    assert "python=3.11" in [d.replace(" ", "") for d in _conda_deps(environment)]
    assert "conda-forge" in environment["channels"]
    assert "pip" in [_name(d) for d in _conda_deps(environment)]
    assert '-e ".[dev]"' in _pip_deps(environment)


def test_runtime_dependencies_have_lower_bounds_only(pyproject):
    """Colab ships its own torch: an == or < pin would reinstall it there."""
    deps = pyproject["project"]["dependencies"]
    assert any(_name(d) == "torch" for d in deps)
    for dep in deps:
        assert ">=" in dep, dep
        assert "==" not in dep and "<" not in dep.replace("<=", "<"), dep


def test_dev_extra_has_the_test_tools(pyproject):
    runtime = {_name(r) for r in pyproject["project"]["dependencies"]}
    dev = {_name(r) for r in pyproject["project"]["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval", "jupyterlab", "ipykernel", "torchattacks", "pyyaml"} <= dev
    assert "papermill" in runtime | dev
    site = {_name(r) for r in pyproject["project"]["optional-dependencies"]["site"]}
    assert site <= dev and "jupyter-book" in site, "the tests build the site, so dev must install what it needs"
    assert "playwright" in dev


def test_conda_bounds_match_pyproject(pyproject, environment):
    """The same lower bound on both sides, so the two installs cannot drift apart."""
    bounds = {_name(r): r.split(">=", 1)[1].strip() for r in pyproject["project"]["dependencies"] if ">=" in r}
    for dep in _conda_deps(environment):
        name = CONDA_TO_PIP.get(_name(dep), _name(dep))
        if name in bounds:
            assert ">=" in dep and dep.split(">=", 1)[1].strip() == bounds[name], dep


def test_every_sub_package_is_packaged(pyproject):
    """A folder of modules left out of the wheel would import in a checkout and fail after `pip install .`."""
    from setuptools import find_packages

    found = set(find_packages(str(repo_root()), **pyproject["tool"]["setuptools"]["packages"]["find"]))
    on_disk = {".".join(p.parent.relative_to(repo_root()).parts) for p in (repo_root() / "course_utils").rglob("__init__.py")}
    assert on_disk <= found


def test_console_script_points_at_the_command_line(pyproject):
    import importlib

    module, _, name = pyproject["project"]["scripts"]["course-utils"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))
