"""The one progress bar of every long job (enhancing, scoring, simulating, preparing, analysing).

tqdm's ``disable=None`` hides the bar when stderr is not a terminal, so a job under ``nohup``,
in CI or piped to a log showed no progress at all. Here the bar is off only when asked
(``--quiet``); without a terminal it still writes (from 10 s into a job, then at most every
30 s), so a log shows how far a long job got without filling up with redraws.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm import tqdm

#: Seconds between updates when stderr is a file or a pipe (a terminal redraws freely).
LOG_INTERVAL = 30.0
#: Without a terminal, a bar first shows after this many seconds: a job that ends sooner
#: leaves a log (or a one-line error) without bar lines.
LOG_DELAY = 10.0
_shown = True


def show_progress(on: bool) -> None:
    """The process-wide default: every command sets it from its ``--quiet`` when it starts
    (so a later command or API call in the same process sees the last command's choice)."""
    global _shown
    _shown = bool(on)


def progress_bar(iterable: Iterable | None = None, *, enabled: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr: shown unless ``enabled`` (default: ``show_progress``'s setting)
    is False, throttled when not a terminal."""
    enabled = _shown if enabled is None else enabled
    stream = kwargs.pop("file", None) or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    kwargs.setdefault("mininterval", 0.1 if tty else LOG_INTERVAL)
    if not tty:  # tqdm's monitor would otherwise force a line every 10 s (its maxinterval)
        kwargs.setdefault("maxinterval", kwargs["mininterval"])
        kwargs.setdefault("delay", LOG_DELAY)
        # a bar inside another (a long signal's chunks) would move the cursor up and down
        # with escape codes: in a log every bar writes plain lines of its own
        kwargs.setdefault("position", 0)
    return tqdm(iterable, file=stream, disable=not enabled, dynamic_ncols=tty, **kwargs)
