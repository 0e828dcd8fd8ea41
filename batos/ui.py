"""Terminal output helpers: rich consoles, byte progress bars, JSON."""
import contextlib
import json
import sys

from rich.console import Console
from rich.markup import escape  # noqa: F401  (re-exported for the verbs)

# Piped output gets 120 columns (rich would assume 80 and squeeze tables).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, soft_wrap=True,
              width=None if sys.stderr.isatty() else 120)


def jsonable(value):
    """JSON for what slots hold (tracked containers), text for anything else; imported lazily."""
    from prototypes.persist import jsonable as convert
    return convert(value)


def print_json(data):
    sys.stdout.write(json.dumps(data, indent=1, default=jsonable) + "\n")


@contextlib.contextmanager
def byte_progress(description, total, enabled=True):
    """Yield a callback ``advance(nbytes)``; draws a bar on a terminal only."""
    if not enabled or not err.is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@contextlib.contextmanager
def phase_progress(enabled=True):
    """Yield ``start(description, total) -> advance(steps)``: one bar per phase of a job."""
    if not enabled or not err.is_terminal:
        yield lambda description, total: (lambda n: None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        def start(description, total):
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)
        yield start


@contextlib.contextmanager
def step_progress(description, total, enabled=True):
    """Yield a callback ``advance(steps)``; draws a bar counting steps, on a terminal only."""
    with phase_progress(enabled) as start:
        yield start(description, total)


@contextlib.contextmanager
def status(message, enabled=True):
    """A spinner with a message on a terminal, for work with no measurable total."""
    if not enabled or not err.is_terminal:
        yield
        return
    with err.status(message):
        yield
