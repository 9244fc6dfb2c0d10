"""The course's command line: `python -m course_utils run | seeds | student | grade | links | site` (or `course-utils …`)."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .runner import execute_notebook, find_notebooks, summary_table


def _run(args) -> int:
    folder = Path(args.dir) if args.dir else None
    notebooks = find_notebooks(folder, only=args.only.split(",") if args.only else None)
    if not notebooks:
        raise ValueError(f"no notebooks named NN_*.ipynb in {folder or 'notebooks/'}")
    out = Path(args.out or f"runs/{args.profile}")
    print(f"Running {len(notebooks)} notebook(s) with the {args.profile!r} profile; executed copies go to {out}/")
    outcomes = []
    for i, nb in enumerate(notebooks, start=1):
        print(f"[{i}/{len(notebooks)}] {nb.stem} …", end=" ", flush=True)
        outcome = execute_notebook(nb, out, args.profile, args.timeout)
        print(f"{outcome.status} ({outcome.seconds:.0f} s)" + (f": {outcome.error}" if not outcome.ok else ""), flush=True)
        outcomes.append(outcome)
    print()
    print(summary_table(outcomes, {nb.stem: nb for nb in notebooks}))
    return 0 if all(o.ok for o in outcomes) else 1


def _seeds(args) -> int:
    from .seeds import markdown, parse_seeds, run_seeds, write_between_markers

    notebooks = find_notebooks(only=args.only.split(",") if args.only else None)
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    print(f"Running {len(notebooks)} notebook(s) at seeds {', '.join(map(str, seeds))} (fast profile); "
          f"executed copies and models go to {out}/")
    sweep = run_seeds(notebooks, seeds, out, args.timeout)
    table = markdown(sweep)
    (out / "seeds.md").write_text(table)
    print()
    print(table)
    if args.write:
        write_between_markers(Path(args.write), table)
        print(f"table written into {args.write}")
    return 0 if sweep.all_ok else 1


def _student(args) -> int:
    from .student import write_student_versions

    notebooks = find_notebooks(only=args.only.split(",") if args.only else None)
    out = Path(args.out)
    for path in write_student_versions(notebooks, out):
        print(f"wrote {path}")
    return 0


def _grade(args) -> int:
    from .grading import grade

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="grading-"))
    feedback = Path(args.feedback) if args.feedback else Path(args.out).parent / "feedback"
    rows = grade(Path(args.submissions), Path(args.out), work, args.profile, args.timeout, workers=args.workers,
                 scheduler=args.scheduler, resume=args.resume, sandbox=not args.no_sandbox, feedback_dir=feedback)
    print(f"\nwrote {len(rows)} rows to {args.out}, feedback for each student in {feedback}/ "
          f"(executed copies in {work}/)")
    return 0


def _links(args) -> int:
    from .links import Home, home, rewrite, set_home, stray_links

    if args.set or args.branch:
        current = home()
        new = Home(args.set or current.repository, args.branch or current.branch)
        set_home(new)
        print(f"pyproject.toml: [tool.course] repository = {new.repository!r}, branch = {new.branch!r}")
    where = home()
    if not args.check:
        for path in rewrite(where):
            print(f"rewrote {path}")
    problems = stray_links(where)
    for line in problems:
        print(f"points elsewhere: {line}")
    print(f"{'no' if not problems else len(problems)} link(s) pointing away from {where.url} ({where.branch})")
    return 1 if problems else 0


def _site(args) -> int:
    from .site import build

    html = build(Path(args.out) if args.out else None, quiet=not args.verbose)
    print(f"the site is in {html}/ — open {html / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    run = sub.add_parser("run", help="execute the course's notebooks headless and print their headline results")
    run.add_argument("--profile", choices=["fast", "full"], default="fast")
    run.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 01,02")
    run.add_argument("--out", help="folder for the executed copies and results (default runs/PROFILE)")
    run.add_argument("--timeout", type=float, default=None, help="seconds allowed per notebook (default: no limit)")
    run.add_argument("--dir", help="folder of notebooks to run (default: the course's notebooks/)")
    run.set_defaults(func=_run)

    seeds = sub.add_parser("seeds", help="run the notebooks at several seeds and tabulate the spread of their claims")
    seeds.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7 (default 0-4)")
    seeds.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 04,05")
    seeds.add_argument("--out", default="runs/seeds", help="folder for executed copies, models and seeds.md")
    seeds.add_argument("--timeout", type=float, default=None, help="seconds allowed per notebook (default: no limit)")
    seeds.add_argument("--write", help="also write the table between the seed-sweep markers of this file "
                                       "(e.g. benchmarks/RESULTS.md)")
    seeds.set_defaults(func=_seeds)

    student = sub.add_parser("student", help="write the student versions (solutions replaced by prompts)")
    student.add_argument("--out", default="student", help="output folder (default student/)")
    student.add_argument("--only", help="comma-separated notebook numbers or names")
    student.set_defaults(func=_student)

    grade = sub.add_parser("grade", help="execute submitted notebooks and write a score table (CSV)")
    grade.add_argument("submissions", help="folder with one sub-folder of notebooks per student")
    grade.add_argument("--out", default="grades.csv", help="CSV to write (default grades.csv)")
    grade.add_argument("--timeout", type=float, default=600, help="seconds allowed per notebook (default 600)")
    grade.add_argument("--profile", choices=["fast", "full"], default="fast")
    grade.add_argument("--work", help="folder for executed copies (default: a new temporary folder)")
    grade.add_argument("--workers", type=int, default=1, help="submissions graded at once on this machine (default 1)")
    grade.add_argument("--scheduler", help="address of a Dask distributed scheduler to send the submissions to, "
                                           "e.g. tcp://10.0.0.5:8786 (needs the 'dask' extra and a shared file system)")
    grade.add_argument("--resume", action="store_true", help="keep the rows already in --out and grade only the rest")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run submissions without bubblewrap (only where it is missing, on purpose)")
    grade.add_argument("--feedback", help="folder for one Markdown feedback file per student (default: feedback/ "
                                          "beside the CSV)")
    grade.set_defaults(func=_grade)

    links = sub.add_parser("links", help="point the Colab badges, setup cells and site launch buttons at the "
                                         "repository in pyproject.toml's [tool.course] (or at a new one)")
    links.add_argument("--set", metavar="OWNER/NAME", help="store this repository as the course's home first")
    links.add_argument("--branch", help="store this branch as the course's branch first")
    links.add_argument("--check", action="store_true", help="only list links that point elsewhere (exit 1 if any)")
    links.set_defaults(func=_links)

    site = sub.add_parser("site", help="build the course website from the committed notebooks (nothing is executed)")
    site.add_argument("--out", help="folder to build into (default _site/, git-ignored); the pages go to OUT/html")
    site.add_argument("--verbose", action="store_true", help="show Jupyter Book's own output")
    site.set_defaults(func=_site)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        parser.error(str(err))
        return 2


if __name__ == "__main__":
    sys.exit(main())
