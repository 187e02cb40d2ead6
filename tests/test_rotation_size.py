"""Size rotation: exactly once per crossing across processes, the stdlib backup scheme, limits."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._primitives.shard import iter_records
from tests.helpers import check_paths_every, current_file

WAIT = 120
LINE = 100  # every plain record is exactly this many bytes, newline included
PATTERN = r"(?P<id>\d+-\d{6}) x+"


def message(w: int, i: int) -> str:
    prefix = f"{w}-{i:06d} "
    return prefix + "x" * (LINE - 1 - len(prefix))


def simulate(lengths: list[int], max_bytes: int) -> list[int]:
    """The sizes of the files a correct size rotation leaves: [oldest backup, ..., current]. A
    record that would bring a non-empty file to max_bytes goes to a new one (the stdlib's >=)."""
    sizes = [0]
    for n in lengths:
        if sizes[-1] > 0 and sizes[-1] + n >= max_bytes:
            sizes.append(0)
        sizes[-1] += n
    return sizes


def record_lengths(strategy: str, n: int) -> list[int]:
    """Bytes on disk of records 1..n of one writer: a shard header adds time and sequence number."""
    if strategy != "per-process":
        return [LINE] * n
    header = len("2026-01-01T00:00:00.000000Z ") + len(" ")
    return [header + len(str(seq)) + LINE for seq in range(1, n + 1)]


def backups_newest_first(path: str) -> list[str]:
    """``path.1`` (newest), ``path.2`` ... as long as they exist, without a gap."""
    out: list[str] = []
    while os.path.exists(f"{path}.{len(out) + 1}"):
        out.append(f"{path}.{len(out) + 1}")
    return out


def _writer(w: int, path: str, strategy: str, max_bytes: int, n: int, barrier: Any) -> None:
    # Enough backups that none is dropped (the shift loop stats every slot, so not more).
    handler = safelog.SafeFileHandler(path, strategy=strategy, max_bytes=max_bytes, backup_count=200)
    log = logging.Logger(f"writer-{w}")
    log.addHandler(handler)
    barrier.wait(timeout=WAIT)
    for i in range(n):
        log.info(message(w, i))
    handler.close()


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_rotation_happens_exactly_once_per_crossing_across_processes(strategy: str, log_path: str) -> None:
    """4 processes share a 10 KB limit: file count and every file size match a serial model."""
    # 100 records of 100 bytes fill a file: the 101st would bring it to max_bytes.
    procs, per_proc, max_bytes = 4, 1500, 10_100
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(procs)
    children = [
        ctx.Process(target=_writer, args=(w, log_path, strategy, max_bytes, per_proc, barrier)) for w in range(procs)
    ]
    for c in children:
        c.start()
    try:
        for c in children:
            c.join(WAIT)
        assert [c.exitcode for c in children] == [0] * procs
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
                c.join()
    files = log_files(log_path)
    report = audit(files, [f"{w}-{i:06d}" for w in range(procs) for i in range(per_proc)], PATTERN)
    assert report.ok, report.summary()
    if strategy == "flock":
        # 6,000 records of 100 bytes, 100 per file: 59 full backups and a full current file.
        # One extra rotation anywhere (two processes rotating for one crossing) would leave a
        # short file and a 61st file.
        backups = backups_newest_first(log_path)
        assert len(files) == len(backups) + 1 == 60
        assert [os.path.getsize(f) for f in files] == [100 * LINE] * 60
        assert sum(os.path.getsize(f) for f in files) == procs * per_proc * LINE
    else:
        for c in children:
            shard = next(f for f in files if f.endswith(f".{c.pid}.shard"))
            # Every record of a shard has the same text length; only the sequence number in
            # its header grows, so the model knows each record's size.
            expected = simulate(record_lengths(strategy, per_proc), max_bytes)
            backups = backups_newest_first(shard)
            assert [os.path.getsize(f) for f in reversed(backups)] + [os.path.getsize(shard)] == expected


def test_threads_rotate_exactly_once(log_path: str, make_handler: Callable[..., Any]) -> None:
    """4 threads of one process through the thread strategy: only full backups, none extra."""
    handler = make_handler(log_path, strategy="thread", max_bytes=10_100, backup_count=200)
    log = logging.Logger("threads")
    log.addHandler(handler)
    start = threading.Barrier(4)

    def run(t: int) -> None:
        start.wait(timeout=WAIT)
        for i in range(1000):
            log.info(message(t, i))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT)
    files = log_files(log_path)
    assert [os.path.getsize(f) for f in files] == [10_000] * 40
    report = audit(files, [f"{t}-{i:06d}" for t in range(4) for i in range(1000)], PATTERN)
    assert report.ok, report.summary()


def _read_ids(path: str) -> list[str]:
    ids = []
    with open(path, "rb") as f:
        if ".shard" in path:
            texts = [r.text for r in iter_records(f)]  # type: ignore[union-attr]
        else:
            texts = f.read().splitlines()
    for text in texts:
        m = re.fullmatch(PATTERN, text.decode())
        assert m, text
        ids.append(m.group("id"))
    return ids


def test_stdlib_suffix_scheme_newest_is_one(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """Backups are .1 (newest) to .N (oldest): read oldest first, they replay the log in order."""
    handler = make_handler(log_path, strategy=strategy, max_bytes=1000, backup_count=100)
    logger.addHandler(handler)
    for i in range(95):
        logger.info(message(0, i))
    current = current_file(handler)
    backups = backups_newest_first(current)
    sizes = simulate(record_lengths(strategy, 95), 1000)
    assert [os.path.getsize(f) for f in reversed(backups)] + [os.path.getsize(current)] == sizes
    replay = [rid for f in list(reversed(backups)) + [current] for rid in _read_ids(f)]
    assert replay == [f"0-{i:06d}" for i in range(95)]
    assert sorted(log_files(log_path)) == sorted(backups + [current])


def test_backup_count_drops_the_oldest(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """With backup_count=3 only .1-.3 exist; exactly the oldest records are gone."""
    handler = make_handler(log_path, strategy=strategy, max_bytes=1100, backup_count=3)
    logger.addHandler(handler)
    for i in range(105):
        logger.info(message(0, i))
    current = current_file(handler)
    assert backups_newest_first(current) == [f"{current}.1", f"{current}.2", f"{current}.3"]
    assert sorted(log_files(log_path)) == sorted([current, f"{current}.1", f"{current}.2", f"{current}.3"])
    per_file = len(_read_ids(f"{current}.3"))
    kept = per_file * 3 + len(_read_ids(current))
    report = audit(log_files(log_path), [f"0-{i:06d}" for i in range(105)], PATTERN)
    assert report.lost == [f"0-{i:06d}" for i in range(105 - kept)]
    assert not (report.duplicated or report.unexpected or report.malformed)
    if strategy != "per-process":
        assert per_file == 10 and kept == 35


def test_single_record_larger_than_max_bytes_is_written_whole(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """A record bigger than max_bytes gets a file of its own, whole; no empty backup appears."""
    handler = make_handler(log_path, strategy=strategy, max_bytes=100, backup_count=10)
    logger.addHandler(handler)
    big = "1-000001 " + "x" * 500
    logger.info(big)  # into an empty file: written, no rotation
    current = current_file(handler)
    assert backups_newest_first(current) == []
    logger.info(message(0, 2))
    logger.info(big.replace("000001", "000003"))
    logger.info(message(0, 4))
    assert [_read_ids(f) for f in [f"{current}.3", f"{current}.2", f"{current}.1", current]] == [
        ["1-000001"], ["0-000002"], ["1-000003"], ["0-000004"]
    ]
    assert os.path.getsize(f"{current}.1") > 500
    assert not os.path.exists(f"{current}.4")


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_existing_file_over_the_limit_rotates_on_first_record(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """The size of a file left by an earlier run counts: it is rotated before the first record."""
    with open(log_path, "w") as f:
        f.write(message(9, 0) + "\n" + message(9, 1) + "\n")
    logger.addHandler(make_handler(log_path, strategy=strategy, max_bytes=150, backup_count=3))
    logger.info(message(0, 0))
    assert _read_ids(log_path + ".1") == ["9-000000", "9-000001"]
    assert _read_ids(log_path) == ["0-000000"]


def _remote_writer(path: str, conn: Any) -> None:
    handler = safelog.SafeFileHandler(path, strategy="flock", max_bytes=100, backup_count=5)
    log = logging.Logger("remote")
    log.addHandler(handler)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        log.info(msg)
        conn.send("written")
    handler.close()


def test_writers_follow_another_process_rotation(
    log_path: str, make_handler: Callable[..., Any], logger: logging.Logger, monkeypatch: Any
) -> None:
    """After another process rotated, a writer's next record goes to the new file, not the backup."""
    # The second writer's record would still fit in the renamed file, so only the rotation
    # counter in the lock file can tell it to reopen; the periodic path check is switched off.
    check_paths_every(monkeypatch, 3600.0)
    logger.addHandler(make_handler(log_path, strategy="flock", max_bytes=100, backup_count=5))
    a, b, c, d = "rec a " + "x" * 53, "rec b " + "x" * 23, "rec c " + "x" * 53, "rec d"
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_remote_writer, args=(log_path, child_end))
    child.start()
    try:
        logger.info(a)  # 60 bytes
        parent_end.send(b)  # 30 bytes: the child now holds the file open
        assert parent_end.poll(WAIT) and parent_end.recv() == "written"
        logger.info(c)  # 90 + 60 > 100: the parent rotates
        parent_end.send(d)  # 6 bytes would still fit into the renamed file
        assert parent_end.poll(WAIT) and parent_end.recv() == "written"
        parent_end.send(None)
        child.join(WAIT)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    with open(log_path + ".1") as f:
        assert f.read() == f"{a}\n{b}\n"
    with open(log_path) as f:
        assert f.read() == f"{c}\n{d}\n"


def test_namer_with_a_huge_backup_count_is_asked_only_about_existing_backups(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """With a namer and backup_count=10**6, rotating and compressing ask the namer about the
    backups that exist (a few calls each), not about every number up to backup_count (10**6
    calls, 0.65 s, under the lock); the backups still shift in order and are all compressed."""
    calls: list[str] = []

    def namer(name: str) -> str:
        calls.append(name)
        return name + ".bak"

    handler = make_handler(log_path, strategy=strategy, max_bytes=1000, backup_count=10**6, namer=namer, compress="gzip")
    logger.addHandler(handler)
    for i in range(55):
        logger.info(message(0, i))
    assert safelog.wait_for_compression(30)
    current = current_file(handler)
    rotations = len(simulate(record_lengths(strategy, 55), 1000)) - 1  # 5 of plain records
    backups = [f"{current}.{n}.bak.gz" for n in range(rotations, 0, -1)]  # oldest first
    assert sorted(log_files(log_path)) == sorted(backups + [current])
    replay = audit(backups + [current], [f"0-{i:06d}" for i in range(55)], PATTERN)
    assert replay.ok, replay.summary()
    # The namer is asked only about backups that exist (and the one number a rotation creates),
    # the log's own name's digits (a shard's pid) and backup_count (one probe), never about
    # every number up to backup_count (10**6 calls, 0.65 s, under the lock); nor about numbers in
    # the names of compression temp files, whatever the timing of the compression.
    own = {int(d) for d in re.findall(r"\d+", os.path.basename(current))}
    asked = {int(name.rsplit(".", 1)[1]) for name in calls}
    assert asked <= set(range(1, rotations + 2)) | own | {10**6}, sorted(asked - set(range(1, rotations + 2)))


@pytest.mark.parametrize("stray", ["app.log.2\n", "app.log.1\n.gz", ".app.log.1.gz.0123456789ab.tmp\n"])
@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_a_stray_name_with_a_trailing_line_break_does_not_stop_rotation(
    tmp_path: Any, strategy: str, make_handler: Callable[..., Any], stray: str
) -> None:
    """A file whose name is a backup's (or temp file's) plus a line break is not taken for one
    ("$" matches before a final line break; names are matched whole): rotation goes on, every
    file stays within max_bytes, and the stray file is left alone."""
    (tmp_path / stray).write_text("")
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, max_bytes=10 * LINE + 1, backup_count=3, compress="gzip")
    h.setFormatter(logging.Formatter("%(message)s"))
    log = logging.Logger("stray", logging.DEBUG)
    log.addHandler(h)
    errors: list[logging.LogRecord] = []
    h.handleError = errors.append  # type: ignore[method-assign]
    for i in range(45):
        log.info(message(0, i))
    h.close()
    assert safelog.wait_for_compression(30)
    assert errors == []
    assert (tmp_path / stray).exists()
    files = [f for f in log_files(path) if f != str(tmp_path / stray)]
    assert len(files) == 4  # the log and its three backups: it rotated
    kept = [message(0, i).split()[0] for i in range(10, 45)]  # three backups of 10, and 5
    report = audit(files, kept, PATTERN)
    assert report.ok, report.summary()


def test_a_record_that_brings_the_file_to_max_bytes_rotates_first(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """As the stdlib's ``pos + len(msg) >= maxBytes``: a record that would make the file exactly
    max_bytes long goes to a new file; one that leaves a byte to spare does not."""
    lengths = record_lengths(strategy, 6)
    limit = sum(lengths[:3])  # records 0-2 would fill the file to the limit exactly
    logger.addHandler(make_handler(log_path, strategy=strategy, max_bytes=limit, backup_count=5))
    for i in range(6):
        logger.info(message(0, i))
    current = current_file(logger.handlers[0])
    assert [_read_ids(f) for f in (f"{current}.2", f"{current}.1", current)] == [
        ["0-000000", "0-000001"], ["0-000002", "0-000003"], ["0-000004", "0-000005"]
    ]
    assert simulate(lengths, limit) == [os.path.getsize(f) for f in (f"{current}.2", f"{current}.1", current)]


def test_should_rollover_is_asked_with_backup_count_zero_and_nothing_rotates(
    strategy: str, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """With a size limit and backupCount=0, shouldRollover() answers the size question as the
    stdlib's does, while writing rotates nothing (the stdlib's "rollover never occurs") and
    doRollover() renames nothing."""
    handler = make_handler(log_path, "a", 250, 0, cls=safelog.RotatingFileHandler, strategy=strategy)
    logger.addHandler(handler)
    record = logging.makeLogRecord({"msg": message(0, 9)})
    for i in range(2):
        logger.info(message(0, i))
    assert handler.shouldRollover(record)  # 200 (+ a shard's headers) + 100 >= 250
    for i in range(2, 5):
        logger.info(message(0, i))
    handler.doRollover()
    current = current_file(handler)
    assert _read_ids(current) == [f"0-{i:06d}" for i in range(5)]
    assert sorted(log_files(log_path)) == [current]


@pytest.mark.parametrize("nonblocking", [False, True], ids=["sync", "nonblocking"])
def test_max_bytes_and_backup_count_assigned_after_construction_apply_from_the_next_record(
    strategy: str, nonblocking: bool, log_path: str, make_handler: Callable[..., Any], logger: logging.Logger
) -> None:
    """``handler.maxBytes = N`` and ``handler.backupCount = N`` on a handler built without
    rotation start it, a new value changes it, and backupCount=0 stops it, as the stdlib's emit
    reads both attributes; a bad value raises, naming the attribute."""
    handler = make_handler(log_path, cls=safelog.RotatingFileHandler, strategy=strategy, nonblocking=nonblocking)
    logger.addHandler(handler)
    lengths = record_lengths(strategy, 40)

    def log(first: int, last: int) -> list[int]:
        """Sizes of .2, .1 and the current file after records first..last-1."""
        for i in range(first, last):
            logger.info(message(0, i))
        handler.flush()
        return [os.path.getsize(f) if os.path.exists(f) else 0 for f in (f"{current}.2", f"{current}.1", current)]

    current = current_file(handler)
    handler.maxBytes = "1 KB"
    handler.backupCount = 2
    assert (handler.maxBytes, handler.backupCount) == (1000, 2)
    files = simulate(lengths[:30], 1000)
    assert log(0, 30) == files[-3:]
    handler.maxBytes = 250
    # The current file's bytes, then the new records, under the new limit.
    files = files[:-1] + simulate([files[-1]] + lengths[30:34], 250)
    assert log(30, 34) == files[-3:]
    handler.backupCount = 0  # no more rotation: the file grows past maxBytes
    files[-1] += sum(lengths[34:40])
    assert log(34, 40) == files[-3:] and files[-1] > 250
    assert not os.path.exists(f"{current}.3")
    with pytest.raises(ValueError, match="maxBytes"):
        handler.maxBytes = -1
    with pytest.raises(TypeError, match="backupCount"):
        handler.backupCount = "two"
    assert (handler.maxBytes, handler.backupCount) == (250, 0)


def test_assigning_a_size_limit_without_backups_is_refused_as_at_configuration(
    log_path: str, make_handler: Callable[..., Any]
) -> None:
    """A SafeFileHandler refuses max_bytes without backup_count at configuration (it would never
    rotate); assigning the attributes later into that state is refused the same way, and
    changes nothing."""
    handler = make_handler(log_path, max_bytes=1000, backup_count=2)
    with pytest.raises(ValueError, match="would never rotate"):
        handler.backupCount = 0
    plain = make_handler(log_path + "-plain")
    with pytest.raises(ValueError, match="maxBytes=1000 .*would never rotate"):
        plain.maxBytes = 1000
    assert (handler.maxBytes, handler.backupCount, plain.maxBytes, plain.backupCount) == (1000, 2, 0, 0)
