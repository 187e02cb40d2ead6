"""Time rotation policy, parsed once: when the current file's period ends, and what its backup
is called.

Two rules, one per way of asking:

* ``when=`` / ``interval`` / ``atTime`` (the ``logging.handlers.TimedRotatingFileHandler``
  options) follow the running interpreter's stdlib exactly: the first boundary is
  ``computeRollover()`` of the time the file was last written (its mtime, when it has records)
  or of now; after a rotation at ``now``, the next is computed from ``now``, as the stdlib's
  ``doRollover`` does. ``computeRollover`` itself is the stdlib's own function, called with
  this policy's values: CPython changed it (3.13 counts ``interval`` for ``midnight`` and
  ``W0``-``W6`` and corrects DST differently), and a patch release may carry such a change, so
  it is the running interpreter's answer that counts, not its version number. Such a
  boundary depends on when a handler started, so processes sharing a file learn it from each
  other: ``flock`` keeps it in the lock file, and the first process to establish it decides.
* ``rotate_every=`` (safelog's own option) lays periods on a grid of wall-clock instants
  (local time, or UTC with ``utc=True``) that starts at ``origin`` and repeats every ``step``
  seconds: every hour on the hour, every day at ``atTime``, every Monday. Intervals that divide
  a day line up with midnight; others count from 1970-01-01 00:00 wall time. Every process
  computes the same boundaries from the time alone.

Either way a file's period is one number, its *key*: the grid period's start, or for the stdlib
rule ``rolloverAt - interval`` (the instant the stdlib names the backup after). :meth:`TimePolicy.end`
turns a key into the instant the file is due; the lock file of ``flock`` stores keys.
"""

from __future__ import annotations

import datetime
import logging.handlers
import math
import re
import time
import types
from collections.abc import Callable
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
_DAY = 86400


def _stdlib_compute_rollover() -> Callable[[Any, float], Any]:
    """``logging.handlers.TimedRotatingFileHandler.computeRollover`` of this interpreter, found
    by class identity: code may have put safelog's drop-in in its place in ``logging.handlers``
    (CPython's own tests are run that way), and calling that one would call ourselves."""
    for cls in logging.handlers.TimedRotatingFileHandler.__mro__:
        if cls.__module__ == "logging.handlers" and cls.__name__ == "TimedRotatingFileHandler":
            compute: Callable[[Any, float], Any] = cls.__dict__["computeRollover"]
            return compute
    raise ImportError("logging.handlers.TimedRotatingFileHandler not found")  # pragma: no cover


_COMPUTE_ROLLOVER = _stdlib_compute_rollover()


def _stdlib_shape(when: str, step: int, utc: bool, at_time: datetime.time | None) -> Any:
    """The attributes the stdlib's ``computeRollover`` reads from its handler."""
    day = int(when[1]) if when.startswith("W") else None
    return types.SimpleNamespace(when=when, interval=step, utc=utc, atTime=at_time, dayOfWeek=day)


# CPython changed its rollover computation once (gh-88352, in 3.13): since then computeRollover()
# always returns a time after the one it is given and includes the DST correction, and
# doRollover() uses it as is. Before, doRollover() stepped the result past now by whole intervals
# and corrected it for DST itself. Which one this interpreter has is asked of its own
# computeRollover (a patch release of an older branch may have taken the change): 00:00 UTC at
# 00:00 was "now" before, "tomorrow" since.
_STDLIB_AFTER_NOW = _COMPUTE_ROLLOVER(_stdlib_shape("MIDNIGHT", _DAY, True, datetime.time(0)), 0) > 0


class TimePolicy:
    """Time periods of one handler: :meth:`first`, :meth:`end`, :meth:`following`,
    :meth:`stamp` and :meth:`now` are all a strategy and the rotation need."""

    __slots__ = (
        "when", "interval", "utc", "at_time", "aligned", "step", "origin", "suffix", "stamp_re", "_custom",
        "_shape",
    )  # fmt: skip

    def __init__(
        self,
        when: str,
        interval: int = 1,
        utc: bool = False,
        at_time: datetime.time | None = None,
        aligned: bool = True,
    ) -> None:
        self.when = when
        self.interval = interval
        self.utc = utc
        self.at_time = at_time
        # True: periods on the clock grid (rotate_every); False: the stdlib's rule (when=).
        self.aligned = aligned
        at = 0 if at_time is None else at_time.hour * 3600 + at_time.minute * 60 + at_time.second
        if when.startswith("W"):
            self.step = 7 * _DAY * interval
            self.origin = ((int(when[1]) - _EPOCH_WEEKDAY) % 7) * _DAY + at
            self.suffix, stamp = _SUFFIX["D"]
        else:
            self.step = _UNIT[when] * interval
            self.origin = at
            self.suffix, stamp = _SUFFIX["D" if when == "MIDNIGHT" else when]
        self.stamp_re = stamp
        self._custom = False
        self._shape = _stdlib_shape(when, self.step, utc, at_time)

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
        rule = "" if self.aligned else ", stdlib rule"
        return f"TimePolicy(when={self.when!r}, interval={self.interval}, utc={self.utc}{at}{rule})"

    # -- what a strategy asks ------------------------------------------------------------------

    def now(self, created: float) -> float:
        """The time that decides rotation for a record created at ``created``.

        A record's own time, so that records queued in non-blocking mode go to the file of the
        period they were made in. Under the stdlib's rule, the clock when it reads earlier, as
        the stdlib decides by ``time.time()``: the same instant in practice (a record is made
        just before it is written), but code that sets the clock (``time.time`` patched in
        tests, as CPython's own do) is obeyed. ``time.time`` is looked up on every call for that.
        """
        if self.aligned:
            return created
        return min(created, time.time())

    def first(self, now: float, mtime: float | None) -> float:
        """The key of a file found at start-up: ``mtime`` is its last write (None: empty file).

        Stdlib rule: ``computeRollover(int(mtime))``, or of now for an empty file (the stdlib
        reads the mtime of any existing file; an empty one only differs in the backup it would
        make, and safelog makes no empty backups). Grid: the period of its last write.
        """
        if self.aligned:
            return self.period_start(now if mtime is None else min(now, mtime))
        return self._key(self.compute_rollover(int(now if mtime is None else mtime)))

    def end(self, key: float) -> float:
        """When the file of period ``key`` is due."""
        if self.aligned:
            return self.next_boundary(key)
        return key + self.step

    def following(self, now: float) -> float:
        """The key of the file a time rotation at ``now`` starts."""
        if self.aligned:
            return self.period_start(now)
        return self._key(self._next_rollover(int(now)))

    def stamp(self, key: float, now: float | None = None) -> str:
        """The backup suffix of the file of period ``key``, rotated at ``now``, as the stdlib
        names it: the stdlib rule names the backup after ``rolloverAt - interval`` shifted by an
        hour when DST differs between then and now (``doRollover``)."""
        if self.utc:
            return time.strftime(self.suffix, time.gmtime(key))
        fields = time.localtime(key)
        if not self.aligned and now is not None:
            dst_now = time.localtime(int(now)).tm_isdst
            if dst_now != fields.tm_isdst:
                fields = time.localtime(key + (3600 if dst_now else -3600))
        return time.strftime(self.suffix, fields)

    # -- the stdlib's rule ---------------------------------------------------------------------

    def compute_rollover(self, t: float) -> Any:
        """``TimedRotatingFileHandler.computeRollover(t)`` of the running interpreter."""
        return _COMPUTE_ROLLOVER(self._shape, t)

    def _key(self, rollover_at: float) -> float:
        return float(rollover_at - self.step)

    def _next_rollover(self, now: int) -> float:
        """``rolloverAt`` after a rotation at ``now`` (``doRollover``), always after ``now``."""
        result: float = self.compute_rollover(now)
        while result <= now:  # only the stdlib before gh-88352 returns such times
            result += self.step
        if not _STDLIB_AFTER_NOW and not self.utc and (self.when == "MIDNIGHT" or self.when.startswith("W")):
            dst_now = time.localtime(now).tm_isdst
            if dst_now != time.localtime(result).tm_isdst:
                addend = 3600 if dst_now else -3600
                # That stdlib could land before now here (a rotation in the hour before clocks
                # go forward, atTime in the skipped hour) and then rotated on every record.
                if result + addend > now:
                    result += addend
        return result

    # -- the grid ------------------------------------------------------------------------------

    def period_start(self, t: float) -> float:
        """The grid boundary at or before ``t``: the start of the period ``t`` belongs to."""
        w = self._floor(self._wall(t))
        if self.utc:
            return float(w)
        # When the clock went back, the next grid time may have passed already (daily at 01:30,
        # at 01:10 in the repeated hour: today's 01:30 was an hour ago); when it went forward,
        # this one may lie ahead (02:30 in the skipped hour starts at 03:30): look at both
        # neighbours. A boundary that lies ahead is a period of the day before.
        g = w + self.step
        best = -math.inf
        while best == -math.inf or g >= w:
            best = max([best] + [a for a in self._boundaries(g) if a <= t])
            g -= self.step
        return best

    def next_boundary(self, start: float) -> float:
        """The first grid boundary after ``start`` (a value returned by :meth:`period_start`)."""
        w = self._floor(self._wall(start))
        if self.utc:
            return float(w + self.step)
        if self.step >= _DAY:
            # Daily and longer: grid times two steps on cover any offset change in between.
            return min(a for g in (w, w + self.step, w + 2 * self.step) for a in self._boundaries(g) if a > start)
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

    def _boundaries(self, wall: int) -> list[float]:
        """The instants grid time ``wall`` starts a period: each time the clock shows it for
        periods shorter than a day (the repeated hour is a period of its own), only the first
        for a day or longer (a day is a day: the 25-hour day rotates once)."""
        instants = _local_instants(wall)
        return instants if self.step < _DAY else instants[:1]

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


def _every_delta(value: datetime.timedelta, bad: ValueError) -> tuple[str, int, None]:
    """``rotate_every`` given as a timedelta: in its largest whole unit."""
    seconds = value.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise bad
    for when, unit in (("D", 86400), ("H", 3600), ("M", 60)):
        if seconds % unit == 0:
            return when, int(seconds) // unit, None
    return "S", int(seconds), None


def _parse_every(value: Any) -> tuple[str, int, datetime.time | None]:
    """``rotate_every`` → (when, interval, atTime)."""
    bad = ValueError(
        f"Cannot parse rotate_every from {value!r}: expected e.g. '1 hour', '30 minutes', "
        f"'daily', 'hourly', 'weekly', '00:00', 'monday at 09:00' or a datetime.timedelta"
    )
    if isinstance(value, datetime.timedelta):
        return _every_delta(value, bad)
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
        return TimePolicy(w, n, utc, at, aligned=True)
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
    return TimePolicy(w, interval, utc, at, aligned=False)
