"""Student versions of the notebooks: solution regions replaced by a prompt (nbgrader's convention).

In the complete notebooks an exercise's solution sits between `### BEGIN SOLUTION` and
`### END SOLUTION`. The student version replaces each region by `# YOUR CODE HERE` and
`raise NotImplementedError()` at the marker's indentation, clears every output, and leaves
everything else as it was, byte for byte, so the same input always gives the same file.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.S | re.M)
RUN_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")


class SolutionMarkerError(ValueError):
    """A BEGIN SOLUTION without its END (or the reverse): refusing to guess what to strip."""


def strip_solutions(source: str) -> str:
    """`source` with every solution region replaced by the student prompt."""
    if source.count(BEGIN) != source.count(END):
        raise SolutionMarkerError(f"unbalanced solution markers in cell:\n{source[:200]}")
    return _REGION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError(){m.group(2)}", source)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` with solutions stripped and outputs, counts and run metadata cleared."""
    out = nbformat.from_dict(nb)  # deep copy
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    out.metadata.pop("papermill", None)
    return out


def write_student_versions(notebooks: list[Path], out_dir: Path) -> list[Path]:
    """Write the student version of each notebook into `out_dir` under the same file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        target = out_dir / path.name
        nbformat.write(student_notebook(nb), target)
        written.append(target)
    return written
