"""The course's command line end to end: `run`, `student` and `grade` on the real notebooks.

These tests execute notebooks with papermill, so they are a slow part of the suite. Every
notebook is executed once per session, by nbval (which also compares the outputs with the
committed ones); `run` is exercised here on the two notebooks that the grader tests need
anyway, and `test_notebook_results.py` checks the results JSON of every notebook after
nbval's runs. Models are cached once per session (root conftest.py).
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.classroom.cli import main
from course_utils.classroom.runner import execute_notebook, exercise_points, find_notebooks
from course_utils.classroom.student import BEGIN, END, student_notebook

NOTEBOOKS = find_notebooks()


def _cell_sources(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells]


# --------------------------------------------------------------------------- run
RUN_ONLY = ("00", "01")  # the standard model's notebook and the one the grader tests use


@pytest.fixture(scope="session")
def course_run(tmp_path_factory):
    """`python -m course_utils run --only 00 01` (the README's main job, on two notebooks), once per session."""
    out = tmp_path_factory.mktemp("run")
    proc = subprocess.run([sys.executable, "-m", "course_utils", "run", "--out", str(out), "--only", ",".join(RUN_ONLY)],
                          capture_output=True, text=True, timeout=900)
    return proc, out, [nb for nb in NOTEBOOKS if nb.stem[:2] in RUN_ONLY]


def test_run_executes_the_notebooks_and_prints_the_table(course_run):
    proc, out, ran = course_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(ran) == len(RUN_ONLY)
    for nb in ran:
        assert f"{nb.stem} … ok" in proc.stdout
        assert (out / nb.name).is_file(), "the executed copy goes to --out"
    assert f"{len(ran)}/{len(ran)} notebooks ok" in proc.stdout
    assert "FGSM ε=0.1" in proc.stdout and "self-checks" in proc.stdout


def test_run_writes_results_with_passing_self_checks(course_run):
    _, out, ran = course_run
    for nb in ran:
        results = json.loads((out / f"{nb.stem}.results.json").read_text())
        assert results["profile"] == "fast"
        assert results["checks"], f"{nb.stem} records no self-check"
        assert all(results["checks"].values()), f"{nb.stem}: a reference solution failed its check {results['checks']}"
        assert set(results["checks"]) == set(exercise_points(nb)), "every exercise has exactly one recorded check"


def test_run_never_writes_over_the_committed_notebooks(course_run):
    assert course_run[0].returncode == 0
    for nb in NOTEBOOKS:
        for cell in nbformat.read(nb, as_version=4).cells:
            assert "papermill" not in cell.metadata
            assert "injected-parameters" not in cell.metadata.get("tags", [])


def test_run_only_one_notebook(tmp_path, capsys):
    assert main(["run", "--only", "00", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "00_threat_model … ok" in text and "01_fgsm" not in text
    assert "1/1 notebooks ok" in text and "test accuracy" in text


def test_run_reports_a_failing_notebook_and_exits_non_zero(tmp_path, capsys):
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1 / 0"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "90_broken.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from course_utils.classroom.results import save_results\n"
                                  "save_results('91_fine', {'x': 1.0}, {}, PROFILE)"),
    ], metadata=nb.metadata), folder / "91_fine.ipynb")
    code = main(["run", "--dir", str(folder), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert code == 1
    line = next(l for l in text.splitlines() if l.startswith("[1/2] 90_broken"))
    assert "error in cell 2" in line and line.endswith("ZeroDivisionError: division by zero"), line
    assert "91_fine … ok" in text, "a broken notebook must not stop the others"
    assert "1/2 notebooks ok" in text


def test_run_rejects_an_unknown_notebook():
    with pytest.raises(SystemExit):
        main(["run", "--only", "77"])


# --------------------------------------------------------------------------- student
def test_student_versions_strip_every_solution(tmp_path):
    assert main(["student", "--out", str(tmp_path)]) == 0
    for nb_path in NOTEBOOKS:
        original = nbformat.read(nb_path, as_version=4)
        student = nbformat.read(tmp_path / nb_path.name, as_version=4)
        nbformat.validate(student)
        regions = sum(c.source.count(BEGIN) for c in original.cells)
        assert regions >= 1, f"{nb_path.stem} has no exercise"
        joined = "\n".join(c.source for c in student.cells)
        assert BEGIN not in joined and END not in joined
        assert joined.count("raise NotImplementedError()") == regions
        assert joined.count("# YOUR CODE HERE") == regions
        for o, s in zip(original.cells, student.cells):
            if BEGIN not in o.source:
                assert o.source == s.source, "cells without a solution must be unchanged"
            if s.cell_type == "code":
                assert s.outputs == [] and s.execution_count is None


def test_student_versions_are_deterministic(tmp_path):
    main(["student", "--out", str(tmp_path / "a")])
    main(["student", "--out", str(tmp_path / "b")])
    for nb in NOTEBOOKS:
        assert (tmp_path / "a" / nb.name).read_bytes() == (tmp_path / "b" / nb.name).read_bytes()


def test_unbalanced_markers_are_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"def f():\n    {BEGIN}\n    return 1\n")])
    with pytest.raises(ValueError, match="unbalanced"):
        student_notebook(nb)


# --------------------------------------------------------------------------- grade
def _with_wrong_fgsm(nb):
    """01 with an FGSM that steps the wrong way (down the loss): its self-check must fail."""
    for cell in nb.cells:
        if "def fgsm(" in cell.source and BEGIN in cell.source:
            cell.source = cell.source.replace("x + eps * grad.sign()", "x - eps * grad.sign()")
            assert "x - eps * grad.sign()" in cell.source
    return nb


def _exercise_cell(nb):
    return next(c for c in nb.cells if c.metadata.get("course", {}).get("exercise") == "fgsm")


def _with_endless_loop(nb):
    """The loop must be in the exercise cell: the grader runs no other cell of a submission."""
    cell = _exercise_cell(nb)
    cell.source = "while True:\n    pass\n\n" + cell.source
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade a folder of submissions, one per kind of student (mostly 01_fgsm).

    01 loads 00's standard model; it is trained (or found) here first, so that every
    submission runs in its ~20 s and the endless loop can be cut off after 45 s.
    """
    from course_utils.config import get_profile
    from course_utils.data import load_mnist
    from course_utils.zoo import standard_model

    profile = get_profile("fast")
    x_train, y_train, _, _ = load_mnist(profile)
    standard_model(profile, x_train, y_train, "cpu", progress=False)
    root = tmp_path_factory.mktemp("submissions")
    source = next(p for p in NOTEBOOKS if p.stem == "01_fgsm")
    original = nbformat.read(source, as_version=4)
    versions = {
        "ada": original,  # the complete notebook
        "bo": student_notebook(original),  # nothing filled in
        "cy": _with_wrong_fgsm(nbformat.from_dict(original)),
        "di": _with_endless_loop(nbformat.from_dict(original)),
    }
    for student, nb in versions.items():
        (root / student).mkdir()
        nbformat.write(nb, root / student / "01_fgsm.ipynb")
    (root / "ed").mkdir()
    (root / "ed" / "01_fgsm.ipynb").write_text("this is not a notebook {")
    # An exercise cell that raises, and a notebook that has none of the course's cells.
    broken = nbformat.from_dict(original)
    _exercise_cell(broken).source = "raise RuntimeError('boom')"
    silent = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
                                             nbformat.v4.new_code_cell("print('hello')")], metadata=original.metadata)
    for student, nb in {"fu": broken, "gi": silent}.items():
        (root / student).mkdir()
        nbformat.write(nb, root / student / "01_fgsm.ipynb")
    (root / "ha").mkdir()
    nbformat.write(silent, root / "ha" / "99_not_in_the_course.ipynb")
    out = root / "grades.csv"
    from course_utils.classroom.sandbox import available

    sandbox = [] if available()[0] else ["--no-sandbox"]
    code = main(["grade", str(root), "--out", str(out), "--timeout", "45", "--work", str(root / "work"), *sandbox])
    with out.open() as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    return code, rows, exercise_points(source)


def test_grade_full_marks_for_the_complete_notebook(graded):
    code, rows, points = graded
    assert code == 0
    ada = rows["ada"]
    assert ada["status"] == "ok"
    assert float(ada["points"]) == float(ada["max_points"]) == sum(points.values()) > 0
    assert ada["checks_failed"] == ""
    reported = json.loads(ada["reported_metrics"])
    assert reported["fgsm_accuracy_at_eps"] < reported["clean_accuracy"]


def test_grade_zero_for_an_untouched_student_version(graded):
    bo = graded[1]["bo"]
    assert bo["status"] == "ok", "an unfinished exercise must not stop the notebook"
    assert float(bo["points"]) == 0 and bo["checks_passed"] == ""
    assert "fgsm" in bo["checks_failed"].split(";")


def test_grade_wrong_fgsm_fails_only_that_check(graded):
    cy = graded[1]["cy"]
    assert cy["status"] == "ok"
    assert cy["checks_failed"] == "fgsm" and float(cy["points"]) == 0


def test_grade_reports_timeout_and_malformed_files(graded):
    rows = graded[1]
    assert rows["di"]["status"] == "timeout" and float(rows["di"]["points"]) == 0
    assert rows["ed"]["status"] == "not a notebook"
    assert set(rows) == {"ada", "bo", "cy", "di", "ed", "fu", "gi", "ha"}, "one row per submission, none lost"


def test_grade_reports_the_failing_exercise_and_missing_exercises(graded):
    """A raising exercise cell fails its check and is named; the rest of the course's notebook still runs.
    A notebook without the course's cells gets the course's cells run, and no points."""
    rows = graded[1]
    assert rows["fu"]["status"] == "ok" and float(rows["fu"]["points"]) == 0
    assert rows["fu"]["error"] == "exercise fgsm: RuntimeError: boom"
    assert rows["gi"]["status"] == "ok" and rows["gi"]["missing_exercises"] == "fgsm" and float(rows["gi"]["points"]) == 0
    assert int(rows["gi"]["modified_cells"]) > 5
    assert rows["ha"]["status"] == "unknown notebook"


def test_full_profile_offline_fails_at_once_with_advice(tmp_path, monkeypatch):
    """A notebook asked for `full` with no data and no network stops in seconds and says what to do."""
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "empty"))
    source = next(p for p in NOTEBOOKS if p.stem == "01_fgsm")
    outcome = execute_notebook(source, tmp_path / "out", profile="full", timeout=120)
    assert outcome.status.startswith("error in cell"), outcome
    assert outcome.error.startswith("DatasetUnavailableError") and "fast" in outcome.error
    assert outcome.seconds < 60
    executed = nbformat.read(outcome.output, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1, "the message, not a traceback wall"


def test_timeout_leaves_no_kernel_running(tmp_path):
    """A notebook stuck in a loop is stopped with its kernel (which runs in a session of its own)."""
    import psutil

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nopen('kernel.pid', 'w').write(str(os.getpid()))\nwhile True:\n    pass"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "92_loop.ipynb")
    outcome = execute_notebook(tmp_path / "92_loop.ipynb", tmp_path / "out", timeout=20)
    assert outcome.status == "timeout"
    pid = int((tmp_path / "out" / "kernel.pid").read_text())
    try:
        psutil.Process(pid).wait(timeout=5)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
