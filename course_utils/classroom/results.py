"""The small JSON each executed notebook leaves next to itself, for graders and `run`."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..paths import results_dir  # importable from here too, as it was in 0.1


def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors and numpy numbers become Python numbers, floats are rounded."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else str(value)
    return value


def save_results(notebook: str, metrics: dict, checks: dict[str, bool], profile: str) -> Path:
    """Write `<notebook>.results.json` with the notebook's metrics and self-check outcomes."""
    path = results_dir() / f"{notebook}.results.json"
    payload = {
        "notebook": notebook,
        "profile": profile,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "checks": {k: bool(v) for k, v in checks.items()},
        "metrics": _plain(metrics),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    tmp.replace(path)
    return path


def load_results(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
