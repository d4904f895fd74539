"""Short durations as people type them on a command line: "30d", "12h", "90m"."""

import re
from datetime import timedelta

UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"(\d+)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """A positive duration from "<whole number><unit>", unit one of w, d, h, m, s.

    Raises ValueError with a message fit for the user: no unit, a zero or negative
    amount, or one too large for a date would all silently mean something else.
    """
    value = text.strip().lower()
    if value.startswith("-"):
        raise ValueError(f"{text!r} is negative: give a duration greater than zero")
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: give a whole number and a unit, "
            "e.g. 30d (days), 12h (hours), 90m (minutes), 2w (weeks) or 45s (seconds)"
        )
    amount, unit = int(match[1]), match[2]
    if amount == 0:
        raise ValueError(f"{text!r} is zero: give a duration greater than zero")
    try:
        return timedelta(**{UNITS[unit]: amount})
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None
