"""Tests of CPython's test_logging that do not pass with safelog's classes swapped in, on purpose.

Keyed ``Class.test_method``; ``run.py`` reports them and does not count them as regressions.

``DELIBERATE``: where safelog behaves differently from the stdlib by design. Keep it short;
each entry is explained in the docs too (docs/options.md, "Coming from the standard library").

``SWAP``: tests the swap itself fails, whatever the handlers do (they inspect the ``logging``
module, whose attributes the runner replaced).
"""

DELIBERATE: dict[str, str] = {
    "BasicConfigTest.test_encoding_errors_none": (
        "errors=None means 'backslashreplace', not 'strict': a record with a character the "
        "encoding cannot represent is written with that character escaped instead of being lost "
        "(the test expects handler.errors to be None and the record to fail)"
    ),
    "FileHandlerTest.test_emit_open_error": (
        "safelog creates a missing log directory, so the open the test expects to fail with "
        "FileNotFoundError succeeds and the record is written"
    ),
    "TimedRotatingFileHandlerTest.test_rollover_after_failed_rollover": (
        "it makes the stdlib's os.remove and the handler's _open fail and asserts each was called "
        "once by the rotation; safelog calls neither there (a surplus backup is renamed to a hidden "
        "name and unlinked in the background, so no writer waits for the unlink; the strategy "
        "reopens the log itself), and the test counts every file beside the log as a backup, flock's "
        "lock file included. What it protects (a failed cleanup reported through handleError, the "
        "rotation done once, rolloverAt past now) safelog's own tests check (test_time_stdlib.py)"
    ),
    "FileHandlerTest.test_emit_reopen_error": (
        "safelog creates a missing log directory, also when it was removed under an open "
        "WatchedFileHandler: the reopen the test expects to fail succeeds"
    ),
}

SWAP: dict[str, str] = {
    "MiscTestCase.test__all__": (
        "checks that every name in logging.__all__ is defined in the logging module; the runner "
        "put safelog.FileHandler (defined in safelog) in logging.FileHandler's place"
    ),
}
