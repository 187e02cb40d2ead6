"""Time rotation policy, parsed once: which period a moment belongs to, and where it ends.

Every process must agree on the boundaries without talking to each other, so a period is a pure
function of the time: a grid of wall-clock instants (local time, or UTC with ``utc=True``) that
starts at ``origin`` and repeats every ``step`` seconds. ``when="H", interval=1`` is every hour
on the hour; ``"midnight"`` with ``atTime=03:00`` is every day at 03:00; ``"W0"`` every Monday.
Intervals that divide a day (1, 2, 3, 4, 6, 8, 12 hours; 1, 5, 10, 15, 30 minutes ...) line up
with midnight; others count from 1970-01-01 00:00 wall time.

Unlike ``logging.handlers.TimedRotatingFileHandler`` (which counts ``interval`` from the moment
the file was opened, so two processes started a minute apart disagree), these boundaries are the
same in every process, which is what lets exactly one of them rotate.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from typing import Any


__all__ = ["TimePolicy", "parse_time_policy", "parse_at_time", "ANY_STAMP"]

_UNIT = {"S": 1, "M": 60, "H": 3600, "D": 86400, "MIDNIGHT": 86400}
# The stdlib's suffixes (logging.handlers.TimedRotatingFileHandler), so backups keep their names
# when moving from it; they sort as text in time order, which retention relies on.
_SUFFIX = {
    "S": ("%Y-%m-%d_%H-%M-%S", r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"),
    "M": ("%Y-%m-%d_%H-%M", r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}"),
    "H": ("%Y-%m-%d_%H", r"\d{4}-\d{2}-\d{2}_\d{2}"),
    "D": ("%Y-%m-%d", r"\d{4}-\d{2}-\d{2}"),
}
# A stamp of any of them: what a backup of some time policy of a log may be named after.
ANY_STAMP = "|".join(sorted((p for _, p in _SUFFIX.values()), key=len, reverse=True))
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# 1970-01-01, where the wall-clock grid starts, was a Thursday (weekday 3).
_EPOCH_WEEKDAY = 3


class TimePolicy:
    """Aligned time periods; :meth:`period_start` and :meth:`next_boundary` are all a strategy needs."""

    __slots__ = ("when", "interval", "utc", "at_time", "step", "origin", "suffix", "stamp_re", "_custom")

    def __init__(
        self, when: str, interval: int = 1, utc: bool = False, at_time: datetime.time | None = None
    ) -> None:
        self.when = when
        self.interval = interval
        self.utc = utc
        self.at_time = at_time
        at = 0 if at_time is None else at_time.hour * 3600 + at_time.minute * 60 + at_time.second
        if when.startswith("W"):
            self.step = 7 * 86400 * interval
            self.origin = ((int(when[1]) - _EPOCH_WEEKDAY) % 7) * 86400 + at
            self.suffix, stamp = _SUFFIX["D"]
        else:
            self.step = _UNIT[when] * interval
            self.origin = at
            self.suffix, stamp = _SUFFIX["D" if when == "MIDNIGHT" else when]
        self.stamp_re = stamp
        self._custom = False

    def set_suffix(self, suffix: str, pattern: str | None = None) -> None:
        """Name backups with the ``strftime`` format ``suffix`` (``TimedRotatingFileHandler.suffix``
        set by the user), recognised by ``pattern`` (from ``extMatch``) or by a pattern derived
        from the format. Such stamps need not sort as text: :meth:`sort_key` parses them."""
        if not isinstance(suffix, str) or not suffix:
            raise ValueError(f"suffix must be a non-empty strftime format, not {suffix!r}")
        self.suffix = suffix
        self.stamp_re = strftime_pattern(suffix) if pattern is None else pattern
        self._custom = (suffix, self.stamp_re) not in _SUFFIX.values()

    def sort_key(self, stamp: str) -> Any:
        """What orders backups of this policy oldest first: the stamp text for the stdlib's
        suffixes (they sort in time order), the parsed time for a user's suffix."""
        if not self._custom:
            return stamp
        try:
            return (0, time.mktime(time.strptime(stamp, self.suffix)), stamp)
        except (ValueError, OverflowError):
            return (1, 0.0, stamp)  # unparsable: after the parsable ones, by text

    def __repr__(self) -> str:
        at = "" if self.at_time is None else f", atTime={self.at_time.isoformat()}"
        return f"TimePolicy(when={self.when!r}, interval={self.interval}, utc={self.utc}{at})"

    # -- the grid ------------------------------------------------------------------------------

    def period_start(self, t: float) -> float:
        """The boundary at or before ``t``: the start of the period ``t`` belongs to."""
        w = self._floor(self._wall(t))
        if self.utc:
            return float(w)
        cands = _local_instants(w)
        # A wall time that occurs twice (the hour repeated when DST ends) starts two periods;
        # ``t`` belongs to the later one that has begun.
        before = [a for a in cands if a <= t]
        return max(before) if before else min(cands)

    def next_boundary(self, start: float) -> float:
        """The first boundary after ``start`` (a value returned by :meth:`period_start`)."""
        w = self._floor(self._wall(start))
        if self.utc:
            return float(w + self.step)
        nxt = [a for a in _local_instants(w + self.step) if a > start]
        horizon = start + self.step + 3 * 3600
        shift = abs(time.localtime(horizon).tm_gmtoff - time.localtime(start).tm_gmtoff)
        if shift == 0 and nxt:
            return min(nxt)
        # A UTC offset change lies ahead: when DST ends the wall clock goes back and grid times
        # come round a second time (the repeated hour is a period of its own, so an hourly log
        # still gets one file per real hour); when it starts, grid times in the skipped hour all
        # begin at the end of the gap. Scan the grid points the clock can still show.
        lo = self._floor(w - shift)
        hi = w + self.step + shift
        after = [a for g in range(lo, hi + 1, self.step) for a in _local_instants(g) if a > start]
        return min(after) if after else start + self.step

    def stamp(self, start: float) -> str:
        """The backup suffix of the period starting at ``start``, as the stdlib names it."""
        return time.strftime(self.suffix, time.gmtime(start) if self.utc else time.localtime(start))

    def _wall(self, t: float) -> float:
        if self.utc:
            return t
        return t + time.localtime(t).tm_gmtoff

    def _floor(self, wall: float) -> int:
        return self.origin + math.floor((wall - self.origin) / self.step) * self.step


# strftime directives and the text they produce, for recognising backups named by a user's suffix.
_DIRECTIVES = {
    "Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}",
    "j": r"\d{3}", "y": r"\d{2}", "I": r"\d{2}", "p": r"[A-Za-z]+", "a": r"[A-Za-z]+",
    "A": r"[A-Za-z]+", "b": r"[A-Za-z]+", "B": r"[A-Za-z]+", "U": r"\d{2}", "W": r"\d{2}",
    "w": r"\d", "u": r"\d", "V": r"\d{2}", "G": r"\d{4}", "s": r"\d+", "%": "%",
}  # fmt: skip


def strftime_pattern(fmt: str) -> str:
    """A regular expression matching what ``time.strftime(fmt)`` produces."""
    out = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            d = fmt[i + 1]
            if d not in _DIRECTIVES:
                raise ValueError(f"suffix={fmt!r}: the strftime directive %{d} cannot be recognised in backup names")
            out.append(_DIRECTIVES[d])
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _local_instants(wall: int) -> list[float]:
    """The instants whose local wall clock reads ``wall`` (seconds, as if UTC).

    Usually one; two in the hour repeated when DST ends; none in the hour skipped when it
    starts, where the period begins at the end of the gap (the later of mktime's two readings).
    """
    fields = time.gmtime(wall)
    raw = []
    exact = []
    for isdst in (0, 1):
        a = time.mktime(fields[:8] + (isdst,))
        raw.append(a)
        if time.localtime(a)[:6] == fields[:6]:
            exact.append(a)
    if exact:
        return sorted(set(exact))
    return [max(raw)]


# -- parsing user values -------------------------------------------------------------------------

_EVERY_RE = re.compile(r"^\s*(?:every\s+)?(\d+)?\s*([a-z]+)\s*$")
_EVERY_UNITS = {
    "s": "S", "sec": "S", "secs": "S", "second": "S", "seconds": "S",
    "m": "M", "min": "M", "mins": "M", "minute": "M", "minutes": "M",
    "h": "H", "hr": "H", "hrs": "H", "hour": "H", "hours": "H",
    "d": "D", "day": "D", "days": "D",
    "w": "W0", "week": "W0", "weeks": "W0",
}  # fmt: skip
_NAMED = {"hourly": ("H", 1), "daily": ("MIDNIGHT", 1), "midnight": ("MIDNIGHT", 1), "weekly": ("W0", 1)}
_AT_RE = re.compile(r"^\s*(.*?)\s*(?:\bat\s+)?(\d{1,2}:\d{2}(?::\d{2})?)\s*$")


def parse_at_time(option: str, value: Any) -> datetime.time | None:
    """``atTime``: a ``datetime.time`` or a string ``"HH:MM"`` / ``"HH:MM:SS"``."""
    if value is None or isinstance(value, datetime.time):
        return value
    if isinstance(value, str):
        try:
            parts = [int(p) for p in value.strip().split(":")]
            if len(parts) in (2, 3):
                return datetime.time(parts[0], parts[1], parts[2] if len(parts) == 3 else 0)
        except ValueError:
            pass
        raise ValueError(f"Cannot parse {option} from {value!r}: expected 'HH:MM' or 'HH:MM:SS'")
    raise TypeError(f"{option} must be a datetime.time or an 'HH:MM' string, not {value!r}")


def _parse_every(value: Any) -> tuple[str, int, datetime.time | None]:
    """``rotate_every`` → (when, interval, atTime)."""
    bad = ValueError(
        f"Cannot parse rotate_every from {value!r}: expected e.g. '1 hour', '30 minutes', "
        f"'daily', 'hourly', 'weekly', '00:00', 'monday at 09:00' or a datetime.timedelta"
    )
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
        if seconds <= 0 or seconds != int(seconds):
            raise bad
        for when, unit in (("D", 86400), ("H", 3600), ("M", 60), ("S", 1)):
            if seconds % unit == 0:
                return when, int(seconds) // unit, None
    if not isinstance(value, str):
        raise TypeError(f"rotate_every must be a string or a datetime.timedelta, not {value!r}")
    text = value.strip().lower()
    at: datetime.time | None = None
    m = _AT_RE.match(text)
    if m:
        at = parse_at_time("rotate_every", m.group(2))
        text = m.group(1) or "daily"
    if text in _NAMED:
        when, n = _NAMED[text]
    elif text in _WEEKDAYS:
        when, n = f"W{_WEEKDAYS.index(text)}", 1
    else:
        m2 = _EVERY_RE.match(text)
        if m2 is None or m2.group(2) not in _EVERY_UNITS:
            raise bad
        when, n = _EVERY_UNITS[m2.group(2)], int(m2.group(1) or 1)
        if n < 1:
            raise bad
        if when == "D" and at is not None:
            when = "MIDNIGHT"
    if at is not None and when not in ("MIDNIGHT",) and not when.startswith("W"):
        raise bad
    return when, n, at


def parse_time_policy(
    when: Any, interval: Any, utc: bool, at_time: Any, rotate_every: Any
) -> TimePolicy | None:
    """Build the policy from the stdlib options or ``rotate_every``; None when neither is set."""
    if rotate_every is not None and when is not None:
        raise ValueError(f"give either rotate_every={rotate_every!r} or when={when!r}, not both")
    at = parse_at_time("atTime", at_time)
    if rotate_every is not None:
        if at is not None:
            raise ValueError(f"atTime={at_time!r} goes with when=; write rotate_every='daily at HH:MM'")
        if interval != 1:
            raise ValueError(f"interval={interval!r} goes with when=; write rotate_every='{interval} hours'")
        w, n, at = _parse_every(rotate_every)
        return TimePolicy(w, n, utc, at)
    if when is None:
        if at is not None:
            raise ValueError(f"atTime={at_time!r} needs when='midnight' or when='W0'..'W6'")
        return None
    if not isinstance(when, str):
        raise TypeError(f"when must be a string such as 'H' or 'midnight', not {when!r}")
    w = when.strip().upper()
    if w not in _UNIT and not re.fullmatch(r"W[0-6]", w):
        raise ValueError(f"when must be one of S, M, H, D, midnight, W0-W6; got {when!r}")
    if isinstance(interval, str) and interval.strip().isdigit():
        interval = int(interval)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"interval must be an int >= 1, got {interval!r}")
    if at is not None and w != "MIDNIGHT" and not w.startswith("W"):
        raise ValueError(f"atTime={at_time!r} applies to when='midnight' or 'W0'-'W6', not when={when!r}")
    return TimePolicy(w, interval, utc, at)
