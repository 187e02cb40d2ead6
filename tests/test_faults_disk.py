"""Disk full / file too big: RLIMIT_FSIZE makes write() fail with EFBIG, part-way through a record.

The limit is set in a forked child (it is per process), with SIGXFSZ ignored so the kernel
returns EFBIG instead of killing the process. The child reports which records the handler
counted as lost; everything else must be in the file exactly once, plus one notice per burst.
"""

from __future__ import annotations

import os
import resource
import signal

import pytest

from safelog import STRATEGIES
from tests.faults_helpers import CountingHandler, exact, in_child, make_logger
from tests.helpers import current_file

PAD = " " + "x" * 60


def _limit(nbytes: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))


def _unlimit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))


def _two_bursts(path: str, strategy: str) -> dict[str, object]:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    h = CountingHandler(path, strategy=strategy)
    log = make_logger(h)
    for i in range(10):
        log.info("rec a%d%s", i, PAD)
    target = current_file(h)
    sizes = []
    for burst, n in (("b", 20), ("d", 7)):
        before = os.path.getsize(target)
        # Room for part of one record: the first failing write() is a short write, then EFBIG.
        _limit(before + 25)
        for i in range(n):
            log.info("rec %s%d%s", burst, i, PAD)
        sizes.append((before, os.path.getsize(target)))
        _unlimit()
        for i in range(10):
            log.info("rec %s%d%s", chr(ord(burst) + 1), i, PAD)
    h.close()
    return {"errors": h.errors_reported, "failed": h.failed_ids, "sizes": sizes}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_efbig_reported_once_per_burst_and_writing_resumes(tmp_path, strategy):
    """A file-size limit loses only the records written while it holds, reports each burst to
    handleError once, leaves no fragment of a half-written record, and logging resumes with a
    notice that counts the lost records."""
    path = str(tmp_path / "app.log")
    r = in_child(_two_bursts, path, strategy)
    assert r["errors"] == 2, "handleError must be called once per failure burst"
    assert r["failed"] == [f"b{i}" for i in range(20)] + [f"d{i}" for i in range(7)]
    # The bytes of the straddling record that did fit were removed again: after each burst the
    # file is back to its size before it (a partial cleanup would leave some of the 25 bytes).
    for before, after in r["sizes"]:
        assert after == before, r["sizes"]
    want = [f"{c}{i}" for c in "ace" for i in range(10)] + ["safelog: 20", "safelog: 7"]
    exact(path, want)
    text = b"".join(open(f, "rb").read() for f in sorted(tmp_path.iterdir()) if ".lock" not in f.name)
    assert b"safelog: 20 record(s) could not be written" in text
    assert b"OSError: [Errno 27] File too large" in text


def _torn_then_exit(path: str, ftruncate_works: bool) -> int:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if not ftruncate_works:
        def refuse(fd: int, length: int) -> None:
            raise PermissionError(1, "ftruncate refused")
        os.ftruncate = refuse  # only in this forked child
    h = CountingHandler(path, strategy="flock")
    log = make_logger(h)
    log.info("rec a0%s", PAD)
    _limit(os.path.getsize(path) + 25)
    log.info("rec b0%s", PAD)
    _unlimit()
    if not ftruncate_works:
        # The fallback: this process's next record starts on a new line.
        log.info("rec a1%s", PAD)
    h.close()
    return h.errors_reported


def test_torn_record_does_not_glue_onto_another_process_record(tmp_path):
    """The bytes of a record cut short by EFBIG are removed, so the next record another
    process appends is not glued onto them."""
    path = str(tmp_path / "app.log")
    assert in_child(_torn_then_exit, path, True) == 1
    h = CountingHandler(path, strategy="flock")
    make_logger(h).info("rec c0%s", PAD)
    h.close()
    exact(path, ["a0", "c0"])


def test_torn_fragment_kept_on_its_own_line_when_it_cannot_be_removed(tmp_path):
    """When the fragment cannot be truncated away, the writer's next record starts a new line,
    so only the lost record's fragment is malformed, never a good record."""
    path = str(tmp_path / "app.log")
    assert in_child(_torn_then_exit, path, False) == 1
    lines = open(path, "rb").read().split(b"\n")
    assert lines[0] == b"rec a0" + PAD.encode()
    assert lines[1] and (b"rec b0" + PAD.encode()).startswith(lines[1])
    assert lines[2] == b"rec a1" + PAD.encode()
    assert lines[3].startswith(b"safelog: 1 record(s) could not be written")
    assert lines[4:] == [b""]
