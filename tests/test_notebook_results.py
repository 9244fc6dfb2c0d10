"""What every notebook's run left behind: its results JSON, with passing self-checks.

nbval executes every notebook once per session (with COURSE_RESULTS_DIR pointing at the
session's scratch folder, root conftest.py); these tests run after it and read the files.
Parameters cells are checked statically, so graders' papermill runs (`-p PROFILE fast`)
can inject into every notebook.
"""
import json

import nbformat
import pytest

from course_utils.classroom.results import results_dir
from course_utils.classroom.runner import exercise_points, find_notebooks

NOTEBOOKS = find_notebooks()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_one_parameters_cell_with_profile_and_seed(nb):
    cells = [c for c in nbformat.read(nb, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "papermill injects after the one cell tagged `parameters`"
    assert 'PROFILE = "auto"' in cells[0].source and "SEED" in cells[0].source


@pytest.mark.after_notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_run_wrote_results_with_passing_self_checks(nb, request):
    if nb.stem not in getattr(request.config, "course_executed_notebooks", set()):
        pytest.skip(f"{nb.name} was not executed in this session (run `pytest` without selecting, or include notebooks/)")
    path = results_dir() / f"{nb.stem}.results.json"
    assert path.is_file(), f"{nb.stem} did not write {path.name}"
    results = json.loads(path.read_text())
    assert results["profile"] == "fast"
    assert results["checks"], f"{nb.stem} records no self-check"
    assert all(results["checks"].values()), f"{nb.stem}: a reference solution failed its check {results['checks']}"
    assert set(results["checks"]) == set(exercise_points(nb)), "every exercise has exactly one recorded check"
    headline = nbformat.read(nb, as_version=4).metadata["course"]["headline"]
    missing = [h["key"] for h in headline if h["key"] not in results["metrics"]]
    assert not missing, f"{nb.stem}: headline metrics missing from its results: {missing}"
