"""Compression of rotated backups: every codec, outside the lock, atomic, crash-safe, exact audits."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._policy.compressor import COMPRESSOR
from safelog._sinks.flock import FAST_MARGIN
from tests.faults_helpers import FORK, flock_waiters, join_all, wait_until

PATTERN = r"id=(?P<id>\S+) .*"
FILL = "x" * 200




@pytest.fixture
def hook() -> Iterator[Any]:
    """Install a per-chunk hook in the compressor for one test."""

    def install(fn: Any) -> None:
        COMPRESSOR.chunk_hook = fn

    yield install
    COMPRESSOR.chunk_hook = None


def emit(handler: logging.Handler, rid: str) -> None:
    handler.handle(logging.makeLogRecord({"msg": f"id={rid} {FILL}"}))


def names(directory: Any) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("codec,ext", [("gzip", ".gz"), ("bz2", ".bz2"), ("xz", ".xz"), ("zstd", ".zst")])
@pytest.mark.parametrize("strategy", ["thread", "flock", "per-process"])
def test_every_codec_compresses_every_backup(tmp_path: Any, make_handler: Any, strategy: str, codec: str, ext: str) -> None:
    """Each backup ends up compressed with the chosen codec, none is left plain, no temp file
    remains, and the audit reads every record exactly once through the compressed files."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, max_bytes=2000, backup_count=50, compress=codec)
    ids = [str(i) for i in range(60)]
    for rid in ids:
        emit(h, rid)
    assert safelog.wait_for_compression(30)
    files = log_files(path)
    live = [f for f in files if f.endswith((".log", ".shard"))]
    backups = [f for f in files if f not in live]
    assert len(live) == 1 and len(backups) >= 5
    assert all(f.endswith(ext) for f in backups), backups
    assert not [n for n in names(tmp_path) if n.endswith(".tmp")]
    assert audit(files, ids, PATTERN).ok


def test_time_backups_are_compressed_under_their_period_name(tmp_path: Any, make_handler: Any) -> None:
    """A time backup app.log.<period> becomes app.log.<period>.gz."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", when="H", utc=True, compress="gzip")
    base = 1_795_651_200.0
    h.handle(logging.makeLogRecord({"msg": f"id=a {FILL}", "created": base}))
    h.handle(logging.makeLogRecord({"msg": f"id=b {FILL}", "created": base + 3600}))
    assert safelog.wait_for_compression(30)
    assert names(tmp_path) == ["app.log", "app.log.2026-11-26_00.gz", "app.log.lock"]
    assert audit(log_files(path), ["a", "b"], PATTERN).ok


def _other_writer(path: str, n: int, done: Any) -> None:
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes="50 MB", backup_count=5)
    for i in range(n):
        emit(h, f"other-{i}")
    h.close()
    done.set()


def test_writers_never_wait_for_compression(tmp_path: Any, make_handler: Any, hook: Any) -> None:
    """While the compressor is stopped half-way through a backup, this process's threads and
    another process keep writing to the log under the lock: compression holds no lock."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", max_bytes=200_000, backup_count=5, compress="gzip")
    started, release = threading.Event(), threading.Event()

    def stall(src: str) -> None:
        started.set()
        assert release.wait(60)

    hook(stall)
    ids = [f"first-{i}" for i in range(1000)]
    for rid in ids:
        emit(h, rid)  # about 210 KB: rotates once, compression starts and stalls
    assert started.wait(30)
    # spawn: forking while the compressor thread runs is what a fork-safe app would avoid.
    ctx: Any = multiprocessing.get_context("spawn")
    done = ctx.Event()
    p = ctx.Process(target=_other_writer, args=(path, 300, done))
    p.start()
    try:
        for i in range(300):
            emit(h, f"then-{i}")
        assert done.wait(30), "another process could not write while a backup was being compressed"
    finally:
        release.set()
        p.join(30)
    assert p.exitcode == 0
    assert safelog.wait_for_compression(30)
    ids += [f"then-{i}" for i in range(300)] + [f"other-{i}" for i in range(300)]
    assert names(tmp_path) == ["app.log", "app.log.1.gz", "app.log.lock"]
    assert audit(log_files(path), ids, PATTERN).ok


def _crashing_writer(path: str, n: int, started: Any, written: Any) -> None:
    def stall(src: str) -> None:
        started.set()
        threading.Event().wait()  # until killed

    COMPRESSOR.chunk_hook = stall
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=2_000_000, backup_count=5, compress="gzip")
    for i in range(n):
        emit(h, f"c-{i}")
    written.set()
    threading.Event().wait()


def test_crash_mid_compression_leaves_the_uncompressed_backup(tmp_path: Any, make_handler: Any) -> None:
    """A process killed while compressing leaves its backup whole and no .gz; the next rotation
    removes the dead temp file (and a dead .del), compresses the leftover; nothing is lost or
    duplicated."""
    path = str(tmp_path / "app.log")
    ctx: Any = multiprocessing.get_context("fork")
    started, written = ctx.Event(), ctx.Event()
    n = 12_000  # about 2.5 MB: one rotation, several 1 MiB chunks
    p = ctx.Process(target=_crashing_writer, args=(path, n, started, written))
    p.start()
    try:
        assert started.wait(60) and written.wait(60)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.join(30)
    assert p.exitcode == -signal.SIGKILL
    after_crash = names(tmp_path)
    assert "app.log.1" in after_crash and "app.log.1.gz" not in after_crash
    assert [x for x in after_crash if x.startswith(".app.log.1.gz.") and x.endswith(".tmp")]
    ids = [f"c-{i}" for i in range(n)]
    assert audit(log_files(path), ids, PATTERN).ok

    # A backup renamed away for unlinking by a process that died before the unlink.
    (tmp_path / ".app.log.3.0123456789ab.del").write_text("already compressed\n")
    h = make_handler(path, strategy="flock", max_bytes=2_000_000, backup_count=5, compress="gzip")
    more = [f"d-{i}" for i in range(n)]
    for rid in more:
        emit(h, rid)
    assert safelog.wait_for_compression(30)
    assert names(tmp_path) == ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.lock"]
    assert audit(log_files(path), ids + more, PATTERN).ok


def test_failed_compression_keeps_the_backup_and_says_so(tmp_path: Any, make_handler: Any, hook: Any, capsys: Any) -> None:
    """A compression error (here a simulated full disk) leaves the plain backup and no temp
    file, is reported on stderr, and logging goes on."""
    path = str(tmp_path / "app.log")

    def full(src: str) -> None:
        raise OSError(28, "No space left on device")

    hook(full)
    h = make_handler(path, strategy="thread", max_bytes=3000, backup_count=5, compress="gzip")
    ids = [str(i) for i in range(20)]
    for rid in ids:
        emit(h, rid)
    assert safelog.wait_for_compression(30)
    assert names(tmp_path) == ["app.log", "app.log.1"]
    assert "No space left on device" in capsys.readouterr().err
    assert audit(log_files(path), ids, PATTERN).ok


def test_backup_shifted_during_compression_is_compressed_under_its_new_name(
    tmp_path: Any, make_handler: Any, hook: Any
) -> None:
    """A size rotation that shifts app.log.1 to app.log.2 while .1 is being compressed: the
    result is app.log.2.gz holding the first records, and app.log.1 is compressed next."""
    path = str(tmp_path / "app.log")
    started, release = threading.Event(), threading.Event()
    calls = []

    def stall_first(src: str) -> None:
        calls.append(src)
        if len(calls) == 1:
            started.set()
            assert release.wait(60)

    hook(stall_first)
    first = [f"a-{i}" for i in range(400)]
    # The first batch fills a file: one more byte of record would bring it to max_bytes.
    limit = sum(len(f"id={rid} {FILL}\n") for rid in first) + 1
    h = make_handler(path, strategy="thread", max_bytes=limit, backup_count=5, compress="gzip")
    for rid in first:
        emit(h, rid)
    second = [f"b-{i}" for i in range(400)]
    emit(h, second[0])  # rotation 1: app.log.1 holds the first batch; its compression stalls
    assert started.wait(30)
    for rid in second[1:] + ["c-0"]:
        emit(h, rid)  # c-0 is rotation 2: .1 → .2 while .1 is being read
    release.set()
    assert safelog.wait_for_compression(30)
    assert names(tmp_path) == ["app.log", "app.log.1.gz", "app.log.2.gz"]
    assert audit([path + ".2.gz"], first, PATTERN).ok
    assert audit([path + ".1.gz"], second, PATTERN).ok
    assert audit(log_files(path), first + second + ["c-0"], PATTERN).ok


def _busy_writer(path: str, wid: int, n: int) -> None:
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=20_000, backup_count=10_000, compress="gzip")
    for i in range(n):
        emit(h, f"{wid}-{i}")
    h.close()
    safelog.wait_for_compression()


def test_many_processes_compress_without_losing_a_record(tmp_path: Any) -> None:
    """Four flock writers rotate every ~90 records and compress as they go: a backup compressed
    while some writer still appended to it would lose records; the audit is exact."""
    path = str(tmp_path / "app.log")
    ctx: Any = multiprocessing.get_context("fork")
    n = 1500
    procs = [ctx.Process(target=_busy_writer, args=(path, w, n)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    files = log_files(path)
    assert all(f.endswith(".gz") for f in files if f != path)
    assert len(files) > 50
    assert not [x for x in names(tmp_path) if x.endswith(".tmp")]
    assert audit(files, [f"{w}-{i}" for w in range(4) for i in range(n)], PATTERN).ok


def _slow_compressor(path: str, limit: int, started: Any, release: Any) -> None:
    def stall(src: str) -> None:
        started.set()
        assert release.wait(60)

    COMPRESSOR.chunk_hook = stall
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=limit + FAST_MARGIN, backup_count=5, compress="gzip")
    for i in range(401):
        emit(h, f"a-{i}")  # the 401st rotates: this process compresses app.log.1, slowly
    h.close()
    assert safelog.wait_for_compression(60)


def test_a_backup_being_compressed_elsewhere_is_not_compressed_twice(tmp_path: Any, make_handler: Any, hook: Any) -> None:
    """While another process is compressing app.log.1, a rotation here shifts it to app.log.2
    and compresses only its own new backup; the other process finishes app.log.2.gz."""
    path = str(tmp_path / "app.log")
    # What 400 records take, and a byte: the 401st would bring the file to the limit (flock
    # counts a file full FAST_MARGIN before max_bytes).
    limit = sum(len(f"id=a-{i} {FILL}\n") for i in range(400)) + 1
    ctx: Any = multiprocessing.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_slow_compressor, args=(path, limit, started, release))
    p.start()
    compressed_here: list[str] = []
    try:
        assert started.wait(60)
        hook(compressed_here.append)
        h = make_handler(path, strategy="flock", max_bytes=limit + FAST_MARGIN, backup_count=5, compress="gzip")
        mine = [f"b-{i:03d}" for i in range(400)]  # same length as a-NNN: fills the file, then rotates
        for rid in mine:
            emit(h, rid)
        assert safelog.wait_for_compression(30)
    finally:
        release.set()
        p.join(60)
    assert p.exitcode == 0
    assert set(compressed_here) == {path + ".1"}
    assert names(tmp_path) == ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.lock"]
    assert audit([path + ".2.gz"], [f"a-{i}" for i in range(400)], PATTERN).ok
    assert audit(log_files(path), [f"a-{i}" for i in range(401)] + mine, PATTERN).ok


def test_normal_exit_finishes_the_compression_it_started(tmp_path: Any) -> None:
    """A script that rotates and exits at once still leaves only the compressed backup."""
    import subprocess
    import sys

    path = str(tmp_path / "app.log")
    code = (
        "import logging, safelog\n"
        f"h = safelog.SafeFileHandler({path!r}, max_bytes=100_000, backup_count=3, compress='xz')\n"
        "log = logging.getLogger('exit-test'); log.addHandler(h)\n"
        "for i in range(3000): log.warning('id=%d ' + 'x' * 200, i)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ, "PYTHONPATH": root})
    left = names(tmp_path)
    assert left == ["app.log", "app.log.1.xz", "app.log.2.xz", "app.log.3.xz", "app.log.lock"]


def _rotate_twice(path: str, go: Any, done: Any, written: Any) -> None:
    assert go.wait(60)
    h = safelog.SafeFileHandler(path, strategy="flock", max_bytes=2000, backup_count=5, compress="gzip")
    for i in range(200):
        emit(h, f"b-{i}")
        if any(os.path.lexists(path + ".3" + ext) for ext in ("", ".gz")):
            break  # this process rotated twice: app.log.1 of the first rotation is now .3
    else:
        raise AssertionError("no second rotation")
    written.value = i + 1
    done.set()
    h.close()
    assert safelog.wait_for_compression(60)


def test_a_cleanup_never_deletes_the_temp_file_of_a_live_compression(
    tmp_path: Any, make_handler: Any, hook: Any, capfd: Any
) -> None:
    """The compressor is held between creating its temp file and locking it while another
    process rotates twice (two cleanups of temp files): the cleanups cannot take the temp file
    for a dead writer's leftover, every backup ends compressed, no temp file or error remains."""
    path = str(tmp_path / "app.log")
    lock_path = path + ".lock"
    go, done, written = FORK.Event(), FORK.Event(), FORK.Value("i", 0)
    # Forked before any lock or temp file exists here, so it inherits none of them.
    p = FORK.Process(target=_rotate_twice, args=(path, go, done, written))
    p.start()
    held = []

    def between_create_and_lock(tmp: str) -> None:
        held.append(tmp)
        go.set()
        # Either the other process's rotations finish inside the window, or they wait for it.
        wait_until(lambda: done.is_set() or p.pid in flock_waiters(lock_path), 30, "the other writer")

    def first_chunk(src: str) -> None:
        if len(held) == 1:
            held.append(src)
            assert done.wait(60), "the other process could not rotate while a backup was compressed"

    COMPRESSOR.temp_hook = between_create_and_lock
    hook(first_chunk)
    try:
        h = make_handler(path, strategy="flock", max_bytes=2000, backup_count=5, compress="gzip")
        mine = [f"a-{i}" for i in range(10)]  # the tenth rotates: app.log.1 is compressed here
        for rid in mine:
            emit(h, rid)
        assert safelog.wait_for_compression(60)
    finally:
        COMPRESSOR.temp_hook = None
        go.set()
        join_all([p])
    assert p.exitcode == 0
    assert len(held) == 2, held
    err = capfd.readouterr().err
    assert "failed" not in err, err
    assert names(tmp_path) == ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.3.gz", "app.log.lock"]
    theirs = [f"b-{i}" for i in range(written.value)]
    assert audit(log_files(path), mine + theirs, PATTERN).ok


def _backup_number(name: str) -> int:
    m = re.search(r"\.(\d+)(?:\.gz)?$", name)
    assert m, name
    return int(m.group(1))


@pytest.mark.parametrize("strategy", ["thread", "flock", "per-process"])
def test_delay_compress_keeps_the_newest_backup_plain(tmp_path: Any, make_handler: Any, strategy: str) -> None:
    """delay_compress=True: after every rotation the newest backup is plain and every older one
    compressed, backup_count keeps exactly that many, and the retained records are exact."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, max_bytes=2000, backup_count=3, compress="gzip", delay_compress=True)
    ids = [f"{i:03d}" for i in range(120)]
    seen = 0
    for rid in ids:
        emit(h, rid)
        assert safelog.wait_for_compression(30)
        backups = sorted((f for f in log_files(path) if not f.endswith((".log", ".shard"))), key=_backup_number)
        if not backups:
            continue
        seen = max(seen, len(backups))
        assert not backups[0].endswith(".gz"), backups  # .1: the newest
        assert all(f.endswith(".gz") for f in backups[1:]), backups
        assert len(backups) <= 3
    assert seen == 3
    # No temp file is left; the one hidden file of a per-process log is its policy record.
    assert [n for n in names(tmp_path) if n.startswith(".")] == ([".app.log.policy"] if strategy == "per-process" else [])
    # Retention removed the oldest backups whole: what is left is the newest records, each once.
    report = audit(log_files(path), ids, PATTERN)
    assert not report.duplicated and not report.unexpected and not report.malformed
    assert report.lost == ids[: len(report.lost)] and 0 < len(report.lost) < len(ids)


def test_delay_compress_with_time_rotation(tmp_path: Any, make_handler: Any) -> None:
    """Hourly backups with delay_compress: the newest period stays plain, older ones are .gz,
    backup_count=2 keeps exactly two."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", when="H", utc=True, backup_count=2, compress="gzip", delay_compress=True)
    base = 1_795_651_200.0  # 2026-11-26 00:00 UTC
    for hour in range(5):
        h.handle(logging.makeLogRecord({"msg": f"id={hour} {FILL}", "created": base + hour * 3600}))
    assert safelog.wait_for_compression(30)
    assert names(tmp_path) == ["app.log", "app.log.2026-11-26_02.gz", "app.log.2026-11-26_03", "app.log.lock"]
    assert audit(log_files(path), ["2", "3", "4"], PATTERN).ok
