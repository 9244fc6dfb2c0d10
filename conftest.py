"""Test-session set-up shared by the unit tests and nbval's notebook runs.

Trained models and results JSON go to a temporary folder for the session, so the tests
never read a student's stale cache nor write next to the committed notebooks. The
kernels nbval and papermill start inherit these variables.
"""
import os
import tempfile

import matplotlib

matplotlib.use("Agg")


def pytest_configure(config):
    scratch = tempfile.mkdtemp(prefix="course-tests-")
    os.environ.setdefault("COURSE_CHECKPOINT_DIR", os.path.join(scratch, "checkpoints"))
    os.environ.setdefault("COURSE_RESULTS_DIR", os.path.join(scratch, "results"))
    os.environ.setdefault("COURSE_PROFILE", "fast")
    # No live bars in nbval's kernels: their redraws overflow the output channel nbval is not
    # reading while a long cell runs (course_utils/progress.py says how that fails).
    os.environ.setdefault("COURSE_PROGRESS", "summary")
    # The notebooks get this from get_device(); unit tests that train or attack on the CPU get it here.
    from course_utils.config import tune_cpu_allocator

    tune_cpu_allocator()


# Notebooks are executed once per session, by nbval. Tests marked `after_notebooks` read what
# those runs left behind (results JSON), so they are moved after the last notebook; the names
# of the notebooks this session executes are kept on the config for them.
#
# nbval waits a hard-coded 5 s for each output message after a cell's reply; on a busy machine a
# cell's last messages can come later than that. (The two CI failures on 04's training cell were
# rather messages lost to a flood of progress-bar redraws; see COURSE_PROGRESS above.) The cell's
# own time limit (--nbval-cell-timeout) still bounds a cell that hangs.
NBVAL_OUTPUT_TIMEOUT_S = 120


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
    config.course_executed_notebooks = {item.path.stem for item in items if item.path.suffix == ".ipynb"}
    # Notebooks first: they are most of the suite's time and train the models the browser and
    # command-line tests then find in the session's cache; then the unit tests; last, the tests
    # that read what the notebook runs wrote.
    notebooks = [item for item in items if item.path.suffix == ".ipynb"]
    late = [item for item in items if item.get_closest_marker("after_notebooks")]
    rest = [item for item in items if item.path.suffix != ".ipynb" and not item.get_closest_marker("after_notebooks")]
    items[:] = notebooks + rest + late
