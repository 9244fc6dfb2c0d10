"""The widget state a notebook stores, read without a kernel. No torch, no ipywidgets.

A saved notebook keeps each widget's last state in its metadata, and each output that showed a
widget only names its model. Two uses: drop the state of widgets no output shows any more (tqdm's
bars, closed when training ended, leave theirs behind), and find the frames an interactive
output last drew (an ipywidgets `Output` inside `interact`) so a page without a kernel can show
them as pictures.

Works on notebooks as nbformat nodes or as plain dicts from json.
"""
from __future__ import annotations

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"
_REF = "IPY_MODEL_"


def models(nb: dict) -> dict:
    """model id → {"model_name": …, "state": …} as stored in the notebook's metadata (empty if none)."""
    return nb.get("metadata", {}).get("widgets", {}).get(STATE, {}).get("state", {}) or {}


def views(nb: dict) -> list[tuple[int, dict]]:
    """(cell index, output) for every output that shows a widget."""
    return [(i, out) for i, cell in enumerate(nb.get("cells", [])) for out in cell.get("outputs", [])
            if VIEW in out.get("data", {})]


def _references(value) -> list[str]:
    """Model ids a state value points to ("IPY_MODEL_<id>", possibly nested in lists and dicts)."""
    if isinstance(value, str):
        return [value[len(_REF):]] if value.startswith(_REF) else []
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    return []


def reachable(nb: dict, roots: list[str]) -> list[str]:
    """Every model id reachable from `roots` through the stored state, roots first, each once."""
    state, seen, order, todo = models(nb), set(), [], list(roots)
    while todo:
        mid = todo.pop(0)
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        order.append(mid)
        todo.extend(_references(state[mid].get("state", {})))
    return order


def prune(nb: dict) -> int:
    """Drop the state of widgets no output shows (in place); how many models were dropped."""
    state = models(nb)
    if not state:
        return 0
    keep = set(reachable(nb, [out["data"][VIEW]["model_id"] for _, out in views(nb)]))
    dropped = [mid for mid in state if mid not in keep]
    for mid in dropped:
        del state[mid]
    if not state:
        del nb["metadata"]["widgets"]
    return len(dropped)


def frozen_outputs(nb: dict, view: dict) -> list[dict]:
    """The outputs that the `Output` widgets under this widget view last showed (e.g. interact's figure)."""
    state = models(nb)
    found = []
    for mid in reachable(nb, [view["data"][VIEW]["model_id"]]):
        if state[mid].get("model_name") == "OutputModel":
            found.extend(state[mid].get("state", {}).get("outputs", []))
    return found


def controls(nb: dict, view: dict) -> list[tuple[str, object]]:
    """(description, value) of the sliders and other value widgets under this view, in order."""
    state = models(nb)
    out = []
    for mid in reachable(nb, [view["data"][VIEW]["model_id"]]):
        s = state[mid].get("state", {})
        if "value" in s and state[mid].get("model_name", "").endswith("SliderModel"):
            out.append((s.get("description", ""), s["value"]))
    return out
