"""Tests of CPython's test_logging that do not pass with safelog's classes swapped in, on purpose.

Keyed ``Class.test_method``; ``run.py`` reports them and does not count them as regressions.

``DELIBERATE``: where safelog behaves differently from the stdlib by design. Keep it short;
each entry is explained in the docs too (docs/options.md, "Coming from the standard library").

``SWAP``: tests the swap itself fails, whatever the handlers do (they inspect the ``logging``
module, whose attributes the runner replaced).
"""

DELIBERATE: dict[str, str] = {}

SWAP: dict[str, str] = {
    "MiscTestCase.test__all__": (
        "checks that every name in logging.__all__ is defined in the logging module; the runner "
        "put safelog.FileHandler (defined in safelog) in logging.FileHandler's place"
    ),
}
