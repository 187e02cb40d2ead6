"""Hostile configuration: wrong types and values, paths that are not files, planted symlinks."""

from __future__ import annotations

import logging
import logging.config
import os
import stat

import pytest

from safelog import STRATEGIES, FlockFileHandler, SafeFileHandler, ThreadFileHandler
from tests.faults_helpers import CountingHandler, exact, make_logger
from tests.helpers import check_paths_every

BAD_OPTIONS = [
    # (options, exception, text the message must contain: the option's name)
    ({"filename": None}, TypeError, "filename"),
    ({"filename": 123}, TypeError, "filename"),
    ({"filename": ""}, TypeError, "filename"),
    ({"filename": b"app.log"}, TypeError, "filename"),
    ({"filename": "a\0b.log"}, ValueError, "filename"),
    ({"strategy": "fast"}, ValueError, "strategy"),
    ({"strategy": "FLOCK"}, ValueError, "strategy"),
    ({"strategy": 1}, ValueError, "strategy"),
    ({"max_bytes": -1}, ValueError, "max_bytes"),
    ({"max_bytes": "-1 MB"}, ValueError, "max_bytes"),
    ({"max_bytes": "10 XB"}, ValueError, "max_bytes"),
    ({"max_bytes": "lots"}, ValueError, "max_bytes"),
    ({"max_bytes": 1.5}, TypeError, "max_bytes"),
    ({"max_bytes": True}, TypeError, "max_bytes"),
    ({"max_bytes": [10]}, TypeError, "max_bytes"),
    ({"maxBytes": 10, "max_bytes": 20}, ValueError, "max_bytes"),
    ({"backup_count": -1}, ValueError, "backup_count"),
    ({"backup_count": "x"}, TypeError, "backup_count"),
    ({"backup_count": 2.0}, TypeError, "backup_count"),
    ({"backup_count": True}, TypeError, "backup_count"),
    ({"backupCount": 1, "backup_count": 2}, ValueError, "backup_count"),
    ({"mode": "r"}, ValueError, "mode"),
    ({"mode": "r+"}, ValueError, "mode"),
    ({"mode": "x"}, ValueError, "mode='x'"),
    ({"encoding": "no-such-codec"}, ValueError, "encoding"),
    ({"encoding": "rot13"}, ValueError, "encoding"),
    ({"encoding": "utf-16"}, ValueError, "encoding"),
    ({"encoding": "utf-8-sig"}, ValueError, "encoding"),
    ({"encoding": 8}, TypeError, "encoding"),
    ({"errors": "no-such-handler"}, ValueError, "errors"),
    ({"errors": ""}, TypeError, "errors"),
    ({"delay": "maybe"}, TypeError, "delay"),
    ({"delay": None}, TypeError, "delay"),
    ({"delay": 1}, TypeError, "delay"),
    ({"escape_newlines": "perhaps"}, TypeError, "escape_newlines"),
    ({"namer": "str.upper"}, TypeError, "namer"),
    ({"rotator": 42}, TypeError, "rotator"),
    ({"lock_dir": 123}, TypeError, "lock_dir"),
    ({"lock_dir": ""}, TypeError, "lock_dir"),
    ({"max_size": "10 MB"}, TypeError, "max_size"),
]


@pytest.mark.parametrize(("options", "exc", "names"), BAD_OPTIONS, ids=lambda v: repr(v)[:40])
def test_bad_option_fails_at_construction_naming_it(tmp_path, options, exc, names):
    """Every option with a wrong type or value raises TypeError/ValueError at construction, and
    the message names the option."""
    kwargs = {"filename": str(tmp_path / "app.log"), **options}
    with pytest.raises(exc) as info:
        SafeFileHandler(**kwargs)
    assert names in str(info.value)
    assert os.listdir(tmp_path) == [], "a rejected configuration must not create files"


def test_strategy_class_conflict(tmp_path):
    """A strategy class given another strategy says which class to use instead."""
    with pytest.raises(ValueError, match="SafeFileHandler"):
        ThreadFileHandler(str(tmp_path / "app.log"), strategy="flock")


def test_user_subclass_may_choose_the_strategy(tmp_path):
    """A user's subclass of SafeFileHandler that does not pin a strategy accepts any of them."""

    class Mine(SafeFileHandler):
        pass

    for strategy in STRATEGIES:
        Mine(str(tmp_path / f"{strategy}.log"), strategy=strategy).close()


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_filename_that_is_a_directory(tmp_path, strategy):
    """A directory given as filename is rejected at construction, for every strategy and with
    delay too."""
    for delay in (False, True):
        with pytest.raises(ValueError, match="is a directory"):
            SafeFileHandler(str(tmp_path), strategy=strategy, delay=delay)


def test_filename_below_a_regular_file(tmp_path):
    """A path whose parent is a regular file fails at construction with the path in the message."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot be opened.*Not a directory"):
        FlockFileHandler(str(tmp_path / "file" / "app.log"))


def test_dictconfig_reports_the_option(tmp_path):
    """A bad option in dictConfig fails configuration, and the cause names the option."""
    config = {
        "version": 1,
        "handlers": {
            "file": {"class": "safelog.SafeFileHandler", "filename": str(tmp_path / "a.log"),
                     "strategy": "per-thread"},
        },
        "root": {"handlers": ["file"]},
    }
    with pytest.raises(ValueError, match="file") as info:
        logging.config.dictConfig(config)
    assert "strategy" in str(info.value.__cause__)


def _shared_dir(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: sticky and world-writable
    return shared


def test_planted_lock_file_symlink_is_not_followed(tmp_path):
    """A symlink planted where the lock file goes is refused (O_NOFOLLOW) at configuration,
    and its target is not touched."""
    shared = _shared_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    os.symlink(victim, shared / "app.log.lock")
    with pytest.raises(ValueError, match="cannot be opened"):
        FlockFileHandler(str(shared / "app.log"))
    assert victim.read_bytes() == b"precious\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a symlink owned by another user")
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_foreign_symlink_in_shared_directory_is_refused(tmp_path, strategy):
    """A log path that is another user's symlink in a sticky world-writable directory is
    refused at configuration (as fs.protected_symlinks would), and its target is not touched."""
    shared = _shared_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    link = shared / "app.log"
    os.symlink(victim, link)
    os.lchown(link, 65534, 65534)
    for delay in (False, True):
        with pytest.raises(ValueError, match="refusing to follow symlink"):
            SafeFileHandler(str(link), strategy=strategy, delay=delay)
    assert victim.read_bytes() == b"precious\n"


def test_own_symlink_is_followed(tmp_path):
    """A symlink the application's own user made (log path pointing elsewhere on purpose) is
    followed, as logging.FileHandler does."""
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    os.symlink(real_dir, tmp_path / "logs")
    h = FlockFileHandler(str(tmp_path / "logs" / "app.log"))
    make_logger(h).info("rec 1")
    h.close()
    exact(str(real_dir / "app.log"), ["1"])


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_symlink_planted_after_configuration_is_not_followed(tmp_path, strategy, monkeypatch):
    """When the log file is deleted and a symlink put in its place, the writer refuses to
    follow it (O_NOFOLLOW), reports it once, and resumes once the link is gone."""
    check_paths_every(monkeypatch, 0.0)
    shared = _shared_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    path = shared / "app.log"
    h = CountingHandler(str(path), strategy=strategy)
    log = make_logger(h)
    log.info("rec 1")
    path.unlink()
    os.symlink(victim, path)
    for i in range(2, 6):
        log.info("rec %d", i)
    assert victim.read_bytes() == b"precious\n"
    assert h.errors_reported == 1 and h.failed_ids == ["2", "3", "4", "5"]
    path.unlink()
    log.info("rec 6")
    h.close()
    exact(str(path), ["6", "safelog: 4"])
    assert stat.S_ISREG(os.lstat(path).st_mode)


# -- names over the file system's limit --------------------------------------------------------


def _name_max(directory: object) -> int:
    return os.pathconf(directory, "PC_NAME_MAX")


def test_shard_name_over_the_name_limit_fails_at_configuration(tmp_path):
    """A log name that fits, but whose per-process shard name (with room for the largest pid)
    does not, is a ValueError when the handler is built, not a failure of every record."""
    name = "a" * (_name_max(tmp_path) - 4)
    with pytest.raises(ValueError, match=r"shard .* over the \d+-byte name limit"):
        SafeFileHandler(str(tmp_path / name), strategy="per-process")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("options", "room", "what"),
    [
        # (rotation options, bytes the name may have beyond the log's: one too few, what)
        ({"max_bytes": 1000, "backup_count": 10}, 2, "backup"),  # .10
        ({"when": "H"}, 15, "backup"),  # .2026-11-26_18.1 (.1: the repeated DST hour)
        ({"max_bytes": 1000, "when": "H"}, 18, "backup"),  # .2026-11-26_18.9999
        ({"when": "H", "compress": "gzip"}, 18, "compressed backup"),  # .2026-11-26_18.1.gz
        ({"when": "H", "compress": "gzip"}, 53, "compression temp file"),  # .<that>.<inode>-<12>.tmp
        ({"when": "H", "backup_count": 3}, 33, "removed backup"),  # .<.2026-11-26_18.1>.<12>.del
    ],
)
def test_backup_name_over_the_name_limit_fails_at_configuration(tmp_path, options, room, what):
    """A backup name (or the hidden name a backup is compressed into or removed through) over
    the file system's name limit is a ValueError naming it when the handler is built."""
    name = "b" * (_name_max(tmp_path) - room)
    with pytest.raises(ValueError, match=f"{what} .* over the \\d+-byte name limit"):
        SafeFileHandler(str(tmp_path / name), strategy="thread", **options)
    assert os.listdir(tmp_path) == []


def test_lock_file_name_over_the_name_limit_fails_at_configuration(tmp_path):
    """flock's lock file needs five bytes more than the log's name."""
    name = "c" * (_name_max(tmp_path) - 2)
    with pytest.raises(ValueError, match="lock file .* over the"):
        FlockFileHandler(str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_longest_name_that_fits_is_accepted_and_rotates(tmp_path):
    """The check is exact: a name whose longest backup is exactly at the limit is accepted, and
    its rotation works."""
    name = "d" * (_name_max(tmp_path) - len(".2026-11-26_18.1"))
    h = ThreadFileHandler(str(tmp_path / name), when="H", utc=True)
    try:
        for t in (1_795_651_200.0, 1_795_651_200.0 + 3600):
            h.handle(logging.makeLogRecord({"msg": "x", "levelno": logging.INFO, "created": t}))
    finally:
        h.close()
    assert sorted(os.listdir(tmp_path)) == [name, name + ".2026-11-26_00"]
