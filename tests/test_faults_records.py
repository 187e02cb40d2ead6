"""Hostile records: huge messages, undecodable text, control characters, log injection."""

from __future__ import annotations

import threading

import pytest

from safelog import STRATEGIES, SafeFileHandler, log_files
from tests.faults_helpers import FORK, exact, join_all, make_logger
from tests.helpers import strategy_of

BIG = 5 * 1024 * 1024
# A record is its id and one run of a single padding character: a record cut or interleaved
# with another breaks the run and fails the full match.
UNIFORM = r"rec (?P<id>\S+) (?:a+|b+|c+|d+|\.+)"


def _writer(path: str, strategy: str, w: int, start: threading.Event | None = None) -> None:
    h = SafeFileHandler(path, strategy=strategy)
    log = make_logger(h, f"big.{w}")
    if start is not None:
        start.wait()
    letter = "abcdefgh"[w]
    for i in range(40):
        if i % 20 == 0:
            log.info("rec big-%d-%d %s", w, i, letter * BIG)
        else:
            log.info("rec small-%d-%d %s", w, i, "." * 100)
    h.close()


def _ids(workers: int) -> list[str]:
    return [f"{'big' if i % 20 == 0 else 'small'}-{w}-{i}" for w in range(workers) for i in range(40)]


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_5mb_record_is_not_interleaved_across_processes(tmp_path, strategy):
    """Four processes each append 5 MB records between small ones: every record stays whole
    and uninterrupted."""
    path = str(tmp_path / "app.log")
    start = FORK.Event()
    procs = [FORK.Process(target=_writer, args=(path, strategy, w, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    join_all(procs)
    assert all(p.exitcode == 0 for p in procs)
    exact(path, _ids(4), pattern=UNIFORM)


def test_5mb_record_is_not_interleaved_across_threads(tmp_path):
    """Four threads of one process (thread strategy) append 5 MB records between small ones:
    every record stays whole and uninterrupted."""
    path = str(tmp_path / "app.log")
    threads = [threading.Thread(target=_writer, args=(path, "thread", w)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    exact(path, _ids(4), pattern=UNIFORM)


HOSTILE = {
    "surrogate": "lone \ud800 high and \udfff low",
    "escaped-bytes": b"\xff\xfe invalid".decode("utf-8", "surrogateescape"),
    "bytes-arg": b"\xff\xfe\x00raw",
    "nul": "before\x00after",
    "cr": "carriage\rreturn",
    "long": "y" * 1_000_000,
    "astral": "emoji \U0001f600 and \u202e bidi",
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_hostile_characters_cost_no_record(tmp_path, strategy):
    """Lone surrogates, undecodable bytes, NUL, CR and a 1 MB line are each written as one
    record of valid UTF-8; unencodable characters are escaped, not dropped with the record."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy=strategy)
    log = make_logger(h)
    for name, payload in HOSTILE.items():
        log.info("rec %s %s", name, payload)
    h.close()
    exact(path, list(HOSTILE), pattern=r"rec (?P<id>\S+) [^\n]*")
    data = b"".join(open(f, "rb").read() for f in log_files(path))
    data.decode("utf-8")  # strict: nothing undecodable reached the file
    assert b"lone \\ud800 high and \\udfff low" in data
    assert b"\\udcff\\udcfe invalid" in data
    assert b"before\x00after" in data
    assert b"carriage\rreturn" in data
    assert b"y" * 1_000_000 in data
    assert "emoji \U0001f600 and \u202e bidi".encode() in data


INJECTION = "login failed for bob\n2026-11-26 18:00:00 INFO login ok for admin\r\x1b[2K\u2028\x85end"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_escape_newlines_keeps_each_record_on_one_line(tmp_path, strategy):
    """With escape_newlines, a message carrying line breaks and terminal escapes (CWE-117) and a
    traceback are each written as exactly one line, their control characters as visible escapes."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy=strategy, escape_newlines=True)
    log = make_logger(h)
    log.warning("rec inject user=%s\ttab kept", INJECTION)
    try:
        raise RuntimeError("boom\nforged line")
    except RuntimeError:
        log.exception("rec traceback")
    h.close()
    (shard_or_log,) = log_files(path)
    data = open(shard_or_log, "rb").read()
    assert data.count(b"\n") == 2, data
    assert (
        b"user=login failed for bob\\n2026-11-26 18:00:00 INFO login ok for admin\\r\\x1b[2K"
        b"\\u2028\\x85end\ttab kept\n" in data
    )
    assert b"rec traceback\\nTraceback (most recent call last):\\n" in data
    assert b"RuntimeError: boom\\nforged line\n" in data
    exact(path, ["inject", "traceback"], pattern=r"rec (?P<id>[a-z]+)[^\n]*")


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_escape_newlines_applies_to_stream_writes(tmp_path, strategy):
    """Text written through handler.stream (print(file=...), faulthandler-style code) is escaped
    like a record: a forged line break or escape sequence cannot start a log line."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy=strategy, escape_newlines=True)
    h.stream.write("rec via-stream " + INJECTION + "\n")
    h.stream.write("rec second\n")
    h.close()
    data = open(path, "rb").read()
    assert data.count(b"\n") == 2, data
    assert data.startswith(b"rec via-stream login failed for bob\\n2026-11-26 18:00:00 INFO login ok for admin\\r\\x1b[2K")
    assert data.endswith(b"\nrec second\n")


def test_escape_newlines_is_off_by_default(tmp_path):
    """Without the option a message's line breaks are written as they are (stdlib behaviour)."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy="thread")
    make_logger(h).info("one\ntwo\rthree")
    h.close()
    assert open(path, "rb").read() == b"one\ntwo\rthree\n"


def test_escape_newlines_from_dictconfig_strings(tmp_path):
    """escape_newlines accepts the strings INI/YAML configuration produce and rejects others."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, escape_newlines="true")
    h.close()
    assert h.escape_newlines is True
    with pytest.raises(TypeError, match="escape_newlines"):
        SafeFileHandler(path, escape_newlines="sometimes")


def test_escape_newlines_applies_to_the_recovery_notice(tmp_path):
    """The notice written after a failure burst goes through the same escaping as records."""
    path = str(tmp_path / "app.log")
    h = SafeFileHandler(path, strategy="thread", escape_newlines=True)
    h.handleError = lambda record: None  # type: ignore[method-assign]
    log = make_logger(h)
    sink = strategy_of(h)
    sink._append = lambda *a: (_ for _ in ()).throw(OSError(5, "disk\nfailed"))  # type: ignore[method-assign]
    log.info("rec lost")
    del sink._append  # the class's method again
    log.info("rec ok")
    h.close()
    lines = open(path, "rb").read().split(b"\n")
    assert lines[0] == b"rec ok"
    assert b"disk\\nfailed" in lines[1] and lines[2:] == [b""]
