"""What the grader runs of a submission: the course's own notebook, with only the exercise cells taken
from the student (nbgrader restores its read-only cells the same way).

Everything else a submission contains — edited check cells, a doctored save cell, extra cells, a
results JSON — is ignored; a submission whose other code cells differ from the student version is
flagged. After each exercise cell the grader appends a cell that saves the exercise's functions with
cloudpickle, so the course's check can run on them in another process (`grading`, `remote`).
No torch here: the grader's planning step stays light.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .student import student_notebook

FUNCTIONS_SUFFIX = ".functions.pkl"


@dataclass(frozen=True)
class Exercise:
    """One exercise of a course notebook: its cell, its points, and the check that decides them."""

    name: str
    points: float
    cell: int  # index of the exercise cell in the course notebook
    check: str  # the course check's name, e.g. "check_fgsm"
    functions: tuple[str, ...]  # the student's functions the check takes, in order


def _check_call(source: str, name: str) -> tuple[str, tuple[str, ...]] | None:
    """(check, functions) from a check cell's `checks["name"] = check_x(f, g)`, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.targets[0].slice, ast.Constant) and node.targets[0].slice.value == name
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and all(isinstance(a, ast.Name) for a in node.value.args)):
            return node.value.func.id, tuple(a.id for a in node.value.args)
    return None


def exercises(course: nbformat.NotebookNode) -> list[Exercise]:
    """The course notebook's exercises, each with the check cell that follows it."""
    found = []
    for i, cell in enumerate(course.cells):
        meta = cell.metadata.get("course", {})
        if cell.cell_type != "code" or not isinstance(meta, dict) or "exercise" not in meta:
            continue
        name = meta["exercise"]
        call = next((_check_call(c.source, name) for c in course.cells[i + 1:] if c.cell_type == "code"
                     and _check_call(c.source, name)), None)
        if call is None:
            raise ValueError(f"exercise {name!r} has no check cell `checks[{name!r}] = check_…(…)` after it")
        found.append(Exercise(name, float(meta.get("points", 1)), i, call[0], call[1]))
    return found


def functions_file(folder: Path, exercise: str) -> Path:
    return folder / f"{exercise}{FUNCTIONS_SUFFIX}"


def _save_cell(exercise: Exercise, folder: Path) -> nbformat.NotebookNode:
    """A cell that pickles the exercise's functions by value (cloudpickle), or records why it could not."""
    names = ", ".join(f"{n!r}: {n}" for n in exercise.functions)
    path = str(functions_file(folder, exercise.name))
    source = (f"# Added by the grader: saves {', '.join(exercise.functions)} for the course's check.\n"
              "from course_utils.classroom.remote import dump_functions as _grader_dump\n"
              f"_grader_dump({path!r}, {{{names}}})\n")
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["raises-exception"]  # an undefined function fails its check, not the notebook
    return cell


def exercise_name(cell) -> str | None:
    """The exercise a cell claims in its metadata, or None (also for metadata of the wrong shape)."""
    meta = cell.metadata.get("course")
    name = meta.get("exercise") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def _code_sources(nb: nbformat.NotebookNode, skip: set[str]) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code" and exercise_name(c) not in skip]


def assemble(course: nbformat.NotebookNode, submission: nbformat.NotebookNode,
             folder: Path) -> tuple[nbformat.NotebookNode, list[str], int]:
    """The notebook to run: the course's cells, the submission's exercise cells, a save cell after each.

    Returns (notebook, names of the exercises the submission has no cell for, number of the
    submission's other code cells that differ from the student version's). An exercise cell is found
    by its metadata (`course.exercise`), which Jupyter keeps when a student edits the cell.
    """
    found = exercises(course)
    names = {e.name for e in found}
    theirs = {}
    for cell in submission.cells:
        meta = cell.metadata.get("course") if cell.cell_type == "code" else None
        name = meta.get("exercise") if isinstance(meta, dict) else None
        if isinstance(name, str) and name in names and name not in theirs:
            theirs[name] = cell.source
    missing = sorted(names - set(theirs))
    expected = _code_sources(student_notebook(course), names)
    got = _code_sources(submission, names)
    differ = sum(a != b for a, b in zip(expected, got)) + abs(len(expected) - len(got))

    out = nbformat.v4.new_notebook(metadata=json.loads(json.dumps(course.metadata)))
    blank = student_notebook(course)
    by_cell = {e.cell: e for e in found}
    check_cells = {i for i, c in enumerate(course.cells) for e in found
                   if c.cell_type == "code" and _check_call(c.source, e.name)}
    for i, cell in enumerate(course.cells):
        cell = nbformat.from_dict(json.loads(json.dumps(cell)))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if i in by_cell or i in check_cells:
            # A broken exercise fails its check; it must not stop the notebook before the next exercise.
            cell.metadata["tags"] = sorted(set(cell.metadata.get("tags", [])) | {"raises-exception"})
        if i in by_cell:
            cell.source = theirs.get(by_cell[i].name, blank.cells[i].source)
        out.cells.append(cell)
        if i in by_cell:
            out.cells.append(_save_cell(by_cell[i], folder))
    return out, missing, differ
