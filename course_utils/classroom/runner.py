"""Execute notebooks headless with papermill, one kernel each, and summarise what they wrote.

Used by `python -m course_utils run` (the whole course) and `grade` (students' submissions).
Each notebook runs in a child process with a wall-clock limit, so a notebook that hangs,
crashes its kernel or is not a notebook at all is reported and never stops the batch.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..paths import notebooks_dir


@dataclass
class Outcome:
    """What happened when one notebook was executed."""

    notebook: str  # file stem, e.g. "01_fgsm"
    status: str  # "ok", "error in cell N", "timeout", "not a notebook", "no results"
    seconds: float
    error: str = ""  # the error's last line, when there is one
    results: dict | None = None  # the notebook's results JSON, when it wrote one
    output: Path | None = None  # the executed copy

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def find_notebooks(folder: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The course notebooks `NN_*.ipynb` in order; `only` keeps those whose number or name matches."""
    paths = sorted(p for p in (folder or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = [w.strip() for w in only if w.strip()]
        paths = [p for p in paths if any(p.stem == w or p.stem.split("_")[0] == w.zfill(2) for w in wanted)]
        if not paths:
            raise ValueError(f"no notebook matches {', '.join(wanted)}")
    return paths


MAX_FILE = 64 << 20  # bytes: a notebook or results file larger than this is not one the course wrote


def read_file(path: Path, limit: int = MAX_FILE) -> bytes | None:
    """The bytes of a regular file, or None: never through a link, never more than `limit`, never blocking.

    The grader reads files that a sandboxed submission could have replaced: a link to /proc/kmsg would
    block forever, a link to another student's folder would be read with the grader's rights.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
        return data if len(data) <= limit else None
    finally:
        os.close(fd)


def read_notebook(path: Path) -> nbformat.NotebookNode | None:
    """The notebook at `path`, or None if it is not a valid notebook file (or a link, or huge)."""
    data = read_file(path)
    if data is None:
        return None
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
        return nb
    except Exception:
        return None


def read_results(path: Path) -> dict | None:
    """A results JSON as a dict with dict "checks" and "metrics", or None if it is anything else."""
    data = read_file(path)
    try:
        results = json.loads(data) if data is not None else None
    except ValueError:
        return None
    if not (isinstance(results, dict) and isinstance(results.get("checks", {}), dict)
            and isinstance(results.get("metrics", {}), dict)):
        return None
    return results


def _first_error(executed: Path) -> tuple[str, str] | None:
    """(status, last line) of the first cell whose output is an unexpected error in an executed notebook;
    None if the notebook ran to its end with errors only in cells tagged "raises-exception" (the grader
    tags the exercise cells so: a broken exercise fails its check, and the rest of the notebook runs)."""
    nb = read_notebook(executed)
    if nb is None:
        return "error", "the executed notebook could not be read back"
    # Count code cells as the author sees them: papermill's injected parameters cell is not theirs.
    code_cells = [c for c in nb.cells if c.cell_type == "code"
                  and "injected-parameters" not in c.metadata.get("tags", [])]
    for number, cell in enumerate(code_cells, start=1):
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"error in cell {number}", f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    if code_cells and code_cells[-1].get("execution_count") is not None:
        return None  # it ran to the end
    return "error", "papermill failed before any cell reported an error"


def execute_notebook(
    source: Path,
    out_dir: Path,
    profile: str = "fast",
    timeout: float | None = None,
    name: str | None = None,
    seed: int | None = None,
    env: dict[str, str] | None = None,
    sandbox=None,
) -> Outcome:
    """Execute `source` with papermill into `out_dir` (cwd and results folder), within `timeout` seconds.

    `seed` is injected as the notebook's SEED parameter (its own default otherwise); `env` adds
    environment variables for the kernel (e.g. another COURSE_CHECKPOINT_DIR). With a `sandbox.Sandbox`,
    papermill and its kernel run inside it (the grader's case)."""
    name = name or source.stem
    start = time.perf_counter()
    if read_notebook(source) is None:
        return Outcome(name, "not a notebook", 0.0, "the file is not a valid Jupyter notebook")
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / source.name
    results_file = out_dir / f"{name}.results.json"
    results_file.unlink(missing_ok=True)  # never report a stale file as this run's results
    # Figures must land in the executed copy whatever backend the calling shell chose.
    # COURSE_HEADLESS: nobody will move a slider, so notebooks draw a static picture instead of a widget
    # (an ipywidgets `interact` cell hung papermill in the grader's sandbox, in two runs of its tests).
    env = dict(os.environ, **(env or {}), COURSE_RESULTS_DIR=str(out_dir.resolve()), PYTHONUNBUFFERED="1",
               MPLBACKEND="module://matplotlib_inline.backend_inline", COURSE_HEADLESS="1")
    cmd = [sys.executable, "-m", "papermill", str(source), str(executed), "-p", "PROFILE", profile,
           "--cwd", str(out_dir), "--no-progress-bar", "--kernel", "python3"]
    if seed is not None:
        cmd += ["-p", "SEED", str(int(seed))]
    popen = {}
    if sandbox is not None:
        from .sandbox import allowed_environment

        cmd, popen = sandbox.argv(cmd), sandbox.popen_kwargs()
        env = dict(allowed_environment(env), **sandbox.environment())
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            **popen)
    try:
        log = _bounded_output(proc, timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        proc.wait()
        return Outcome(name, "timeout", time.perf_counter() - start, f"still running after {timeout:g} s", output=executed)
    seconds = time.perf_counter() - start
    results = read_results(results_file)
    failure = (_first_error(executed) if executed.is_file() else ("error", _last_line(log))) if proc.returncode else None
    if failure is not None:
        status, error = failure
        limit = sandbox.status_of(proc.returncode, log.decode(errors="replace")) if sandbox is not None else None
        return Outcome(name, limit or status, seconds, error, results, executed)
    if results is None:
        return Outcome(name, "no results", seconds, f"the notebook wrote no {results_file.name}", None, executed)
    return Outcome(name, "ok", seconds, "", results, executed)


LOG_TAIL = 64 << 10  # bytes of papermill's output kept: the end holds the error


def _bounded_output(proc: subprocess.Popen, timeout: float | None) -> bytes:
    """Wait for `proc`, keeping only the last LOG_TAIL bytes of its output, so a notebook that prints
    without end (or writes into papermill's stdout) cannot fill the grader's memory."""
    tail = collections.deque(maxlen=LOG_TAIL // 4096 + 1)
    reader = threading.Thread(target=lambda: [tail.append(chunk) for chunk in iter(lambda: proc.stdout.read(4096), b"")],
                              daemon=True)
    reader.start()
    proc.wait(timeout=timeout)  # raises TimeoutExpired like communicate()
    reader.join(timeout=5)
    return b"".join(tail)[-LOG_TAIL:]


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill papermill and its kernel. jupyter_client starts kernels in a session of their own,
    so killing papermill's process group alone would leave a busy kernel spinning."""
    try:
        import psutil  # installed with ipykernel

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        children = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except Exception:
            pass  # already gone


def _last_line(log: bytes) -> str:
    lines = [l for l in log.decode(errors="replace").splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


def headline_spec(nb_path: Path, field: str = "headline") -> list[dict]:
    """The notebook's headline metrics: metadata.course.headline = [{label, key, format}, …].

    With field="claims": the metrics its assertion cell rests on (`seeds` reports their spread)."""
    nb = read_notebook(nb_path)
    return list(nb.metadata.get("course", {}).get(field, [])) if nb is not None else []


def exercise_points(nb_path: Path) -> dict[str, float]:
    """Points per exercise, from the exercise cells' metadata (course.exercise, course.points)."""
    nb = read_notebook(nb_path)
    points = {}
    for cell in nb.cells if nb is not None else []:
        meta = cell.metadata.get("course", {})
        if "exercise" in meta:
            points[meta["exercise"]] = float(meta.get("points", 1))
    return points


def format_value(value, fmt: str) -> str:
    if value is None:
        return "—"
    if fmt == "pct" and isinstance(value, (int, float)):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def summary_table(outcomes: list[Outcome], sources: dict[str, Path]) -> str:
    """One line per notebook: status, time and its headline results."""
    rows = []
    for o in outcomes:
        metrics = (o.results or {}).get("metrics", {})
        parts = [f"{h['label']} {format_value(metrics.get(h['key']), h.get('format', ''))}"
                 for h in headline_spec(sources[o.notebook])] if o.results else []
        checks = (o.results or {}).get("checks", {})
        if checks:
            parts.append(f"self-checks {sum(checks.values())}/{len(checks)}")
        detail = " · ".join(parts) if o.ok else (o.error or o.status)
        rows.append((o.notebook, o.status, f"{o.seconds:.0f} s", detail))
    widths = [max(len(r[i]) for r in rows + [("notebook", "status", "time", "")]) for i in range(3)]
    header = f"{'notebook':{widths[0]}}  {'status':{widths[1]}}  {'time':>{widths[2]}}  headline results"
    lines = [header, "-" * len(header)]
    lines += [f"{a:{widths[0]}}  {b:{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    total = sum(o.seconds for o in outcomes)
    lines.append(f"{sum(o.ok for o in outcomes)}/{len(outcomes)} notebooks ok in {total:.0f} s")
    return "\n".join(lines)
