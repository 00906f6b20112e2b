"""Progress bars for long work (separating or localizing a long clip, rendering a world, benchmarks).

One rule for every command: a tqdm bar on stderr when stderr is a terminal, nothing when it is not (a log
file, a pipe, a test) or with ``--quiet``. Bars are cleared when their work ends, so a finished command
leaves only its result lines. Everything that reports progress goes through :func:`bar`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

_quiet = False


def set_quiet(quiet: bool) -> None:
    """No bars for the rest of the process (``--quiet``)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """True when bars are shown: stderr is a terminal and ``--quiet`` was not given."""
    try:
        return not _quiet and sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # stderr replaced by an object without isatty, or closed
        return False


def bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None, unit: str = "it"):
    """A tqdm bar over ``iterable`` (or a manual one: ``.update(n)``, ``.close()``, usable as a context manager)
    that draws only when :func:`enabled`; otherwise tqdm's pass-through, which costs nothing per item."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled(),
        leave=False,
        dynamic_ncols=True,
    )
