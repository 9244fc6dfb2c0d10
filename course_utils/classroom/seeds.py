"""Run the notebooks at several seeds and tabulate the spread of what they claim.

A notebook's assertions must hold for every seed and on every machine, and a threshold is
only honest if it sits outside the spread of the number it tests. This module executes the
notebooks with papermill at SEED = 0, 1, … (each seed trains its own models), collects the
metrics each notebook's assertion cell rests on (`metadata.course.claims`), and writes a
table per notebook: one column per seed, then mean, standard deviation, min and max, and
whether the assertion cell passed.

    python -m course_utils seeds --seeds 0-4 --write benchmarks/RESULTS.md
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from .runner import Outcome, execute_notebook, format_value, headline_spec

BEGIN, END = "<!-- seed-sweep:begin -->", "<!-- seed-sweep:end -->"


def parse_seeds(text: str) -> list[int]:
    """'0-4' → [0, 1, 2, 3, 4]; '0,3,7' → [0, 3, 7]; ranges and lists may be mixed."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                if last < first:
                    raise ValueError
                seeds.extend(range(first, last + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"seeds must look like '0-4' or '0,2,5' (non-negative integers), got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must look like '0-4' or '0,2,5' (non-negative integers), got {text!r}")
    return sorted(set(seeds))


@dataclass
class Sweep:
    """Outcomes of every (notebook, seed) run: outcomes[notebook][seed]."""

    seeds: list[int]
    outcomes: dict[str, dict[int, Outcome]] = field(default_factory=dict)
    claims: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def all_ok(self) -> bool:
        return all(o.ok for runs in self.outcomes.values() for o in runs.values())


def run_seeds(notebooks: list[Path], seeds: list[int], out: Path, timeout: float | None = None, log=print) -> Sweep:
    """Execute every notebook at every seed, seed by seed (a seed's later notebooks reuse its earlier
    notebooks' models, as a student's run does). Models are cached in out/checkpoints."""
    sweep = Sweep(seeds, {nb.stem: {} for nb in notebooks}, {nb.stem: headline_spec(nb, "claims") for nb in notebooks})
    env = {"COURSE_CHECKPOINT_DIR": str((out / "checkpoints").resolve())}
    for seed in seeds:
        for nb in notebooks:
            start = time.perf_counter()
            outcome = execute_notebook(nb, out / f"seed{seed}", "fast", timeout, seed=seed, env=env)
            sweep.outcomes[nb.stem][seed] = outcome
            log(f"seed {seed} {nb.stem}: {outcome.status} ({time.perf_counter() - start:.0f} s)"
                + (f": {outcome.error}" if not outcome.ok else ""))
    return sweep


def _spread(values: list[float]) -> tuple[float, float, float, float]:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd, min(values), max(values)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def markdown(sweep: Sweep) -> str:
    """One table per notebook: claims × seeds, with mean, sd, min and max, and the run status."""
    lines = []
    for notebook, runs in sweep.outcomes.items():
        seeds = [s for s in sweep.seeds if s in runs]
        lines.append(f"**{notebook}**\n")
        header = "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd | min | max |"
        lines += [header, "|" + "---|" * (len(seeds) + 5)]
        status = ["ok" if runs[s].ok else f"**{runs[s].status}**" for s in seeds]
        lines.append("| assertions | " + " | ".join(status) + " | | | | |")
        for spec in sweep.claims.get(notebook, []):
            fmt = spec.get("format", "")
            raw = [((runs[s].results or {}).get("metrics", {})).get(spec["key"]) for s in seeds]
            cells = [format_value(v, fmt) for v in raw]
            numbers = [n for n in map(_number, raw) if n is not None]
            stats = [format_value(v, fmt) for v in _spread(numbers)] if numbers else ["—"] * 4
            if fmt == "pct" and len(numbers) > 1:  # a spread in points reads better than in percent
                stats[1] = f"{100 * _spread(numbers)[1]:.1f} pts"
            lines.append(f"| {spec['label']} | " + " | ".join(cells) + " | " + " | ".join(stats) + " |")
        seconds = [runs[s].seconds for s in seeds]
        lines.append("| run time (s) | " + " | ".join(f"{v:.0f}" for v in seconds) + " | "
                     + " | ".join(f"{v:.0f}" for v in _spread(seconds)) + " |")
        lines.append("")
    return "\n".join(lines)


def write_between_markers(path: Path, text: str) -> None:
    """Replace what lies between the seed-sweep markers of `path` (appending them if missing)."""
    content = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in content and END in content:
        before, rest = content.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        content = before + block + after
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    path.write_text(content)
