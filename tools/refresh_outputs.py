"""Re-execute the committed notebooks in place so GitHub shows the outputs of a `fast` run.

    python tools/refresh_outputs.py            # every notebook
    python tools/refresh_outputs.py 01 02      # some of them

Maintainers run this after editing a notebook. It executes with nbclient (not papermill,
which would inject a parameters cell), with PROFILE left as "auto" — "fast" on a CPU —
in a temporary working folder, so no results JSON or checkpoint lands in the repository
unless COURSE_RESULTS_DIR or COURSE_CHECKPOINT_DIR say otherwise (set COURSE_RESULTS_DIR to keep
the results JSONs, e.g. to compare them with an earlier run). Run metadata (timings) is dropped so that
diffs show content only.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

from course_utils.classroom import notebook_widgets
from course_utils.classroom.runner import find_notebooks
from course_utils.classroom.student import RUN_METADATA


PROGRESS_BAR = re.compile(r"\d+%\|")


def drop_progress_bars(nb) -> int:
    """Remove tqdm's widget bars: a stored notebook shows them frozen at 0 %, not the training they followed."""
    dropped = 0
    for cell in nb.cells:
        keep = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and PROGRESS_BAR.search(str(data.get("text/plain", ""))):
                dropped += 1
            else:
                keep.append(out)
        if cell.cell_type == "code":
            cell.outputs = keep
    return dropped


def refresh(path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    keep = os.environ.get("COURSE_RESULTS_DIR")
    with tempfile.TemporaryDirectory() as work:
        os.environ["COURSE_RESULTS_DIR"] = keep or work
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": work}}).execute()
    drop_progress_bars(nb)
    notebook_widgets.prune(nb)  # closed bars leave their widget state behind
    for cell in nb.cells:
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    if keep is None:
        del os.environ["COURSE_RESULTS_DIR"]
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    os.environ.setdefault("COURSE_PROFILE", "fast")
    os.environ.setdefault("COURSE_PROGRESS", "summary")  # stored outputs: one line per finished bar, no frozen widget
    for nb_path in find_notebooks(only=sys.argv[1:] or None):
        print(f"{nb_path.name}: {refresh(nb_path):.0f} s", flush=True)
