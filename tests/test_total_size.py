"""max_total_bytes: after each rotation the oldest backups go until the log and its backups fit."""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
from typing import Any

import pytest

import safelog
from safelog import audit, log_files
from safelog._policy.backups import BackupFiles
from safelog._policy.steps import KeepTotal

PATTERN = r"id=(?P<id>\S+) [0-9a-f]+"


def emit(handler: logging.Handler, rid: str) -> None:
    # Random text: compressed backups stay about half their size, as real logs do, so even a
    # compressed log fills max_total_bytes.
    handler.handle(logging.makeLogRecord({"msg": f"id={rid} {secrets.token_hex(40)}"}))


def disk_use(directory: str) -> tuple[int, int, int]:
    """``(all, backups, live)`` bytes of the log's files in ``directory``: the log or its shards
    and their backups, compressed or not. Hidden work files (a compression's temp file, counted
    by its source; a removed backup waiting for its background unlink) and lock files are not."""
    total = backups = live = 0
    for entry in os.listdir(directory):
        if entry.startswith(".") or entry.endswith(".lock"):
            continue
        size = os.stat(os.path.join(directory, entry)).st_size
        total += size
        if entry == "app.log" or entry.endswith(".shard"):
            live += size
        else:
            backups += size
    return total, backups, live


def install_probes(directory: str, archive: str, results: str) -> None:
    """In this process: every backup rotation removes is first hard-linked into ``archive`` (so
    the audit can read what was removed), and the disk use right after each max_total_bytes
    step, still under the rotating writer's exclusion, is appended to ``results``."""
    trash, run = BackupFiles.trash, KeepTotal.run
    count = [0]

    def keeping_trash(self: BackupFiles, name: str) -> None:
        count[0] += 1
        try:
            os.link(name, os.path.join(archive, f"{os.getpid()}-{count[0]}-{os.path.basename(name)}"))
        except FileNotFoundError:
            pass
        trash(self, name)

    def measured_run(self: KeepTotal, listing: Any, files: BackupFiles) -> None:
        run(self, listing, files)
        total, backups, _ = disk_use(directory)
        own = os.stat(listing.path).st_size
        with open(results, "a") as f:
            f.write(f"{total} {backups} {own}\n")

    BackupFiles.trash = keeping_trash  # type: ignore[method-assign]
    KeepTotal.run = measured_run  # type: ignore[method-assign]


def _writer(path: str, archive: str, wid: int, n: int, options: dict[str, Any], go: Any) -> None:
    install_probes(os.path.dirname(path), archive, os.path.join(archive, "..", f"sizes-{wid}"))
    h = safelog.SafeFileHandler(path, **options)
    go.wait()
    for i in range(n):
        emit(h, f"{wid}-{i}")
    h.close()
    safelog.wait_for_compression(30)


@pytest.mark.parametrize(
    "strategy, method, compress",
    [
        ("flock", "fork", None),
        ("flock", "spawn", "gzip"),
        ("flock", "forkserver", "zstd"),
        ("per-process", "fork", "gzip"),
        ("per-process", "spawn", None),
    ],
)
def test_processes_keep_the_log_within_max_total_bytes(tmp_path: Any, strategy: str, method: str, compress: Any) -> None:
    """Four processes fill a log many times over: right after every rotation the log and its
    backups fit in max_total_bytes (flock; per-process: the backups of every shard and the new
    shard do, the other live shards are each under max_bytes), and every record is either in the
    log's files once or in a backup removed whole, never both."""
    max_bytes, limit, writers, n = 20_000, 100_000, 4, 2_500
    logs, archive = tmp_path / "logs", tmp_path / "removed"
    logs.mkdir()
    archive.mkdir()
    path = str(logs / "app.log")
    options = dict(strategy=strategy, max_bytes=max_bytes, backup_count=1000, max_total_bytes=limit, compress=compress)
    ctx: Any = multiprocessing.get_context(method)
    go = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, str(archive), w, n, options, go)) for w in range(writers)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * writers

    sizes = [tuple(map(int, line.split())) for w in range(writers) for line in (tmp_path / f"sizes-{w}").read_text().splitlines()]
    assert len(sizes) >= 10  # rotations ran the step
    if strategy == "flock":
        # Under the exclusive lock nobody writes: the whole log is what the step left.
        assert max(total for total, _, _ in sizes) <= limit
    else:
        # Other processes write their shards meanwhile (each stays under max_bytes, and is
        # rotated, with this step, before it reaches it): what the step decides is the backups.
        assert max(backups + own for _, backups, own in sizes) <= limit
    removed = sorted(str(archive / f) for f in os.listdir(archive))
    assert removed, "nothing was removed: the test did not reach the limit"
    report = audit(log_files(path) + removed, [f"{w}-{i}" for w in range(writers) for i in range(n)], PATTERN)
    assert report.ok, report.summary()
    total, _, _ = disk_use(str(logs))
    assert total <= limit + writers * max_bytes if strategy == "per-process" else total <= limit + max_bytes


def test_max_total_bytes_removes_oldest_first_and_keeps_the_live_log(tmp_path: Any, make_handler: Any, strategy: str) -> None:
    """One process: after each rotation the log and its backups fit, the backups that remain are
    the newest ones, and the live file is never removed."""
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, max_bytes=1000, backup_count=100, max_total_bytes=3500)
    for i in range(300):
        emit(h, f"{i:04d}")
        total, _, _ = disk_use(str(tmp_path))
        assert total <= 3500 + 1000
    h.close()
    names = [n for n in os.listdir(tmp_path) if not n.startswith(".") and not n.endswith(".lock")]
    numbers = sorted(int(n.rsplit(".", 1)[1]) for n in names if n.rsplit(".", 1)[1].isdigit())
    assert numbers == [1, 2, 3]  # the newest three of many
    report = audit(path, [f"{i:04d}" for i in range(300)], PATTERN)
    assert not report.duplicated and not report.malformed and not report.unexpected
    assert report.lost == [f"{i:04d}" for i in range(len(report.lost))]  # only the oldest went


def test_backup_count_and_max_total_bytes_whichever_removes_more(tmp_path: Any, make_handler: Any) -> None:
    """backup_count=2 under a generous max_total_bytes keeps two backups; a small max_total_bytes
    under backup_count=50 keeps what fits."""
    for count, limit, kept in ((2, 1_000_000, 2), (50, 2500, 2)):
        d = tmp_path / f"{count}"
        d.mkdir()
        h = make_handler(str(d / "app.log"), max_bytes=1000, backup_count=count, max_total_bytes=limit)
        for i in range(100):
            emit(h, f"{i}")
        h.close()
        assert len([n for n in os.listdir(d) if n != "app.log" and not n.startswith(".") and not n.endswith(".lock")]) == kept


def test_max_total_bytes_never_touches_files_its_rotation_did_not_make(tmp_path: Any, make_handler: Any, strategy: str) -> None:
    """Files that look like the log's backups but are not survive, and are not counted."""
    names = ["app.log.notes", "app.log.1x", "app.log2.1", "other.log.1.gz", "app.log.1.gz.bak", "app.log.vm.1.shard.x"]
    for n in names:
        (tmp_path / n).write_bytes(b"y" * 5000)
    h = make_handler(str(tmp_path / "app.log"), strategy=strategy, max_bytes=1000, backup_count=100, max_total_bytes=3000)
    for i in range(100):
        emit(h, f"{i}")
    h.close()
    left = set(os.listdir(tmp_path))
    assert set(names) <= left
    assert len([n for n in left if n not in names and not n.startswith(".") and not n.endswith(".lock")]) >= 3


def test_keep_total_removes_the_oldest_across_shards_in_each_shards_order() -> None:
    """Across shards the backup written longest ago goes first; live sizes count, nothing else
    goes once the total fits, and with only live files over the limit nothing more can go."""
    step = KeepTotal(100)
    a = [(5.0, ("a2",), 30), (9.0, ("a1",), 30)]
    b = [(1.0, ("b3",), 30), (7.0, ("b2",), 30), (8.0, ("b1",), 30)]
    assert step.select(20, [a, b]) == [(1, ("b3",)), (0, ("a2",)), (1, ("b2",))]
    assert step.select(0, [[(0.0, ("x",), 100)]]) == []
    assert step.select(500, [a]) == [(0, ("a2",)), (0, ("a1",))]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_bytes="1 MB", backup_count=3, max_total_bytes="5 GBs"), "max_total_bytes from '5 GBs'"),
        (dict(max_bytes="1 MB", backup_count=3, max_total_bytes="500 KB"), "max_total_bytes='500 KB' is less than max_bytes='1 MB'"),
        (dict(max_total_bytes="1 GB"), "max_total_bytes='1 GB' applies to rotated backups"),
        (dict(max_bytes="1 MB", backup_count=3, max_total_bytes=-1), "max_total_bytes must be >= 0"),
    ],
)
def test_bad_max_total_bytes_fails_at_configuration(tmp_path: Any, options: dict[str, Any], message: str) -> None:
    """A bad value, one below max_bytes, or one without rotation is refused, naming the option and value."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), **options)
    assert os.listdir(tmp_path) == []
