"""Where the course keeps things: the checkout, datasets, trained models, results. No torch here.

Each folder can be moved with an environment variable, so tests, CI and graders never write into
a student's checkout: COURSE_DATA_DIR, COURSE_CHECKPOINT_DIR, COURSE_RESULTS_DIR.
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The course checkout this package was installed from (editable install or clone)."""
    return Path(__file__).resolve().parent.parent


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


def data_dir() -> Path:
    """Where datasets live: $COURSE_DATA_DIR, else the checkout's `data/` folder."""
    return _from_env("COURSE_DATA_DIR", repo_root() / "data")


def checkpoint_dir() -> Path:
    """$COURSE_CHECKPOINT_DIR, else the checkout's git-ignored `checkpoints/` folder."""
    return _from_env("COURSE_CHECKPOINT_DIR", repo_root() / "checkpoints")


def results_dir() -> Path:
    """$COURSE_RESULTS_DIR, else the working directory (the notebook's folder in Jupyter and papermill runs)."""
    return _from_env("COURSE_RESULTS_DIR", Path.cwd())


def notebooks_dir() -> Path:
    """The course's notebooks."""
    return repo_root() / "notebooks"
