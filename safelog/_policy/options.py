"""Parse and validate user options once, at construction time.

Every value a user can write in ``dictConfig`` (``"10 MB"``, ``"flock"``, ``0o640`` ...) is
normalised here into a plain Python value; nothing in the emit path parses anything.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

__all__ = ["parse_size", "parse_duration", "check_int", "check_choice", "check_bool", "check_str"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
# A number and an optional unit: "10 MB", "1.5GiB", "200 ms", "14 days".
_AMOUNT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _amount(option: str, value: str, units: dict[str, int] | dict[str, float], examples: str) -> float:
    """``value`` as a number times its unit from ``units``, or a ValueError naming both."""
    m = _AMOUNT_RE.match(value)
    if m is None or m.group(2).lower() not in units:
        raise ValueError(f"Cannot parse {option} from {value!r}: expected {examples}")
    return float(m.group(1)) * units[m.group(2).lower()]


def parse_size(option: str, value: Any) -> int:
    """Return a byte count for ``value``: an int, or a string such as ``"10 MB"`` or ``"1 GiB"``.

    ``0``/``None`` mean "no limit" and return 0. Decimal units (KB, MB, GB) are powers of 1000,
    binary units (KiB, MiB, GiB) powers of 1024, as in ``ls --si`` and ``ls -h``.
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        raise TypeError(f"{option} must be an int or a size string like '10 MB', not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{option} must be >= 0, got {value!r}")
        return value
    if isinstance(value, str):
        return int(_amount(option, value, _UNITS, "a byte count such as '512 KB', '10MB' or '1 GiB'"))
    raise TypeError(f"{option} must be an int or a size string like '10 MB', not {value!r}")


def check_int(option: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``value`` as an int (numeric strings accepted, as fileConfig passes strings)."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{option} must be >= {minimum}, got {value!r}")
    return value


def check_bool(option: str, value: Any) -> bool:
    """Return ``value`` as a bool; accepts the strings INI files produce."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise TypeError(f"{option} must be true or false, not {value!r}")


def check_choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise name the valid ones."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_str(option: str, value: Any, *, optional: bool = True) -> str | None:
    """Return ``value`` if it is a non-empty string (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{option} must be a non-empty string, not {value!r}")
    return value


_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "us": 0.000001,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}  # fmt: skip


def parse_duration(option: str, value: Any, *, minimum: float = 0.0, positive: bool = False) -> float:
    """Return seconds for ``value``: a number of seconds, a ``timedelta``, or a string such as
    ``"200 ms"``, ``"12 hours"`` or ``"14 days"``."""
    if isinstance(value, bool):
        raise TypeError(f"{option} must be seconds or a duration like '200 ms', not {value!r}")
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _amount(
            option, value, _DURATION_UNITS, "seconds or a duration such as '200 ms', '1 min', '12 hours' or '14 days'"
        )
    else:
        raise TypeError(f"{option} must be seconds or a duration like '200 ms', not {value!r}")
    if positive and not seconds > 0:
        raise ValueError(f"{option} must be a positive duration, got {value!r}")
    if not seconds >= minimum:
        raise ValueError(f"{option} must be >= {minimum} s, got {value!r}")
    return seconds
