"""The committed notebooks' outputs read well without a kernel (GitHub, the website)."""
import ast
import json
import re

import pytest

from course_utils.classroom import notebook_widgets
from course_utils.paths import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BAR = re.compile(r"\d+%\|")


def _nb(path):
    return json.loads(path.read_text())


def _text(out) -> str:
    if out.get("output_type") == "stream":
        return "".join(out["text"])
    return "".join(out.get("data", {}).get("text/plain", ""))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_progress_bar_is_stored(path):
    nb = _nb(path)
    bars = [i for i, c in enumerate(nb["cells"]) for o in c.get("outputs", []) if BAR.search(_text(o))]
    assert bars == [], f"cells {bars} store a progress bar as text"
    assert notebook_widgets.prune(nb) == 0, "widget state of widgets no output shows (closed progress bars)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_assertion_cell_prints_one_line_of_what_it_confirmed(path):
    cells = [c for c in _nb(path)["cells"] if "assertions" in c.get("metadata", {}).get("tags", [])]
    assert cells, "no assertion cell"
    for cell in cells:
        calls = [n for n in ast.walk(ast.parse("".join(cell["source"])))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert len(calls) == 1 and isinstance(calls[0].args[0], ast.Constant), "one print of a fixed line"
        line = calls[0].args[0].value
        assert line.startswith("Confirmed: ") and len(line) > 40
        stored = "".join(_text(o) for o in cell["outputs"] if o.get("output_type") == "stream")
        assert stored == line + "\n", "the stored output is that line, once"


def test_only_01_stores_a_widget_and_its_slider_is_followed_by_a_row_of_frames():
    for path in NOTEBOOKS:
        views = notebook_widgets.views(_nb(path))
        assert bool(views) == (path.stem == "01_fgsm"), path.stem
    nb = _nb(repo_root() / "notebooks" / "01_fgsm.ipynb")
    (index, view), = notebook_widgets.views(nb)
    assert notebook_widgets.frozen_outputs(nb, view), "the slider's last frame is stored"
    following = nb["cells"][index + 1]
    assert "static-frames" in following["metadata"].get("tags", [])
    assert any("image/png" in o.get("data", {}) for o in following["outputs"])
