"""Train once, then reuse: models cached under checkpoints/ with the config they were trained with."""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .paths import checkpoint_dir
from .models import build_model

FORMAT_VERSION = 1


@contextmanager
def scratch_checkpoint_dir() -> Iterator[Path]:
    """A fresh, empty checkpoint folder for the duration of the block, deleted afterwards.

    For timing training (benchmarks): `load_or_train` then always trains, and neither reads nor
    adds to the student's cache. $COURSE_CHECKPOINT_DIR is restored on exit, set or not.
    """
    old = os.environ.get("COURSE_CHECKPOINT_DIR")
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["COURSE_CHECKPOINT_DIR"] = fresh
        try:
            yield Path(fresh)
        finally:
            if old is None:
                os.environ.pop("COURSE_CHECKPOINT_DIR", None)
            else:
                os.environ["COURSE_CHECKPOINT_DIR"] = old


def _canonical(config: dict) -> dict:
    """The config as plain JSON data, so that the saved copy compares equal to a fresh one."""
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except TypeError as err:
        raise ValueError(f"config must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from err


def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _try_load(path: Path, config: dict, device) -> tuple[nn.Module, list] | None:
    """The cached model if `path` holds one trained with exactly `config`, else None."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        if blob.get("format") != FORMAT_VERSION or blob.get("config") != config:
            return None
        model = build_model(config["model"])
        model.load_state_dict(blob["state_dict"])
    except Exception as err:  # truncated, corrupted, or from an incompatible version
        warnings.warn(f"ignoring unreadable checkpoint {path} ({type(err).__name__}: {err}); retraining")
        return None
    return model.to(device).eval(), blob.get("history", [])


def load_or_train(
    name: str,
    train_fn: Callable[[dict], nn.Module | tuple[nn.Module, list]],
    config: dict,
    device=None,
) -> tuple[nn.Module, list]:
    """The model called `name` trained with `config`: from the cache if it matches, else trained now.

    `config["model"]` names the architecture (a key of `models.MODELS`) so the cached
    weights can be loaded with `weights_only=True`. `train_fn(config)` returns the trained
    model, or (model, history). A changed config or a damaged file means retraining,
    never a wrong model. Returns (model, history); the model is in eval mode.
    """
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"checkpoint name must be a plain file name, got {name!r}")
    config = _canonical(config)
    if "model" not in config:
        raise ValueError("config must name the architecture under 'model' (a key of models.MODELS)")
    build_model(config["model"])  # fail on an unknown architecture before training for minutes
    path = checkpoint_dir() / f"{name}.pt"
    cached = _try_load(path, config, device)
    if cached is not None:
        return cached
    out = train_fn(config)
    model, history = out if isinstance(out, tuple) else (out, [])
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save({"format": FORMAT_VERSION, "config": config, "state_dict": state, "history": history}, path)
    if device is not None:
        model = model.to(device)
    return model.eval(), history
