"""Progress bars that read well both live and stored.

Live (someone watches a notebook or a terminal): tqdm's bar, redrawn at most twice a second.

Summary (`COURSE_HEADLESS` set, or `COURSE_PROGRESS=summary`: papermill, nbval, the grader, the
refresh of the committed outputs): no bar at all, and one line when a bar that would have stayed on
screen finishes. Two reasons. A stored notebook would show a widget frozen at its first frame
(`0%|…` on GitHub) instead of the work it followed. And every redraw of a widget bar is a message
on the kernel's output channel: a headless client that is not reading that channel while a long cell
runs lets ZeroMQ queue about a thousand messages per side and silently drop the rest, the cell's
final "idle" among them, so the client waits for an output that never comes (what failed nbval in CI
on a 10-minute training cell).

`COURSE_PROGRESS=off` prints nothing at all.
"""
from __future__ import annotations

import os
import time
from typing import Iterable, Iterator

MODES = ("live", "summary", "off")


def mode() -> str:
    """How progress is shown now; read from the environment at each call, never cached."""
    chosen = os.environ.get("COURSE_PROGRESS", "").strip().lower()
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"COURSE_PROGRESS must be one of {', '.join(MODES)}, got {chosen!r}")
        return chosen
    return "summary" if os.environ.get("COURSE_HEADLESS") else "live"


class SummaryBar:
    """tqdm's interface (update, set_postfix, close, iteration, `with`) without drawing anything."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", leave: bool = True, quiet: bool = False):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.leave, self.quiet = total, desc, unit, leave, quiet
        self.n = 0
        self.postfix: dict = {}
        self.closed = False
        self._start = time.perf_counter()

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __enter__(self) -> "SummaryBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self.postfix = dict(ordered_dict or {}, **kwargs)

    def summary(self) -> str:
        """The one line printed when the bar closes: what was done, in how long, and the last postfix."""
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        line = f"{self.desc + ': ' if self.desc else ''}{done} {self.unit} in {time.perf_counter() - self._start:.1f} s"
        if self.postfix:
            line += " (" + ", ".join(f"{k} {v}" for k, v in self.postfix.items()) + ")"
        return line

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.leave and not self.quiet:
            print(self.summary(), flush=True)


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        leave: bool = True, disable: bool = False):
    """A progress bar for `iterable` (or `total` steps updated by hand), shown the way `mode()` says.

    `leave=False` marks a bar whose numbers the caller reports itself (a training loop): live, it
    disappears when done; in a summary it prints nothing. `disable=True` shows nothing in any mode.
    """
    how = "off" if disable else mode()
    if how == "live":
        from tqdm.auto import tqdm  # imported here: no widget machinery at import time

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, mininterval=0.5)
    return SummaryBar(iterable, total=total, desc=desc, unit=unit, leave=leave, quiet=how == "off")
