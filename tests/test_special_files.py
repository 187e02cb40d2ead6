"""Files that are not regular files (a character device, a FIFO, ``/dev/stdout`` on a pipe) are
written like the stdlib writes them, with every strategy and every rotation option: one
``write()`` per record, never renamed, truncated, compressed, deleted, sought or locked beside.

No test touches a real device node: character devices are private ``mknod`` nodes in the test's
directory (for the slave of a pseudo-terminal the test opened), FIFOs are made there with
``os.mkfifo``, and ``/dev/stdout`` is exercised in a child whose stdout is a pipe we read, with
every call that could change ``/dev`` refused and recorded.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog._sinks.stream import PIPE_BUF
from tests.faults_helpers import FORK, join_all, wait_until

ROTATION: dict[str, dict[str, Any]] = {
    "plain": {},
    "size": {"max_bytes": 64, "backup_count": 2},
    "time": {"when": "S", "backup_count": 1},
    "all": {"max_bytes": 64, "backup_count": 2, "when": "S", "compress": "gzip", "retention": "1 s"},
}
N = 30
T0 = 1_800_000_000.0


def lines(n: int = N, width: int = 0) -> list[str]:
    return [f"rec {i:04d}".ljust(width, "x") for i in range(n)]


def write_all(handler: logging.Handler, texts: list[str]) -> None:
    """One record per text, each 3 s after the previous one: every record would be due for time
    rotation, and with max_bytes=64 every other for size rotation, on a regular file."""
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i, text in enumerate(texts):
        handler.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "created": T0 + 3 * i}))


class Recording(safelog.SafeFileHandler):
    """Keeps the exception of every handleError call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reported: list[BaseException | None] = []
        super().__init__(*args, **kwargs)

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(sys.exc_info()[1])


# -- a character device ----------------------------------------------------------------------


@pytest.fixture
def null_node(tmp_path: Any) -> str:
    """A private character-device node with /dev/null's numbers (1, 3) in the test's directory."""
    node = str(tmp_path / "null")
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    return node


@pytest.fixture
def device_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ``os.write`` to a descriptor of a (1, 3) character device, in order: what a null
    device swallows, seen on its way in."""
    writes: list[bytes] = []
    real = os.write

    def spy(fd: int, data: Any) -> int:
        st = os.fstat(fd)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            writes.append(bytes(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", spy)
    return writes


@pytest.mark.parametrize("nonblocking", [False, True], ids=["sync", "nonblocking"])
@pytest.mark.parametrize("rotation", list(ROTATION))
def test_character_device_gets_every_record_and_is_never_renamed(
    null_node: str, device_writes: list[bytes], strategy: str, rotation: str, nonblocking: bool
) -> None:
    """Every strategy writes a character device directly (one write per record; batches of the
    non-blocking mode up to PIPE_BUF), and leaves the node and its directory as they were: no
    backup, lock file or shard, and, with rotation, no rename (as root, one would have replaced
    the device with a regular file)."""
    before = os.lstat(null_node)
    h = Recording(null_node, strategy=strategy, nonblocking=nonblocking, **ROTATION[rotation])
    try:
        write_all(h, lines())
        h.flush()
    finally:
        h.close()
    assert h.reported == []
    expected = [(t + "\n").encode() for t in lines()]
    assert b"".join(device_writes) == b"".join(expected)
    if not nonblocking:
        assert device_writes == expected
    assert all(len(w) <= PIPE_BUF for w in device_writes)
    after = os.lstat(null_node)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert os.listdir(os.path.dirname(null_node)) == ["null"]


# -- a FIFO ------------------------------------------------------------------------------------


class FifoReader(threading.Thread):
    """Reads a FIFO the way a log consumer does: open, read to end of file, open again.

    Each open-to-EOF is one *session*; a writer that closes and reopens the FIFO shows up as
    an extra session (a real consumer would have stopped at that EOF)."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.sessions: list[bytes] = []
        self.stopping = False

    def run(self) -> None:
        while True:
            with open(self.path, "rb") as f:  # waits for a writer
                data = f.read()
            if self.stopping:
                return
            self.sessions.append(data)

    def received(self) -> int:
        return sum(len(s) for s in self.sessions)

    def stop(self) -> None:
        self.stopping = True
        # Wake the reader if it waits in open() for a writer: be that writer for a moment.
        # Until it waits there, the open fails (no reader); it ends at its next end of file.
        wait_until(lambda: self._poke() or not self.is_alive(), what="the FIFO reader to stop")
        self.join(10)

    def _poke(self) -> bool:
        try:
            os.close(open_writer_now(self.path))
        except OSError:
            return False
        self.join(0.05)
        return not self.is_alive()


def open_writer_now(path: str) -> int:
    """A write descriptor of the FIFO ``path``; ENXIO (OSError) unless a reader has it open."""
    return os.open(path, os.O_WRONLY | os.O_NONBLOCK)


@pytest.fixture
def fifo(tmp_path: Any) -> Iterator[tuple[str, FifoReader]]:
    """A FIFO in the test's directory, with a reader thread already waiting on it."""
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    reader = FifoReader(path)
    reader.start()
    yield path, reader
    reader.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("nonblocking", [False, True], ids=["sync", "nonblocking"])
@pytest.mark.parametrize("rotation", list(ROTATION))
def test_fifo_gets_every_record_in_one_session(
    fifo: tuple[str, FifoReader], strategy: str, rotation: str, nonblocking: bool
) -> None:
    """A FIFO is opened once and closed once: the reader sees every record and a single end of
    file, after the last one; nothing is sought (a pipe cannot) and nothing appears beside it."""
    path, reader = fifo
    h = Recording(path, strategy=strategy, nonblocking=nonblocking, **ROTATION[rotation])
    try:
        write_all(h, lines())
        h.flush()
    finally:
        h.close()
    expected = "".join(t + "\n" for t in lines()).encode()
    wait_until(lambda: reader.received() >= len(expected), what="the records from the FIFO")
    assert h.reported == []
    assert reader.sessions == [expected]
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert os.listdir(os.path.dirname(path)) == ["fifo"]


def _fifo_writer(path: str, strategy: str, nonblocking: bool, child: int, width: int) -> None:
    h = safelog.SafeFileHandler(path, strategy=strategy, nonblocking=nonblocking, **ROTATION["all"])
    try:
        write_all(h, [f"rec {child}-{i:04d} ".ljust(width, "x") for i in range(200)])
    finally:
        h.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nonblocking", [False, True], ids=["sync", "nonblocking"])
@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_processes_sharing_a_fifo_never_interleave_records(
    fifo: tuple[str, FifoReader], strategy: str, nonblocking: bool
) -> None:
    """Three processes write one FIFO with the multi-process strategies: no lock file and no
    shard is created, and every record (1000 bytes, under PIPE_BUF) arrives once and whole, also
    when the non-blocking writer batches them."""
    path, reader = fifo
    # Held open by the test, so that the reader sees one end of file, when the test is done.
    keep = wait_until(lambda: _try(open_writer_now, path), what="the FIFO reader to open")
    try:
        procs = [FORK.Process(target=_fifo_writer, args=(path, strategy, nonblocking, c, 999)) for c in range(3)]
        for p in procs:
            p.start()
        join_all(procs)
        assert [p.exitcode for p in procs] == [0, 0, 0]
    finally:
        os.close(keep)
    wait_until(lambda: reader.sessions, what="the FIFO's end of file")
    assert len(reader.sessions) == 1
    got = reader.sessions[0].decode().splitlines()
    expected = {f"rec {c}-{i:04d} ".ljust(999, "x") for c in range(3) for i in range(200)}
    assert len(got) == len(expected) and set(got) == expected
    assert os.listdir(os.path.dirname(path)) == ["fifo"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_path_that_becomes_a_fifo_after_configuration_is_refused_without_blocking(
    tmp_path: Any, strategy: str
) -> None:
    """A delayed handler configured for a log file that turns out to be a FIFO (with no reader)
    when its first record comes reports the record once and returns at once: it neither waits
    for a reader nor rotates the FIFO."""
    path = str(tmp_path / "app.log")
    h = Recording(path, strategy=strategy, delay=True, **ROTATION["all"])
    try:
        os.mkfifo(path)
        write_all(h, lines(3))
    finally:
        h.close()
    assert len(h.reported) == 1 and isinstance(h.reported[0], OSError)
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["app.log"] + (["app.log.lock"] if strategy == "flock" else [])


def test_merge_on_exit_on_a_fifo_fails_at_configuration(tmp_path: Any) -> None:
    """merge_on_exit needs shards; on a FIFO there are none, so the handler refuses, naming it."""
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    with pytest.raises(ValueError, match="merge_on_exit=True.*a FIFO"):
        safelog.SafeFileHandler(path, strategy="per-process", merge_on_exit=True)
    assert os.listdir(tmp_path) == ["fifo"]


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError:
        return None


# -- /dev/stdout and /dev/stderr ---------------------------------------------------------------

# The child refuses, and records, every call that could change something in /dev, and every
# lseek on a pipe; safelog is imported after the guards, so its bound copies are guarded too.
CHILD = textwrap.dedent(
    """
    import json, logging, os, stat, sys
    attempts = []
    def guard(name, fn, creates=lambda *a: True):
        def wrapper(*args, **kwargs):
            path = os.fspath(args[0]) if args and isinstance(args[0], (str, os.PathLike)) else ""
            if os.path.abspath(path).startswith("/dev/") and creates(*args):
                attempts.append([name, path])
                raise PermissionError(1, "refused by the test", path)
            return fn(*args, **kwargs)
        setattr(os, name, wrapper)
    allowed = ("/dev/stdout", "/dev/stderr")
    guard("open", os.open, lambda p, flags, *a: bool(flags & os.O_CREAT) or os.path.abspath(p) not in allowed)
    for name in ("rename", "replace", "unlink", "remove", "mkdir", "makedirs", "rmdir", "truncate", "mknod", "mkfifo"):
        guard(name, getattr(os, name))
    real_lseek = os.lseek
    def lseek(fd, pos, how):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            attempts.append(["lseek", fd])
        return real_lseek(fd, pos, how)
    os.lseek = lseek

    import safelog
    target, strategy, options, report = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    errors = []
    class H(safelog.SafeFileHandler):
        def handleError(self, record):
            errors.append(repr(sys.exc_info()[1]))
    h = H(target, strategy=strategy, **options)
    h.setFormatter(logging.Formatter("%(message)s"))
    for i in range(50):
        h.handle(logging.makeLogRecord({"msg": f"rec {i:04d}", "levelno": 20, "created": 1.8e9 + 3 * i}))
    h.close()
    with open(report, "w") as f:
        json.dump({"attempts": attempts, "errors": errors}, f)
    """
)


@pytest.mark.parametrize("rotation", ["plain", "all"])
@pytest.mark.parametrize("target", ["/dev/stdout", "/dev/stderr"])
def test_dev_stdout_and_stderr_on_a_pipe(tmp_path: Any, strategy: str, target: str, rotation: str) -> None:
    """A handler on /dev/stdout or /dev/stderr whose stream is a pipe builds at once with every
    strategy, writes every record to the pipe, and creates, renames or seeks nothing in /dev."""
    report = str(tmp_path / "report.json")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, target, strategy, json.dumps(ROTATION[rotation]), report],
        capture_output=True,
        timeout=60,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(safelog.__file__))},
    )
    out, err = (proc.stdout, proc.stderr) if target == "/dev/stdout" else (proc.stderr, proc.stdout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()[-2000:]
    assert out.decode() == "".join(f"rec {i:04d}\n" for i in range(50))
    assert err == b""
    with open(report) as f:
        assert json.load(f) == {"attempts": [], "errors": []}
    assert os.listdir(tmp_path) == ["report.json"]


DELETED_CHILD = textwrap.dedent(
    """
    import logging, os, sys
    out, strategy, report = sys.argv[1], sys.argv[2], sys.argv[3]
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(out)
    os.dup2(fd, 1)  # stdout: a regular file that no path names any more
    import safelog
    h = safelog.SafeFileHandler("/dev/stdout", strategy=strategy, max_bytes=64, backup_count=2)
    h.setFormatter(logging.Formatter("%(message)s"))
    for i in range(20):
        h.handle(logging.makeLogRecord({"msg": f"rec {i:04d}", "levelno": 20}))
    h.close()
    os.lseek(1, 0, os.SEEK_SET)
    with open(report, "wb") as f:
        f.write(os.read(1, 1 << 20))
    """
)


def test_dev_stdout_on_a_deleted_file_is_written_like_a_stream(tmp_path: Any, strategy: str) -> None:
    """/dev/stdout on a regular file since deleted leads to no path ('out.log (deleted)'): the
    handler writes it directly, every record, and creates nothing (no file named after it)."""
    report = str(tmp_path / "report")
    proc = subprocess.run(
        [sys.executable, "-c", DELETED_CHILD, str(tmp_path / "out.log"), strategy, report],
        capture_output=True,
        timeout=60,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(safelog.__file__))},
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stderr == b""
    with open(report) as f:
        assert f.read() == "".join(f"rec {i:04d}\n" for i in range(20))
    assert os.listdir(tmp_path) == ["report"]


@pytest.mark.parametrize("strategy", ["thread", "flock", "per-process"])
def test_do_rollover_on_a_fifo_moves_nothing(tmp_path: Path, strategy: str) -> None:
    """doRollover() and shouldRollover() on a FIFO: nothing is renamed, records still flow."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    h = safelog.RotatingFileHandler(str(fifo), "a", 10, 2, strategy=strategy)
    try:
        h.emit(logging.makeLogRecord({"msg": "before"}))
        assert h.shouldRollover(logging.makeLogRecord({"msg": "x" * 100})) is False
        h.doRollover()
        h.emit(logging.makeLogRecord({"msg": "after"}))
    finally:
        h.close()
    reader.join(30)
    assert got == [b"before\nafter\n"]
    assert sorted(os.listdir(tmp_path)) == ["pipe"]
