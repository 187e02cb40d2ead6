"""Failure bursts: a record that cannot be written is counted, the first of a burst is reported
through ``handleError``, and the first write that works again is preceded by one notice saying
how many records were lost, since when and why."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Failures"]


class Failures:
    """The lost-record count of one handler. ``lost`` is read on every record: keep it a plain
    attribute."""

    __slots__ = ("lost", "_since", "_error", "_lock", "_report", "_path")

    def __init__(self, report: Callable[[logging.LogRecord], None], path: str) -> None:
        self.lost = 0
        self._since = 0.0
        self._error = ""
        self._lock = threading.Lock()
        self._report = report
        self._path = path

    def failed(self, record: logging.LogRecord, exc: BaseException) -> None:
        """Count the lost record; report only the first failure of a burst."""
        with self._lock:
            first = self.lost == 0
            self.lost += 1
            if first:
                self._since = time.time()
                self._error = f"{type(exc).__name__}: {exc}"
        if first:
            self._report(record)

    def recover(self, write: Callable[[logging.LogRecord], None]) -> None:
        """Writing works again: ``write`` the notice of the burst. If that fails too, the burst
        goes on (the notice counts as one more lost record, and is not reported again)."""
        with self._lock:
            lost, self.lost = self.lost, 0
            since, error = self._since, self._error
        if not lost:
            return
        note = logging.LogRecord(
            "safelog",
            logging.WARNING,
            __file__,
            0,
            "safelog: %d record(s) could not be written to %s since %s (%s); writing resumed",
            (lost, self._path, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)), error),
            None,
        )
        try:
            write(note)
        except Exception as exc:
            with self._lock:
                self.lost += lost
            self.failed(note, exc)

    def after_fork(self) -> None:
        # A parent thread that was reporting a failure at fork time holds the lock forever in
        # the child.
        self._lock = threading.Lock()
