"""The live merge: the shards of a ``per-process`` log merged while their processes write them.
``safelog follow`` prints it, ``safelog merge --follow`` appends it to the merged log.

Order and lag
    Each step emits, in merge order (time, then host, pid and position in the writer's chain:
    the order of a one-shot merge), every complete record whose time is at least ``lag`` in the
    past (the *watermark*: now - lag, on this host's clock), and holds the newer ones back. A
    record that reaches its shard within ``lag`` of its time therefore comes out exactly where
    a one-shot merge would put it. One that arrives later (its process was descheduled or
    stopped between making the record and writing it, a non-blocking queue fell behind, the
    writer's host clock runs behind this one) is emitted by the next step, after records with
    later times: late, never lost and never twice. A *drain* step emits everything complete,
    whatever its time.

Complete records
    A shard has one writer, which appends one ``write()`` per record. A record is complete when
    the next record's header follows it, when its file is finished (the writer moved on to a
    newer file, or the file is gone from the directory), or when the file ends with its line
    end and has not changed for ``SETTLE`` seconds: a reader may see part of a write that spans
    two pages, and such a part can end in a line break of a multi-line record. The last record
    of a file that never settles is held back until the next one follows it.

Files
    Every file is followed by its descriptor from the listing where it first appears until it
    is gone from the directory and read to its end: a backup renamed, or compressed with its
    plain file unlinked while it is being read, is read on through the descriptor. Files are
    named by their first line (:func:`discovery.identify`, as the journal names them), so the
    compressed twin of a file being read, or of one already read, is never read again. What has
    been emitted of a file is its decoded offset (``File.start``): the journal's offsets.

    A look is not an instant: a writer may rotate between the listing and the opening of the
    files it names (a follower descheduled in between makes that likely). The name of the
    shard then holds the newer file, and the older one is under a backup name the listing does
    not have, or gone into its compressed copy: its writer's newer records would come out
    first. So each look compares the shard files' names and inodes before and after it, and a
    writer whose files changed meanwhile emits nothing at that look; the next one finds all of
    its files.

Reading and writing
    The records are decoded by merge's reader (:class:`reader.Reader`, over spans that end at a
    record boundary) and written by merge's k-way step (:func:`output.merge_into`): the bytes
    are those of a one-shot merge.
"""

from __future__ import annotations

import os
import stat
import time

from .._primitives.codec import DECODE_ERRORS
from .._primitives.fileio import Place, Refused, close_quietly, open_input
from .._primitives.fsdetect import network_fs
from .._primitives.lock import LOCK_EX, LOCK_UN, flock, try_lock
from .._primitives.shard import TIME_LEN, hostname, parse_shard_name, time_key
from .discovery import FOREIGN_QUIET, File, Unreadable, discover, first_line, identify
from .parallel import split_offset
from .reader import Span
from .report import MergeReport, Problem
from .track import Track, copy_of, sort_key

__all__ = ["LiveMerge", "Track", "SETTLE", "DRAIN"]

# How long a file's size must stay the same before a line end at its end is taken for the
# end of its last record (see "Complete records").
SETTLE = 0.05
# How long the names of files emitted to their end and gone are kept: a compressed copy that a
# writer's compressor finishes after its plain file left the directory is not read again.
FORGET = 3600.0
# The watermark of a drain: above every time.
DRAIN = b"\xff"
# What makes a file unusable for now (gone, replaced, unreadable, a first line not written yet).
_UNUSABLE: tuple[type[Exception], ...] = DECODE_ERRORS + (Unreadable,)
# Looks a drain tries for one in which no writer's files changed.
_RELOOK = 10


class LiveMerge:
    """Follows the shards of one log. :meth:`refresh` lists the directory, :meth:`plan` says
    what to emit, :meth:`emitted` records that it was written.

    ``offsets`` (identity -> decoded offset) is what was emitted before (the journal's);
    ``gone`` names files emitted to their end and removed, whose compressed copies are skipped.
    With ``hold`` the exclusive lock of a shard found finished is kept until :meth:`release`,
    so that it can be removed (a merge's removal protocol, see ``journal.apply``).
    """

    def __init__(
        self,
        directory: str,
        logname: str,
        lag: float,
        offsets: dict[str, int] | None = None,
        gone: set[str] | None = None,
        hold: bool = False,
        place: Place | None = None,
    ) -> None:
        self.directory = directory
        self.place = place
        self.logname = logname
        self.lag = lag
        self.hold = hold
        self._offsets = dict(offsets or {})
        self._chains: dict[tuple[str, int], list[Track]] = {}
        self._by_ino: dict[tuple[int, int], Track] = {}
        self._by_file: dict[int, Track] = {}
        # identity -> when it went (monotonic); kept for FORGET seconds.
        self.gone: dict[str, float] = dict.fromkeys(gone or (), time.monotonic())
        self._netfs: str | None | bool = False  # not looked up yet
        self.refused: set[str] = set()  # files skipped by the rule, reported once
        # Writers (host, pid) whose files changed while the last look was taken (see "Files").
        self._unsettled: set[tuple[str, int]] = set()
        # Problems found while looking (the reader reports its own into the report it is given).
        self.report = MergeReport(os.path.join(directory, logname))

    def tracks(self) -> list[Track]:
        """Every file followed, writer by writer in tie order, oldest first."""
        return [t for hp in sorted(self._chains) for t in self._chains[hp]]

    # -- the directory -------------------------------------------------------------------------
    #
    # Every inode in _by_ino is held open (a track's file, or a compressed copy of it): while
    # it is known it cannot pass to a new file.

    def refresh(self) -> None:
        """List the directory: take up new files, follow renamed ones, let go of files that are
        gone and emitted to their end."""
        now = time.monotonic()
        if self.gone and now - min(self.gone.values()) > FORGET:
            self.gone = {k: at for k, at in self.gone.items() if now - at <= FORGET}
        before = self._shard_names()
        chains, twins = discover(self.directory, self.logname)
        seen: set[tuple[int, int]] = set()
        self._unlist()
        self._take_up(chains, twins, now, seen)
        for t in list(self._by_file.values()):
            for ino in [k for k in t.copies if k not in seen]:
                close_quietly(t.copies.pop(ino)[0])
                self._by_ino.pop(ino, None)
        for hp, seq in list(self._chains.items()):
            for t in list(seq):
                self._resize(t, now)
                if t.done and not t.listed:
                    seq.remove(t)
                    self._forget(t)
            if not seq:
                del self._chains[hp]
        after = self._shard_names()
        self._unsettled = {(host, pid) for host, pid, _, _ in before ^ after}

    def _unlist(self) -> None:
        """Before a listing: no file is listed yet; name the ones not named yet."""
        for t in self._by_file.values():
            t.listed = False
            if not t.f.identity and t.f.fd >= 0:
                # Named before the listing: a compressed copy of it may be in it.
                try:
                    self._identify(t.f)
                except _UNUSABLE:
                    pass

    def _take_up(
        self, chains: list[list[File]], twins: list[tuple[File, str]], now: float, seen: set[tuple[int, int]]
    ) -> None:
        """The files of a listing, each writer's in its chain's order (``seen``: their inodes)."""
        copies: dict[str, list[str]] = {}
        for plain, path in twins:
            copies.setdefault(plain.path, []).append(path)
        for chain in chains:
            seq = self._chains.setdefault((chain[0].host, chain[0].pid), [])
            for f in chain:
                # A compressed twin right after its plain file: the same records.
                for g in [f] + [copy_of(f, path) for path in copies.get(f.path, ())]:
                    found = self._see(g, now, seen)
                    if found is not None and found not in seq:
                        seq.append(found)
            seq.sort(key=sort_key)

    def _resize(self, t: Track, now: float) -> None:
        """Note a plain file's new size (and that a writer taken for gone writes on)."""
        if t.f.fd >= 0 and not t.f.ext:
            # By the descriptor: the name may hold a compressed copy by now.
            size = os.fstat(t.f.fd).st_size
            if size != t.size:
                t.size, t.changed = size, now
                if t.done:
                    # Its writer was taken for gone, and writes on (or a new process
                    # with the same pid took the shard up again).
                    t.done = False
                    t.head, t.head_key = -1, b""

    def _shard_names(self) -> set[tuple[str, int, str, int]]:
        """(host, pid, name, inode) of every shard file in the directory now, from one listing
        (the inode as the listing has it: no stat)."""
        names = set()
        try:
            with os.scandir(self.directory) as entries:
                for e in entries:
                    parts = parse_shard_name(self.logname, e.name)
                    if parts is not None:
                        names.add((str(parts["host"]), int(str(parts["pid"])), e.name, e.inode()))
        except OSError:
            pass  # the look's own listing reports it
        return names

    def settle(self) -> None:
        """List the directory twice, ``SETTLE`` apart: before a drain, so that a file whose
        writer is done is not held back as possibly being written. A drain emits every writer,
        so it takes a look in which no writer's files changed, if one comes within a few."""
        self.refresh()
        time.sleep(SETTLE)
        self.refresh()
        for _ in range(_RELOOK):
            if not self._unsettled:
                return
            self.refresh()

    def _forget(self, t: Track) -> None:
        t.close()
        if t.f.identity:
            self.gone[t.f.identity] = time.monotonic()
        self._by_file.pop(id(t.f), None)
        for k in [k for k, v in self._by_ino.items() if v is t]:
            del self._by_ino[k]

    def _see(self, f: File, now: float, seen: set[tuple[int, int]]) -> Track | None:
        """The track of a listed file: known by its inode, or by its first line (a compressed
        copy of a known file), or new; None when it cannot be used yet."""
        try:
            st = os.lstat(f.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        ino = (st.st_dev, st.st_ino)
        t = self._by_ino.get(ino)
        if t is not None:
            seen.add(ino)
            t.listed = True
            if t.ino == ino:
                t.f.path, t.f.n, t.f.period = f.path, f.n, f.period
            elif ino in t.copies:
                t.copies[ino] = (t.copies[ino][0], f.path)
            return t
        size = self._open_listed(f, ino)
        if size is None:
            return None
        seen.add(ino)
        known = next((k for k in self._by_file.values() if f.identity and k.f.identity == f.identity), None)
        if known is not None:
            if known.ino == ino and known.f.fd < 0:
                known.f.fd = f.fd  # its descriptor was closed (to release a lock): taken up again
            else:
                # A copy of a file being followed (compressed, or once more under its name after
                # its descriptor was closed): that one is read on; this one is its copy.
                known.copies[ino] = (f.fd, f.path)
            known.listed = True
            self._by_ino[ino] = known
            return known
        t = Track(f, ino, size, now)
        self._by_ino[ino] = t
        self._by_file[id(f)] = t
        if f.identity in self.gone and f.identity not in self._offsets:
            # A copy of a file emitted to its end and removed (its compression finished late).
            t.done = True
        else:
            f.start = self._offsets.get(f.identity, 0) if f.identity else 0
        return t

    def _open_listed(self, f: File, ino: tuple[int, int]) -> int | None:
        """Open and name the listed file ``f`` (inode ``ino``); its size, or None when it
        cannot be used yet (refused, gone or replaced, or without a first line)."""
        try:
            # Under the rule of every file beside the log (_primitives.fileio): no link, no
            # FIFO, no other user's file.
            f.fd, fst = open_input(f.path, self.place)
        except Refused as exc:
            if f.path not in self.refused:
                self.refused.add(f.path)
                self.report.problems.append(Problem(f.path, 0, f"skipped: {exc.strerror or exc}"))
            return None
        except OSError:
            return None  # removed or replaced since the listing: the next look finds out
        try:
            if (fst.st_dev, fst.st_ino) != ino:
                raise FileNotFoundError(f.path)
            if not self._identify(f) and f.ext:
                raise Unreadable("no complete first line")
        except _UNUSABLE:
            close_quietly(f.fd)
            f.fd = -1
            return None
        return fst.st_size

    def _identify(self, f: File) -> bool:
        """Name ``f`` by its first line once that is complete; False while it is not."""
        if f.identity:
            return True
        line = first_line(f)
        if not line.endswith(b"\n"):
            return False
        f.identity = identify(f, line)
        return True

    # -- what to emit --------------------------------------------------------------------------

    def plan(self, now: float, drain: bool = False) -> list[list[Span]]:
        """Spans of the records to emit now, one list per writer in tie order, for merge's
        readers and :func:`output.merge_into`. Call :meth:`emitted` once they are written."""
        wm = DRAIN if drain else time_key(now - self.lag)
        mono = time.monotonic()
        out: list[list[Span]] = []
        for hp in sorted(self._chains):
            if hp in self._unsettled and not drain:
                continue  # its files changed during the look: it may have one the look missed
            seq = self._chains[hp]
            spans: list[Span] = []
            for t in seq:
                if t.done:
                    continue
                finished = t is not seq[-1] or not t.listed or bool(t.f.ext)
                try:
                    stop = self._cut(t, wm, finished, mono)
                except DECODE_ERRORS:
                    stop = -1  # the reader reports what cannot be read
                if stop >= 0 and not t.head_key and mono - t.changed >= SETTLE and self.writer_gone(t):
                    stop = -1  # its writer is gone: a last record without its line end was cut short
                if stop < 0:
                    # Finished, and nothing in it is held back: the reader reads it to its end
                    # (and reports a last record cut short by a writer that died mid-write).
                    t.f.live = False
                    t.f.size = t.size
                    spans.append(Span(t.f, t.f.start))
                    continue
                if stop > t.f.start and self._identify(t.f):
                    spans.append(Span(t.f, t.f.start, stop, cut=True))
                break  # the rest of this file, and the writer's newer files, wait
            if spans:
                out.append(spans)
        return out

    def _cut(self, t: Track, wm: bytes, finished: bool, mono: float) -> int:
        """Where what ``t`` may emit now ends (a record start), or -1 for "to its end"."""
        start = t.f.start
        if t.head >= start and t.head_key > wm:
            return t.head  # the first record held back is still too new
        if not t.f.ext and t._decoded is not None:
            # A writer that cut a record short (disk full) truncates the fragment and writes it
            # again: bytes past the end seen last are not kept across looks.
            t._decoded.forget()
        pos = max(t.head, start)
        limit = t.size if not t.f.ext else -1
        last = pos
        t.tail_nl = limit >= 0 and pos >= limit  # nothing after pos: nothing is held back
        for s, key in t.starts(pos, limit):
            if key > wm:
                t.head, t.head_key = s, key
                return s
            last = s
        if finished:
            return -1
        if t.tail_nl and mono - t.changed >= SETTLE:
            t.head, t.head_key = limit, b""
            return limit
        # The last record may still be being written: held back.
        t.head, t.head_key = last, b""
        return last

    def emitted(self, spans: list[list[Span]]) -> None:
        """The spans of the last :meth:`plan` are written: move on."""
        for chain in spans:
            for sp in chain:
                f = sp.file
                t = self._by_file.get(id(f))
                if sp.cut:
                    f.start = sp.stop
                    continue
                f.start = max(f.end, f.start)
                if t is not None:
                    t.done = True
                    if not f.ext:
                        t.size = max(t.size, f.start)
                    t.close_stream()

    def finished(self) -> list[Track]:
        """Files emitted to their end that are still on disk (to remove them)."""
        return [t for t in self.tracks() if t.done and t.listed and (t.f.fd >= 0 or t.copies)]

    def release(self) -> None:
        """Close the descriptors of files whose exclusive lock was taken to remove them (a
        writer with the same pid waits for it). If such a file is still there, the next
        listing finds it again by its first line."""
        for t in self._by_file.values():
            if t.locked:
                t.close()
                for k in [k for k, v in self._by_ino.items() if v is t]:
                    del self._by_ino[k]

    def offsets(self) -> dict[str, int]:
        """identity -> decoded offset emitted, for every file followed now."""
        return {t.f.identity: t.f.start for t in self.tracks() if t.f.identity and t.f.start}

    # -- writers ---------------------------------------------------------------------------------

    def writer_gone(self, t: Track) -> bool:
        """Whether nobody writes ``t`` any more: it is not the writer's newest file, or the
        writer's shared lock on it is gone (with ``hold`` the exclusive lock stays taken)."""
        seq = self._chains.get((t.f.host, t.f.pid), [])
        if t.f.ext or not t.listed or (seq and t is not seq[-1]):
            return True
        if t.f.fd < 0 or not try_lock(t.f.fd, LOCK_EX):
            return False
        foreign = t.f.host != hostname() and self._network()
        if foreign and time.time() - os.fstat(t.f.fd).st_mtime < FOREIGN_QUIET:
            # Another host's lock may not reach this one (see discovery.FOREIGN_QUIET).
            flock(t.f.fd, LOCK_UN)
            return False
        if self.hold:
            t.locked = True
        else:
            flock(t.f.fd, LOCK_UN)
        return True

    def _network(self) -> bool:
        if self._netfs is False:
            self._netfs = network_fs(os.path.join(self.directory, self.logname))
        return bool(self._netfs)

    # -- where to start ------------------------------------------------------------------------

    def start_since(self, key: bytes) -> None:
        """Emit only the records of time ``key`` and later (``--since``)."""
        for seq in self._chains.values():
            for i, t in enumerate(seq):
                if t.done:
                    continue
                nxt = seq[i + 1] if i + 1 < len(seq) else None
                if nxt is not None and nxt.f.identity and nxt.read_at(0, TIME_LEN) < key:
                    self._skip(t)  # the next file starts before key: all of this one does
                    continue
                if not t.f.ext and t.size > t.f.start:
                    at = split_offset(t.f, key, t.f.start, t.size)
                    t.f.start = at if at < t.size else t.ends()
                elif t.f.ext:
                    at = next((s for s, k in t.starts(t.f.start, -1) if k >= key), -1)
                    if at < 0:
                        self._skip(t)
                    else:
                        t.f.start = at

    def start_last(self, n: int) -> None:
        """Emit the last ``n`` complete records of all writers first (``-n``)."""
        found: list[tuple[bytes, int, int, int]] = []
        order = sorted(self._chains)
        for c, hp in enumerate(order):
            seq = self._chains[hp]
            need = n
            for i in range(len(seq) - 1, -1, -1):
                if need <= 0 or seq[i].done:
                    break
                last = seq[i].last_records(need)
                found += [(k, c, i, s) for s, k in last]
                need -= len(last)
        found.sort()
        first: dict[int, tuple[int, int]] = {}
        for _, c, i, s in found[len(found) - n :] if n else []:
            first.setdefault(c, (i, s))
        for c, hp in enumerate(order):
            seq = self._chains[hp]
            at_i, at_s = first.get(c, (len(seq), 0))
            for i, t in enumerate(seq):
                if t.done or i > at_i:
                    continue
                if i == at_i:
                    t.f.start = at_s
                else:
                    self._skip(t)

    def _skip(self, t: Track) -> None:
        """Start after the records ``t`` holds now."""
        t.f.start = t.ends()
        if t is not self._chains[(t.f.host, t.f.pid)][-1] or t.f.ext:
            t.done = True
            t.close_stream()

    def close(self) -> None:
        for t in self._by_file.values():
            t.close()
