"""Grade a folder of submissions: points only for work that passes the course's own check.

Layout: one folder per student, holding notebooks named like the course's,
    SUBMISSIONS/alice/01_fgsm.ipynb, SUBMISSIONS/alice/02_pgd.ipynb, SUBMISSIONS/bob/01_fgsm.ipynb …

For each submission the grader
1. builds what it runs from the course's notebook, taking only the exercise cells from the submission
   (`submission.assemble`), and flags the submission if its other code cells differ;
2. executes that notebook with papermill, in a sandbox (`sandbox`), which also saves each exercise's
   functions (cloudpickle) — the metrics the notebook writes are kept, labelled as reported by it;
3. runs the course's check for each exercise in the grader's own process, on proxies of the saved
   functions that execute in a separate sandboxed worker (`remote`): the student's code never runs where
   the verdict is decided, and nothing the submission writes can raise its points.
Rows are appended and flushed one by one (an interrupted batch loses nothing, and `resume` goes on
where it stopped); N submissions run at once with `workers`, or on a Dask cluster with `scheduler`.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..paths import checkpoint_dir
from .runner import execute_notebook, find_notebooks, read_file, read_notebook
from .submission import Exercise, assemble, exercise_name, exercises, functions_file

COLUMNS = ["student", "notebook", "status", "error", "seconds", "points", "max_points", "checks_passed",
           "checks_failed", "missing_exercises", "modified_cells", "uses_course_code", "check_messages",
           "reported_checks", "reported_metrics"]


@dataclass(frozen=True)
class Settings:
    """How every submission of a batch is run (picklable: it travels to pool and Dask workers)."""

    work_dir: Path  # one sub-folder per student and notebook
    profile: str = "fast"
    timeout: float = 600  # seconds for the notebook; each check gets `check_timeout`
    check_timeout: float = 120
    sandbox: bool = True
    hidden: tuple[Path, ...] = ()  # folders a submission must not see (the submissions, the CSV's folder)
    threads: int | None = None  # torch threads per submission (None: torch's default)


def find_submissions(root: Path) -> list[tuple[str, Path]]:
    """(student, file) pairs: every *.ipynb one folder below `root`, sorted for a stable order."""
    if not root.is_dir():
        raise ValueError(f"submissions folder {root} does not exist")
    return sorted((p.parent.name, p) for p in root.glob("*/*.ipynb"))


def _cell(text: str) -> str:
    """Text as a spreadsheet shows it, not as a formula it would run (=HYPERLINK(…) in an error message)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _row(student: str, notebook: str, status: str, error: str = "", seconds: float = 0.0, **fields) -> dict:
    student, notebook, error = _cell(student), _cell(notebook), _cell(error)
    row = dict.fromkeys(COLUMNS, "")
    row.update(student=student, notebook=notebook, status=status, error=error, seconds=f"{seconds:.1f}",
               points="0", max_points="0")
    row.update({k: v for k, v in fields.items() if k in COLUMNS})
    return row


def _sandbox_for(folder: Path, settings: Settings):
    if not settings.sandbox:
        return None
    from .sandbox import Sandbox

    return Sandbox(writable=folder, hidden=settings.hidden)


def _seed_checkpoints(folder: Path) -> Path:
    """A private copy of the grader's trained models: a submission reads them, and cannot spoil them."""
    private = folder / "checkpoints"
    private.mkdir(parents=True, exist_ok=True)
    source = checkpoint_dir()
    for pt in source.glob("*.pt") if source.is_dir() else []:
        if not (private / pt.name).exists():
            shutil.copy2(pt, private / pt.name)
    return private


def course_references(saved: Path) -> list[str]:
    """The course_utils modules a saved functions file refers to, read from its pickle opcodes without
    unpickling anything: a function that merely calls the reference implementation is not a forgery of
    the grader (the check cannot tell it from a solution), but the grader should be able to see it."""
    import pickletools

    data = read_file(saved)
    found = set()
    try:
        for op, arg, _ in pickletools.genops(data or b""):
            if isinstance(arg, str) and arg.startswith("course_utils.") and "classroom" not in arg:
                found.add(arg.split(" ")[0])
    except Exception:  # a damaged file: the worker will fail to load it, and the check with it
        pass
    return sorted(found)


def check_exercise(exercise: Exercise, folder: Path, sandbox, timeout: float) -> tuple[bool, str]:
    """Run the course's check on the saved functions of one exercise: (passed, the check's message).

    The check runs here; the student's functions run in a worker process (sandboxed when `sandbox`
    is given) behind proxies, so they cannot reach the check's code or its verdict.
    """
    from .. import checks  # the course's checks, imported by the grader, never by the submission
    from .remote import Worker

    saved = functions_file(folder, exercise.name)
    if not saved.is_file():
        return False, f"❌ {exercise.check}: {', '.join(exercise.functions)} not defined (the exercise cell failed)"
    out = io.StringIO()
    prefix, popen, env = (), {}, None
    if sandbox is not None:
        from .sandbox import allowed_environment

        prefix, popen = sandbox.argv([]), sandbox.popen_kwargs()
        env = dict(allowed_environment(os.environ), **sandbox.environment())
    try:
        with Worker(saved, prefix=prefix, timeout=timeout, env=env, popen=popen, stderr=subprocess.DEVNULL) as worker, \
                contextlib.redirect_stdout(out):
            passed = bool(getattr(checks, exercise.check)(*(worker.function(n) for n in exercise.functions)))
    except Exception as err:  # the worker could not start or died: the exercise earns nothing
        return False, f"❌ {exercise.check}: could not be checked ({type(err).__name__}: {err})"
    return passed, out.getvalue().strip()


def grade_one(student: str, path: Path, course_path: Path, settings: Settings) -> dict:
    """One CSV row: execute the assembled notebook, then check each exercise outside it."""
    name = path.stem
    if course_path is None:
        return _row(student, name, "unknown notebook", f"no course notebook is called {path.name}")
    course = read_notebook(course_path)
    found = exercises(course)
    max_points = f"{sum(e.points for e in found):g}"
    submitted = read_notebook(path)  # never through a link: alice's link to bob's notebook is not alice's work
    if submitted is None:
        return _row(student, name, "not a notebook", "the file is not a valid Jupyter notebook (or a link, or larger "
                    "than 64 MB)", max_points=max_points)
    folder = (settings.work_dir / student / name).resolve()
    shutil.rmtree(folder, ignore_errors=True)  # never grade what an earlier run left behind
    folder.mkdir(parents=True)
    run, missing, differ = assemble(course, submitted, folder)
    source = folder / "graded" / path.name
    source.parent.mkdir()
    nbformat.write(run, source)
    sandbox = _sandbox_for(folder, settings)
    env = {"COURSE_CHECKPOINT_DIR": str(_seed_checkpoints(folder))}
    if settings.threads:
        env.update(OMP_NUM_THREADS=str(settings.threads), MKL_NUM_THREADS=str(settings.threads))
    outcome = execute_notebook(source, folder, settings.profile, settings.timeout, name=name, env=env,
                               sandbox=sandbox)
    verdicts = {e.name: check_exercise(e, folder, sandbox, settings.check_timeout) for e in found}
    references = sorted({r for e in found for r in course_references(functions_file(folder, e.name))})
    exercise_errors = _exercise_errors(outcome.output)
    error = "; ".join(exercise_errors + ([outcome.error] if outcome.error else []))
    status = outcome.status
    if sandbox is not None and exercise_errors:
        from .sandbox import status_of

        # An exercise cell that hit a sandbox limit is the cause, even when a later cell failed for it
        # (memory the cell still holds, say).
        status = status_of(1, "\n".join(exercise_errors)) or status
    passed = sorted(n for n, (ok, _) in verdicts.items() if ok)
    reported = (outcome.results or {})
    return _row(
        student, name, status, error, outcome.seconds,
        points=f"{sum(e.points for e in found if e.name in passed):g}", max_points=max_points,
        checks_passed=";".join(passed), checks_failed=";".join(sorted(set(verdicts) - set(passed))),
        missing_exercises=";".join(missing), modified_cells=str(differ) if differ else "",
        uses_course_code=";".join(references),
        check_messages="\n".join(message for _, message in verdicts.values()),
        reported_checks=json.dumps(reported.get("checks", {}), sort_keys=True) if reported else "",
        reported_metrics=json.dumps(reported.get("metrics", {}), sort_keys=True) if reported else "",
    )


def _exercise_errors(executed: Path | None) -> list[str]:
    """'exercise NAME: Error: message' for each exercise cell that raised (the notebook went on past it)."""
    nb = read_notebook(executed) if executed is not None and executed.is_file() else None
    errors = []
    for cell in nb.cells if nb is not None else []:
        name = exercise_name(cell)
        for out in cell.get("outputs", []) if name else []:
            if out.get("output_type") == "error":
                errors.append(f"exercise {name}: {out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": "))
    return errors


def grade_safely(student: str, path: Path, course_path: Path | None, settings: Settings) -> dict:
    """`grade_one`, but whatever goes wrong becomes this submission's row: the batch always goes on."""
    try:
        return grade_one(student, path, course_path, settings)
    except Exception as err:  # a bug of ours, or a submission we did not foresee: record it, keep going
        return _row(student, path.stem, "internal error", f"{type(err).__name__}: {err}"[:500])


def _done(out_csv: Path) -> list[dict]:
    if not out_csv.is_file():
        return []
    with out_csv.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _results(tasks, workers: int, scheduler: str | None):
    """Yield each task's row as soon as it is known: serially, on a process pool, or on Dask."""
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            for future in as_completed([client.submit(grade_safely, *t, pure=False) for t in tasks]):
                yield future.result()
    elif workers > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for future in cf.as_completed([pool.submit(grade_safely, *t) for t in tasks]):
                yield future.result()
    else:
        for t in tasks:
            yield grade_safely(*t)


def grade(submissions: Path, out_csv: Path, work_dir: Path, profile: str = "fast", timeout: float = 600, *,
          workers: int = 1, scheduler: str | None = None, resume: bool = False, sandbox: bool = True,
          feedback_dir: Path | None = None, progress: bool = True, log=print) -> list[dict]:
    """Grade every submission and write one CSV row per (student, notebook); returns all rows.

    `sandbox=True` needs bubblewrap (`sandbox.available()`); without it this raises, and
    `sandbox=False` grades unsandboxed on purpose. `resume` keeps the rows already in `out_csv` and
    grades only the rest. `feedback_dir` gets one Markdown file per student.
    """
    from ..progress import bar as progress_bar

    if sandbox:
        from .sandbox import available

        ok, why = available()
        if not ok:
            raise ValueError(f"cannot sandbox submissions: {why}. Install bubblewrap (Debian/Ubuntu: apt-get install "
                             "bubblewrap), or grade without a sandbox on purpose with --no-sandbox.")
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    course = {p.name: p for p in find_notebooks()}
    entries = find_submissions(submissions)
    rows = _done(out_csv) if resume else []
    done = {(r["student"], r["notebook"]) for r in rows}
    todo = [(s, p) for s, p in entries if (s, p.stem) not in done]
    # Hidden from every submission: the others' work, the grades, earlier feedback, the course's solutions
    # (its notebooks and their history); the course package and its data are bound back by the sandbox.
    from ..paths import notebooks_dir, repo_root

    hidden = {submissions.resolve(), work_dir.resolve(), out_csv.resolve().parent, notebooks_dir().resolve(),
              (repo_root() / ".git").resolve()} | ({feedback_dir.resolve()} if feedback_dir is not None else set())
    hidden = tuple(sorted(p for p in hidden if p.exists() or p == out_csv.resolve().parent))
    threads = max(1, (os.cpu_count() or 1) // workers) if (workers > 1 or scheduler) else None
    settings = Settings(work_dir.resolve(), profile, timeout, sandbox=sandbox, hidden=hidden, threads=threads)
    tasks = [(s, p.resolve(), course.get(p.name), settings) for s, p in todo]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    fresh = not (resume and out_csv.is_file())
    start = time.perf_counter()
    with out_csv.open("w" if fresh else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if fresh:
            writer.writeheader()
            fh.flush()
        bar = progress_bar(total=len(tasks), desc="grading", unit="notebooks", disable=not progress)
        for row in _results(tasks, workers, scheduler):
            writer.writerow(row)
            fh.flush()  # a row on disk as soon as it is known
            rows.append(row)
            bar.update(1)
            log(f"{row['student']}/{row['notebook']}: {row['status']}, {row['points']}/{row['max_points']} points, "
                f"{row['seconds']} s" + (f", {row['modified_cells']} code cells differ" if row["modified_cells"] else ""))
        bar.close()
    if todo:
        log(f"graded {len(todo)} notebooks in {time.perf_counter() - start:.0f} s"
            + (f" ({len(entries) - len(todo)} kept from {out_csv})" if resume else ""))
    if feedback_dir is not None:
        write_feedback(rows, feedback_dir)
    return rows


def write_feedback(rows: list[dict], folder: Path) -> list[Path]:
    """One Markdown file per student: per notebook its status, error, points and each check's message."""
    folder.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[dict]] = {}
    for row in rows:
        by_student.setdefault(row["student"], []).append(row)
    written = []
    for student, theirs in sorted(by_student.items()):
        lines = [f"# Feedback for {student}", ""]
        for row in sorted(theirs, key=lambda r: r["notebook"]):
            lines += [f"## {row['notebook']}: {row['points']}/{row['max_points']} points", "",
                      f"- status: {row['status']}" + (f" — `{' '.join(row['error'].split())}`" if row["error"] else "")]
            if row["missing_exercises"]:
                lines.append(f"- no cell found for: {row['missing_exercises'].replace(';', ', ')} "
                             "(keep the exercise cells of the student version, and their metadata)")
            if row["modified_cells"]:
                lines.append(f"- {row['modified_cells']} code cells outside the exercises differ from the course's; "
                             "they were not run: only your exercise cells are graded")
            lines += ["", "Checks (run by the grader on your functions):", ""]
            lines += [f"    {line}" for line in (row["check_messages"] or "(no exercises)").splitlines()] + [""]
        path = folder / f"{student}.md"
        path.write_text("\n".join(lines))
        written.append(path)
    return written
