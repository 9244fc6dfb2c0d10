"""Grade a folder of submissions: execute each with papermill, read its results, write a CSV.

Layout: one folder per student, holding notebooks named like the course's,
    SUBMISSIONS/alice/01_fgsm.ipynb, SUBMISSIONS/alice/02_pgd.ipynb, SUBMISSIONS/bob/01_fgsm.ipynb …
Points come from the course's own notebooks (never from the submission, which a student
could edit). Rows are appended and flushed one by one, so an interrupted batch loses nothing.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .runner import Outcome, exercise_points, execute_notebook, find_notebooks

COLUMNS = ["student", "notebook", "status", "error", "seconds", "points", "max_points",
           "checks_passed", "checks_failed", "metrics"]


def find_submissions(root: Path) -> list[tuple[str, Path]]:
    """(student, file) pairs: every *.ipynb one folder below `root`, sorted for a stable order."""
    if not root.is_dir():
        raise ValueError(f"submissions folder {root} does not exist")
    return sorted((p.parent.name, p) for p in root.glob("*/*.ipynb"))


def grade_row(student: str, outcome: Outcome, points: dict[str, float]) -> dict:
    checks = (outcome.results or {}).get("checks", {}) if outcome.ok else {}
    passed = sorted(k for k, v in checks.items() if v)
    failed = sorted(set(points) - set(passed))  # an unreported exercise counts as failed
    return {
        "student": student,
        "notebook": outcome.notebook,
        "status": outcome.status,
        "error": outcome.error,
        "seconds": f"{outcome.seconds:.1f}",
        "points": f"{sum(points.get(k, 0.0) for k in passed):g}",
        "max_points": f"{sum(points.values()):g}",
        "checks_passed": ";".join(passed),
        "checks_failed": ";".join(failed),
        "metrics": json.dumps((outcome.results or {}).get("metrics", {}), sort_keys=True) if outcome.ok else "",
    }


def grade(submissions: Path, out_csv: Path, work_dir: Path, profile: str = "fast",
          timeout: float = 600, log=print) -> list[dict]:
    """Execute every submission and write one CSV row per (student, notebook)."""
    course = {p.name: p for p in find_notebooks()}
    rows = []
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        fh.flush()
        entries = find_submissions(submissions)
        for i, (student, path) in enumerate(entries, start=1):
            if path.name not in course:
                outcome = Outcome(path.stem, "unknown notebook", 0.0,
                                  f"no course notebook is called {path.name}")
                points = {}
            else:
                points = exercise_points(course[path.name])
                outcome = execute_notebook(path, work_dir / student, profile, timeout, name=path.stem)
            row = grade_row(student, outcome, points)
            writer.writerow(row)
            fh.flush()  # a row on disk as soon as it is known
            rows.append(row)
            log(f"[{i}/{len(entries)}] {student}/{path.name}: {row['status']}, "
                f"{row['points']}/{row['max_points']} points, {row['seconds']} s")
    return rows
