"""Numbers a user gives, checked where they enter: the one definition of a count (an integer from a
minimum) and of a finite number in a range. The library calls these on its arguments; the command line
wraps the same functions as argument converters, so a bad option is refused as it is parsed, naming it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def names(value: str | Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list (``"se, stem"``) or an iterable of names as a tuple of names."""
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(part.strip() for part in parts if part.strip())


def _say(name: str) -> str:
    return f"{name} " if name else ""


def count(value: Any, name: str = "", minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` (an int, or text) as an integer of at least ``minimum`` (and at most ``maximum``); a ValueError
    naming ``name`` otherwise."""
    try:
        result = int(value) if isinstance(value, str) or not isinstance(value, float) else None
    except (TypeError, ValueError):
        result = None
    if result is None or isinstance(value, bool) or result < minimum or (maximum is not None and result > maximum):
        most = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{_say(name)}must be an integer of at least {minimum}{most}, got {value!r}")
    return result


def number(value: Any, name: str = "", minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None) -> float:
    """``value`` (a number, or text) as a finite float, at least ``minimum``, at most ``maximum``, more than
    ``above`` and less than ``below`` where given; a ValueError naming ``name`` otherwise."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    bounds = [f"at least {minimum:g}" if minimum is not None else "", f"at most {maximum:g}" if maximum is not None
              else "", f"more than {above:g}" if above not in (None, 0) else "",
              f"less than {below:g}" if below is not None else ""]
    if (isinstance(value, bool) or not math.isfinite(result) or (minimum is not None and result < minimum)
            or (maximum is not None and result > maximum) or (above is not None and result <= above)
            or (below is not None and result >= below)):
        wanted = " and ".join(b for b in bounds if b)
        kind = "a positive finite number" if above == 0 else "a finite number"
        raise ValueError(f"{_say(name)}must be {kind}{' ' + wanted if wanted else ''}, got {value!r}")
    return result
