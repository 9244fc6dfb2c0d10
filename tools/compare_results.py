"""Compare two folders of results JSONs (e.g. before and after a refactoring) metric by metric.

    python tools/compare_results.py BEFORE_DIR AFTER_DIR

Prints, per notebook, every metric whose value differs (numbers beyond 1e-9), every metric present
on one side only, and the self-checks that differ; exits 1 if anything differs. Wall times (keys
with "seconds" or "time" in their last part, or ending in "_s") differ from run to run and are skipped.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def flatten(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}{k}.")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from flatten(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), value


TIMING = re.compile(r"(seconds|time|_s$|\bs$)", re.I)


def differences(before: dict, after: dict) -> list[str]:
    keep = lambda key: not TIMING.search(key.rsplit(".", 1)[-1])
    a = {k: v for k, v in flatten(before) if keep(k)}
    b = {k: v for k, v in flatten(after) if keep(k)}
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            out.append(f"  {key}: only {'after' if key in b else 'before'}")
            continue
        x, y = a[key], b[key]
        same = abs(x - y) <= 1e-9 if isinstance(x, (int, float)) and isinstance(y, (int, float)) else x == y
        if not same:
            out.append(f"  {key}: {x} → {y}")
    return out


def main(before_dir: str, after_dir: str) -> int:
    changed = 0
    for path in sorted(Path(before_dir).glob("*.results.json")):
        other = Path(after_dir) / path.name
        if not other.is_file():
            print(f"{path.name.split('.')[0]}: missing after"); changed += 1
            continue
        before, after = json.loads(path.read_text()), json.loads(other.read_text())
        diff = differences({"metrics": before["metrics"], "checks": before["checks"]},
                           {"metrics": after["metrics"], "checks": after["checks"]})
        print(f"{path.name.split('.')[0]}: {'equal' if not diff else f'{len(diff)} differences'}")
        print("\n".join(diff)) if diff else None
        changed += bool(diff)
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
