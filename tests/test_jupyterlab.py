"""The student's own page: 01 in a real JupyterLab, run in a real kernel, its ε slider moved by a browser."""
import json
import os

import pytest

from course_utils.paths import repo_root

from browser import artifacts_dir, browser, jupyterlab, run_all_and_move_slider

pytestmark = pytest.mark.browser


def _without_outputs(nb: dict) -> dict:
    """The notebook as a student opens it fresh: no stored outputs or widget state to mistake for a run."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    return nb


def _kernel_env(tmp_path) -> dict:
    env = dict(os.environ, COURSE_RESULTS_DIR=str(tmp_path / "results"), COURSE_PROFILE="fast",
               COURSE_PROGRESS="summary", JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    env.pop("COURSE_HEADLESS", None)  # a person is watching: the notebook shows its widget
    # Every cell in the page, not only those scrolled into view, so the test can find the last output.
    tracker = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    return env


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def test_01_runs_in_jupyterlab_and_its_slider_redraws_the_figure(tmp_path, chromium):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = _without_outputs(json.loads((repo_root() / "notebooks" / "01_fgsm.ipynb").read_text()))
    (folder / "01_fgsm.ipynb").write_text(json.dumps(nb))
    with jupyterlab(folder, _kernel_env(tmp_path), tmp_path / "jupyterlab.log") as (base, token):
        run = run_all_and_move_slider(chromium, base, token, "01_fgsm.ipynb", "0.25", done_text="Confirmed:",
                                      screenshots=artifacts_dir())
    assert run.before.startswith("data:image/png"), "the slider's figure rendered"
    assert run.readout.strip() == "0.25"
    assert run.after is not None and run.after != run.before, f"moving the slider did not redraw the figure: {run.text}"


def test_a_broken_slider_callback_is_caught(tmp_path, chromium):
    """The same check on a slider whose callback fails when moved: the figure must not count as changed."""
    cells = [
        "import ipywidgets as widgets\nimport matplotlib.pyplot as plt",
        "def draw(eps=0.1):\n    if eps != 0.1:\n        raise RuntimeError('the callback is broken')\n"
        "    plt.plot([0, 1], [0, eps])\n    plt.show()",
        "widgets.interact(draw, eps=widgets.FloatSlider(value=0.1, min=0.0, max=0.3, step=0.01,"
        " continuous_update=False));",
        "print('ready')",
    ]
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                     "source": src} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "broken.ipynb").write_text(json.dumps(nb))
    with jupyterlab(tmp_path, _kernel_env(tmp_path), tmp_path / "jupyterlab.log") as (base, token):
        run = run_all_and_move_slider(chromium, base, token, "broken.ipynb", "0.25", done_text="ready",
                                      run_timeout_s=120, change_timeout_s=15)
    assert run.before.startswith("data:image/png")
    assert run.after is None or run.after == run.before
    assert "the callback is broken" in run.text
