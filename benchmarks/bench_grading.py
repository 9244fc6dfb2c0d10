"""Grading throughput: submissions per minute with 1 and 2 workers, and what a class would take.

    python benchmarks/bench_grading.py [--copies 6] [--notebooks 00,01] [--no-sandbox]

Makes `copies` students, each submitting the complete notebooks named by --notebooks, grades the
folder with 1 worker and with 2, and prints notebooks per minute for each, with the speed-up.
The models the notebooks load are trained once first (not timed), as a grader would before a batch.
Then it extrapolates to 300 students × 9 notebooks on a 32-core machine from the measured rate per
core and the warm run time of the whole course (`--course-seconds`, from benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from course_utils.classroom.grading import grade
from course_utils.classroom.runner import find_notebooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--notebooks", default="00,01")
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--course-seconds", type=float, default=240.0,
                        help="warm run time of all nine notebooks on 2 cores, one after the other")
    args = parser.parse_args()
    from course_utils.config import get_profile
    from course_utils.data import load_mnist
    from course_utils.zoo import standard_model

    profile = get_profile("fast")
    x_train, y_train, _, _ = load_mnist(profile)
    standard_model(profile, x_train, y_train, "cpu", progress=False)  # what 00-03 load
    notebooks = find_notebooks(only=args.notebooks.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "submissions"
        for i in range(args.copies):
            (root / f"student{i:02d}").mkdir(parents=True)
            for nb in notebooks:
                shutil.copy(nb, root / f"student{i:02d}" / nb.name)
        n = args.copies * len(notebooks)
        rates = {}
        for workers in (1, 2):
            start = time.perf_counter()
            rows = grade(root, Path(tmp) / f"w{workers}.csv", Path(tmp) / f"work{workers}", workers=workers,
                         sandbox=not args.no_sandbox, progress=False, log=lambda *_: None)
            seconds = time.perf_counter() - start
            assert all(r["status"] == "ok" and r["points"] == r["max_points"] for r in rows), rows
            rates[workers] = 60 * n / seconds
            print(f"{workers} worker(s): {n} notebooks in {seconds:.0f} s = {rates[workers]:.1f} notebooks/min")
    print(f"speed-up with 2 workers on {torch.get_num_threads()} threads: {rates[2] / rates[1]:.2f}×")
    # One worker per 2 cores keeps each kernel's two threads busy, as measured here with 2 workers on 2 cores
    # (each with one thread); the per-core rate is what carries over to a bigger machine.
    per_core_rate = rates[2] / 2
    mean_seconds_here = 60 / rates[1]
    course_factor = args.course_seconds / 9 / mean_seconds_here  # the whole course's notebooks are longer
    minutes = 300 * 9 / (per_core_rate * 32) * course_factor
    print(f"300 students × 9 notebooks on 32 cores: about {minutes / 60:.1f} h "
          f"(per-core rate {per_core_rate:.1f} notebooks/min on {args.notebooks}, scaled by {course_factor:.1f} "
          f"for the course's mean notebook); {platform.processor() or platform.machine()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
