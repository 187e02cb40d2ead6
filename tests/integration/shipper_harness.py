"""Two private rsyslogd instances, an edge that tails log files and a central one that stores what
it receives, plus the multi-process writer whose records they carry.

Each instance runs in the foreground (``-n``) with its own configuration, work directory (imfile's
read positions) and pid file, in a directory of the test's own. Neither loads imuxsock or imklog:
no system socket (/dev/log) or kernel log is opened, and the system's rsyslog, if any, is left
alone. The edge reads the files with imfile in inotify mode and forwards every line over TCP to
the central instance on 127.0.0.1, which writes the message part of each one to a file.
"""

from __future__ import annotations

import logging
import logging.config
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from integration_harness import free_port

import safelog

# Record payload: long enough that rotation happens every few thousand records.
PAD = "x" * 60


def rsyslogd() -> str | None:
    """The rsyslogd executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("rsyslogd") or next((p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None)


class Rsyslogd:
    """One rsyslogd in the foreground; stopped by SIGTERM (then SIGKILL), never left behind."""

    def __init__(self, exe: str, name: str, base: Path, config: str) -> None:
        self.dir = base / name
        (self.dir / "work").mkdir(parents=True)
        self.conf = self.dir / "rsyslog.conf"
        self.conf.write_text(config.replace("@WORK@", str(self.dir / "work")))
        self.internal = self.dir / "internal.log"
        self.out = self.dir / "stdout.txt"
        check = subprocess.run([exe, "-N1", "-f", str(self.conf)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, f"{name} config rejected:\n{check.stdout}{check.stderr}"
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(
                [exe, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def diagnostics(self) -> str:
        parts = [f"--- {self.dir.name}: exit {self.proc.poll()}"]
        for p in (self.out, self.internal):
            if p.exists():
                parts.append(f"{p.name}:\n{p.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def alive(self) -> None:
        assert self.proc.poll() is None, self.diagnostics()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


def central_config(port: int, out: Path, internal: Path) -> str:
    return f"""
global(workDirectory="@WORK@")
module(load="imtcp")
template(name="message" type="string" string="%msg%\\n")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="received")
ruleset(name="received") {{
    action(type="omfile" file="{out}" template="message")
}}
# rsyslogd's own messages (startup, errors) go to the default ruleset.
action(type="omfile" file="{internal}")
"""


def edge_config(port: int, globs: Sequence[str], internal: Path) -> str:
    inputs = "\n".join(f'input(type="imfile" file="{g}" tag="app" ruleset="forward")' for g in globs)
    # No state files (their directory does not exist): imfile keeps read positions in files
    # named after the inode, and for a file shorter than its content fingerprint after the inode
    # alone; the next log file that gets the inode of a deleted backup (ext4 hands it out again at
    # once) is then read from the old offset, its first records skipped (seen with rsyslog
    # 8.2302, once in ~50 runs here). State only matters across restarts, which this test never
    # does; without it, what is tested is how safelog's files read.
    return f"""
global(workDirectory="@WORK@")
module(load="imfile" mode="inotify" statefile.directory="@WORK@/no-state-files")
{inputs}
ruleset(name="forward") {{
    # RFC 5424 framing: the central side's %msg% is then exactly the line read.
    action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
           template="RSYSLOG_SyslogProtocol23Format"
           queue.type="LinkedList" queue.size="1000000"
           action.resumeRetryCount="-1" action.resumeInterval="1")
}}
action(type="omfile" file="{internal}")
"""


def wait_listening(port: int, daemon: Rsyslogd, deadline: float = 30) -> None:
    """Until something accepts TCP connections on 127.0.0.1:port (the central rsyslogd)."""
    end = time.monotonic() + deadline
    while True:
        daemon.alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > end:
                raise AssertionError(f"nothing listens on {port} after {deadline} s\n{daemon.diagnostics()}") from None
            time.sleep(0.02)


class Pipeline:
    """Central, then edge: started in that order, stopped edge first."""

    def __init__(self, exe: str, base: Path, globs: Sequence[str]) -> None:
        self.port = free_port()
        self.received = base / "central.log"
        self.central = Rsyslogd(exe, "central", base, central_config(self.port, self.received, base / "central" / "internal.log"))
        self.edge: Rsyslogd | None = None
        try:
            wait_listening(self.port, self.central)
            self.edge = Rsyslogd(exe, "edge", base, edge_config(self.port, globs, base / "edge" / "internal.log"))
        except BaseException:
            self.stop()
            raise

    def diagnostics(self) -> str:
        return "\n".join(d.diagnostics() for d in (self.central, self.edge) if d is not None)

    def wait_lines(self, expected: int, deadline: float) -> tuple[int, float]:
        """Count the lines of the central file until there are ``expected`` (or more), or
        until ``deadline`` seconds passed; return the count and the time it took."""
        start = time.monotonic()
        count, offset = 0, 0
        while True:
            if self.received.exists():
                with open(self.received, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                count += data.count(b"\n")
                offset += len(data)
            if count >= expected or time.monotonic() - start > deadline:
                return count, time.monotonic() - start
            self.central.alive()
            assert self.edge is not None
            self.edge.alive()
            time.sleep(0.05)

    def stop(self) -> None:
        for d in (self.edge, self.central):
            if d is not None:
                d.stop()


def run_writers(config: dict[str, Any], procs: int, threads: int, count: int, log: Any, spread: float = 0.0) -> None:
    """``procs`` forked processes, each applying ``config`` with dictConfig and logging
    ``count`` records from each of ``threads`` threads through the logger "ship";
    ``log(logger, rid)`` writes one record. With ``spread``, a thread that is ahead of an even
    pace over that many seconds waits, so the run spans that long however fast the machine."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(config, p, threads, count, log, spread)) for p in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    hung = [w.pid for w in workers if w.is_alive()]
    for w in workers:
        if w.is_alive():
            w.kill()
            w.join()
    assert not hung, f"writers hung: {hung}"
    assert [w.exitcode for w in workers] == [0] * procs


def _writer(config: dict[str, Any], p: int, threads: int, count: int, log: Any, spread: float) -> None:

    logging.config.dictConfig(config)
    logger = logging.getLogger("ship")
    start = time.monotonic()

    def loop(t: int) -> None:
        for i in range(count):
            ahead = start + spread * i / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            log(logger, f"w{p}-{t}-{i:06d}")

    ts = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    # Multiprocessing children end with os._exit (no atexit): finish the compression queued.
    assert safelog.wait_for_compression(120)


class ShippedFirst:
    """A handler's ``rotator``: renames a log file (or shard) only once its first line has
    reached the central file, so the shipper is reading it.

    That is the condition under which safelog promises a shipper every record: one that holds
    the file reads it to its end, across the rename and the compression that follows. A file
    the shipper never opened is not one safelog can deliver (docs/shipping.md), and imfile opens
    a new file only when it gets to the inotify event, by name: one that a busy edge got to
    after the file was renamed away (0.2 s on a loaded machine) it never reads. Waiting here, in
    the rotating writer under the strategy's exclusion, holds up the writers, never the shipper.
    A file whose first line does not arrive within ``deadline`` seconds is renamed anyway and
    noted in ``unshipped``, which the test reports."""

    def __init__(self, received: Path, unshipped: Path, deadline: float = 60.0) -> None:
        self.received = received
        self.unshipped = unshipped
        self.deadline = deadline
        self._offset = 0
        self._lines: set[bytes] = set()  # lines of the central file read so far (this process)

    def __call__(self, source: str, dest: str) -> None:
        with open(source, "rb") as f:
            first = f.readline().rstrip(b"\n")
        end = time.monotonic() + self.deadline
        while first and not self._arrived(first):
            if time.monotonic() > end:
                with open(self.unshipped, "ab") as f:
                    f.write(first + b"\n")
                break
            time.sleep(0.01)  # the central file offers no event to wait on
        os.replace(source, dest)  # as the handler does without a rotator

    def _arrived(self, line: bytes) -> bool:
        try:
            with open(self.received, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return False
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        self._lines.update(complete.split(b"\n"))
        return line in self._lines


def expected_ids(procs: int, threads: int, count: int) -> list[str]:
    return [f"w{p}-{t}-{i:06d}" for p in range(procs) for t in range(threads) for i in range(count)]
