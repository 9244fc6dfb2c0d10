"""The grader gives points only for work that passes the course's own check, whatever a submission does.

One batch of submissions of 01_fgsm is graded once (two workers, in the sandbox where bubblewrap works):
the complete notebook, the untouched student version, and forgeries that leave the exercise unsolved
and try to collect its points anyway, each with a trick a student finds in minutes. Then the same
submissions serially, interrupted and resumed, and on a Dask LocalCluster: the same rows.
"""
from __future__ import annotations

import csv
import json

import nbformat
import pytest

from course_utils.classroom.grading import COLUMNS, grade
from course_utils.classroom.runner import find_notebooks
from course_utils.classroom.student import student_notebook

COURSE = find_notebooks(only=["01"])[0]


def _sandboxed() -> bool:
    from course_utils.classroom.sandbox import available

    return available()[0]


def _cell(nb, predicate):
    return next(c for c in nb.cells if c.cell_type == "code" and predicate(c))


def _exercise(nb):
    return _cell(nb, lambda c: c.metadata.get("course", {}).get("exercise") == "fgsm")


def _check(nb):
    return _cell(nb, lambda c: 'checks["fgsm"] = check_fgsm(fgsm)' in c.source)


def _save(nb):
    return _cell(nb, lambda c: "save_results(" in c.source)


FORGED_RESULTS = (
    "import atexit, json, os\n"
    "def _forge():\n"
    "    path = os.path.join(os.environ.get('COURSE_RESULTS_DIR', '.'), '01_fgsm.results.json')\n"
    "    json.dump({'notebook': '01_fgsm', 'profile': 'fast', 'checks': {'fgsm': True}, 'metrics': {}}, open(path, 'w'))\n"
    "atexit.register(_forge)\n"
    "_forge()\n"
)


def _forgeries(student: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Submissions that leave fgsm unsolved (the student version's `raise NotImplementedError()`)."""
    out = {}

    def variant(name, edit):
        nb = nbformat.from_dict(json.loads(json.dumps(student)))
        edit(nb)
        out[name] = nb

    variant("check_cell_edited", lambda nb: setattr(_check(nb), "source", 'checks["fgsm"] = True'))
    variant("save_cell_edited", lambda nb: setattr(_save(nb), "source",
                                                   "checks = {k: True for k in checks}\n" + _save(nb).source))
    variant("check_shadowed", lambda nb: setattr(_exercise(nb), "source",
                                                 _exercise(nb).source + "\n\ncheck_fgsm = lambda f: True\n"))
    variant("checker_patched", lambda nb: setattr(_exercise(nb), "source", _exercise(nb).source + (
        "\n\nimport torch, course_utils.checks as _c, course_utils.checks.harness as _h\n"
        "_c.check_fgsm = lambda f: True\n_h.report = lambda name, body: True\n"
        "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n")))
    variant("results_forged", lambda nb: setattr(_exercise(nb), "source", _exercise(nb).source + "\n\n" + FORGED_RESULTS))
    variant("extra_cell", lambda nb: nb.cells.append(nbformat.v4.new_code_cell(FORGED_RESULTS.replace("_forge()\n", "")
                                                                               + "_forge()\n")))
    variant("sabotage_in_call", lambda nb: setattr(_exercise(nb), "source", (
        "def fgsm(model, x, y, eps):\n"
        "    import torch\n"
        "    torch.allclose = lambda *a, **k: True\n"
        "    torch.equal = lambda *a, **k: True\n"
        "    print('✅ check_fgsm: passed')\n"
        "    return x.detach().clone()\n")))
    return out


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, mnist):
    """alice: complete; bob: untouched student version; carol: complete plus an extra cell; forgers."""
    from course_utils.config import get_profile
    from course_utils.zoo import standard_model

    x_train, y_train, _, _ = mnist
    standard_model(get_profile("fast"), x_train, y_train, "cpu", progress=False)  # cached once, copied to each run
    root = tmp_path_factory.mktemp("submissions")
    course = nbformat.read(COURSE, as_version=4)
    student = student_notebook(course)
    extra = nbformat.from_dict(json.loads(json.dumps(course)))
    extra.cells.append(nbformat.v4.new_code_cell("print('my own experiment')"))
    named = {"alice": course, "bob": student, "carol": extra, **_forgeries(student)}
    for who, nb in named.items():
        (root / who).mkdir()
        nbformat.write(nb, root / who / COURSE.name)
    return root


@pytest.fixture(scope="module")
def graded(submissions, tmp_path_factory):
    out = tmp_path_factory.mktemp("grades")
    rows = grade(submissions, out / "grades.csv", out / "work", workers=2, sandbox=_sandboxed(),
                 feedback_dir=out / "feedback", progress=False, log=lambda *_: None)
    return {r["student"]: r for r in rows}, out


def test_the_complete_notebook_earns_full_points_and_the_student_version_none(graded):
    rows, _ = graded
    assert rows["alice"]["status"] == "ok" and rows["alice"]["points"] == "2" == rows["alice"]["max_points"]
    assert rows["alice"]["modified_cells"] == "" and rows["alice"]["checks_passed"] == "fgsm"
    assert rows["bob"]["points"] == "0" and rows["bob"]["checks_failed"] == "fgsm"
    assert "not implemented" in rows["bob"]["check_messages"]


def test_extra_cells_are_ignored_and_flagged(graded):
    rows, _ = graded
    assert rows["carol"]["points"] == "2" and rows["carol"]["modified_cells"] == "1"


@pytest.mark.parametrize("forger", ["check_cell_edited", "save_cell_edited", "check_shadowed", "checker_patched",
                                    "results_forged", "extra_cell", "sabotage_in_call"])
def test_a_forgery_earns_nothing(graded, forger):
    rows, _ = graded
    row = rows[forger]
    assert row["points"] == "0", f"{forger} earned {row['points']} points: {row['check_messages']}"
    assert row["checks_failed"] == "fgsm"


def test_what_a_forgery_claims_is_kept_but_labelled_as_reported(graded):
    """The forged results JSON and edited check cell make the notebook *claim* a pass; the grade ignores it."""
    rows, _ = graded
    for forger in ("check_cell_edited", "save_cell_edited"):
        # Those two cells are the course's in what the grader runs: even the claim is honest there.
        assert json.loads(rows[forger]["reported_checks"] or "{}").get("fgsm") is not True
    assert rows["check_cell_edited"]["modified_cells"] == "1" and rows["save_cell_edited"]["modified_cells"] == "1"
    assert json.loads(rows["check_shadowed"]["reported_checks"])["fgsm"] is True  # its kernel lied; no points
    assert json.loads(rows["results_forged"]["reported_checks"])["fgsm"] is True  # its exit hook lied; no points


def test_each_student_gets_a_feedback_file(graded):
    rows, out = graded
    alice = (out / "feedback" / "alice.md").read_text()
    assert "01_fgsm: 2/2 points" in alice and "✅ check_fgsm" in alice
    bob = (out / "feedback" / "bob.md").read_text()
    assert "0/2 points" in bob and "not implemented" in bob
    assert "differ from the course's" in (out / "feedback" / "carol.md").read_text()


def _comparable(rows):
    return {(r["student"], r["notebook"]): {k: v for k, v in r.items() if k != "seconds"} for r in rows}


def test_serial_interrupted_resumed_and_dask_runs_give_the_same_rows(graded, submissions, tmp_path):
    rows, _ = graded
    subset = tmp_path / "subset"
    for who in ("alice", "bob", "check_shadowed"):
        (subset / who).mkdir(parents=True)
        (subset / who / COURSE.name).write_bytes((submissions / who / COURSE.name).read_bytes())
    expected = _comparable([rows[w] for w in ("alice", "bob", "check_shadowed")])
    csv_path = tmp_path / "grades.csv"
    quiet = dict(sandbox=_sandboxed(), progress=False, log=lambda *_: None)
    serial = grade(subset, csv_path, tmp_path / "work", **quiet)
    assert _comparable(serial) == expected
    # An interrupted batch: keep the header and the first row only, then resume.
    with csv_path.open(newline="") as fh:
        kept = list(csv.DictReader(fh))[:1]
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
    seen = []
    resumed = grade(subset, csv_path, tmp_path / "work2", resume=True, **dict(quiet, log=seen.append))
    assert _comparable(resumed) == expected
    assert sum("01_fgsm:" in line for line in seen) == 2, "only the two missing rows are graded again"
    with csv_path.open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = grade(subset, tmp_path / "dask.csv", tmp_path / "work3", scheduler=cluster.scheduler_address, **quiet)
    assert _comparable(on_dask) == expected


ESCAPES = {
    "reads_a_sibling": "print(open({sibling!r}).read()[:100])",
    "writes_outside": "open({outside!r}, 'w').write('pwned')",
    "opens_a_socket": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).send(b'pwned')",
    "forks_endlessly": "import os\nwhile True:\n    os.fork()",
    "eats_memory": "hog = []\nwhile True:\n    hog.append(bytearray(100_000_000))",
}


@pytest.mark.skipif(not _sandboxed(), reason="needs a working bubblewrap (apt-get install bubblewrap)")
def test_sandbox_escapes_are_denied_or_stopped_recorded_and_the_batch_goes_on(tmp_path):
    """Each submission's exercise cell tries one escape; the next submission (complete) still gets its points."""
    import socket

    root, outside = tmp_path / "submissions", tmp_path / "outside.txt"
    course = nbformat.read(COURSE, as_version=4)
    (root / "zz_honest").mkdir(parents=True)
    nbformat.write(course, root / "zz_honest" / COURSE.name)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    try:
        for who, code in ESCAPES.items():
            nb = nbformat.from_dict(json.loads(json.dumps(course)))
            _exercise(nb).source = code.format(sibling=str(root / "zz_honest" / COURSE.name), outside=str(outside),
                                               port=server.getsockname()[1]) + "\n\n" + _exercise(nb).source
            (root / who).mkdir()
            nbformat.write(nb, root / who / COURSE.name)
        rows = {r["student"]: r for r in grade(root, tmp_path / "grades.csv", tmp_path / "work", timeout=120,
                                                progress=False, log=lambda *_: None)}
        with pytest.raises(OSError):
            server.accept()  # nobody got through to the host
    finally:
        server.close()
    assert not outside.exists()
    assert "FileNotFoundError" in rows["reads_a_sibling"]["error"]
    assert "Read-only file system" in rows["writes_outside"]["error"] or "Permission" in rows["writes_outside"]["error"]
    assert "Error" in rows["opens_a_socket"]["error"]
    assert rows["forks_endlessly"]["status"] == "process limit", rows["forks_endlessly"]
    assert rows["eats_memory"]["status"] == "memory limit", rows["eats_memory"]
    # The escapes ran in the exercise cell before a correct fgsm: the check still judges the function.
    assert rows["zz_honest"]["points"] == "2" and rows["zz_honest"]["status"] == "ok"
    assert set(rows) == set(ESCAPES) | {"zz_honest"}, "one row per submission, none lost"
