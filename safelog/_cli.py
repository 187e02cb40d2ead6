"""The ``safelog`` command line: ``python -m safelog <command> ...``.

One ``_add_<command>(subparsers)`` function per subcommand registers its parser and sets
``func``; :func:`main` dispatches. Tests call :func:`main` as a function.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from . import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 data skipped, 2 error)."""
    parser = argparse.ArgumentParser(prog="safelog", description="Tools for safelog log files.")
    parser.add_argument("--version", action="version", version=f"safelog {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subparsers)
    _add_merge(subparsers)
    _add_follow(subparsers)
    _add_doctor(subparsers)
    # parse_args() would report an unknown option of a subcommand with the top-level usage;
    # the subcommand's own usage is the one that helps.
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help(sys.stderr)
        return 2
    if extra:
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


def _error(command: str, message: str) -> int:
    """One line on stderr, in argparse's form, and the exit status of a usage error."""
    print(f"safelog {command}: error: {message}", file=sys.stderr)
    return 2


# -- demo -------------------------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="one multi-process workload through the stdlib handler, concurrent-log-handler "
        "and every strategy; audit the logs",
        description=(
            "Run the same multi-process workload through logging.handlers.RotatingFileHandler, "
            "concurrent-log-handler (when installed) and every safelog strategy, audit every "
            "file exactly (each record once, none torn) and print records lost and records/s. "
            "Exit status: 0 when every safelog row passed its audit (the other rows are there to "
            "compare with), 1 when one did not, 2 for a bad argument."
        ),
    )
    p.add_argument("--dir", help="keep the logs in this directory (default: a temporary one, removed)")
    # Bounds are checked in _run_demo, so that a bad value is one line naming the option.
    p.add_argument("--processes", metavar="N", default="4", help="writer processes (default: %(default)s)")
    p.add_argument("--threads", metavar="N", default="2", help="threads per process (default: %(default)s)")
    p.add_argument("--records", metavar="N", default="2500", help="records per thread (default: %(default)s)")
    p.add_argument("--max-bytes", metavar="SIZE", default="64 KiB", help="rotation size (default: %(default)s)")
    p.add_argument("--start-method", default="spawn", choices=("spawn", "fork", "forkserver"))
    p.set_defaults(func=_run_demo)


# The demo's workload bounds: at least one of each; at most what finishes in minutes and whose
# backups stay a few thousand files.
_DEMO_COUNTS = {"--processes": 64, "--threads": 64, "--records": 1_000_000}


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo
    from ._policy.options import parse_size

    counts = []
    for option, value in zip(_DEMO_COUNTS, (args.processes, args.threads, args.records), strict=True):
        top = _DEMO_COUNTS[option]
        try:
            n = int(value)
        except ValueError:
            n = -1
        if not 1 <= n <= top:
            return _error("demo", f"{option} must be a whole number from 1 to {top:,}, got {value!r}")
        counts.append(n)
    try:
        size = parse_size("--max-bytes", args.max_bytes)
    except ValueError as exc:
        return _error("demo", str(exc))
    if size < 1024:
        return _error("demo", f"--max-bytes must be at least 1 KiB (a few records), got {args.max_bytes!r}")
    if args.dir is not None:
        problem = _unusable_dir(args.dir)
        if problem:
            return _error("demo", f"--dir {args.dir}: {problem}")
    processes, threads, records = counts
    return run_demo(args.dir, processes, threads, records, args.max_bytes, args.start_method)


def _unusable_dir(path: str) -> str | None:
    """Why the demo cannot keep its files in ``path`` (created if missing), or None."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".safelog-demo-")
    except OSError as exc:
        return f"cannot write there: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


# -- merge ------------------------------------------------------------------------------------


def _add_merge(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "merge",
        help="join the shards of a per-process log into one time-ordered file",
        description=(
            "Merge the shards of the per-process log LOGFILE (all hosts, pids, rotated and "
            "compressed backups) into one file in time order, appended in place to OUT "
            "(default: LOGFILE itself). Finished shards are removed once the output is on disk; shards "
            "of running processes are left alone. Exit status: 0 ok, 1 some input was damaged "
            "or unreadable (reported, everything good merged), 2 the merge could not run or "
            "LOGFILE names no per-process log (no shard of it and no earlier merge)."
        ),
    )
    p.add_argument("logfile", metavar="LOGFILE", help="the log path the handler was configured with")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of LOGFILE")
    p.add_argument(
        "--keep", action="store_true", help="leave the shards in place (a re-run merges only what is new)"
    )
    p.add_argument(
        "--include-live",
        action="store_true",
        help="also read shards of running processes, up to their last complete record (never removed)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress and no summary; problems are still reported"
    )
    f = p.add_argument_group(
        "merging live",
        "With --follow the merge goes on while the processes write: every --interval it appends the "
        "records whose time is at least --lag in the past, in time order, to OUT in place (one "
        "growing file for shippers), and removes what is merged whole. A record written more than "
        "--lag after its time is appended with the next batch (late, never lost or repeated). "
        "Killed and started again it goes on where it was. Ctrl-C stops; SIGTERM appends "
        "everything complete first.",
    )
    f.add_argument("--follow", action="store_true", help="merge continuously (implies --include-live)")
    f.add_argument("--lag", metavar="TIME", default="0.5s", help="ordering lag (default: %(default)s)")
    f.add_argument("--interval", metavar="TIME", default="0.1s", help="how often to look (default: %(default)s)")
    g = p.add_argument_group(
        "bounding the merged log",
        "Rotate it before a batch would take it to --max-bytes, keeping --backup-count backups "
        "(OUT.1 newest), as the handlers do; the values are written as in a handler's options.",
    )
    g.add_argument("--max-bytes", metavar="SIZE", help="rotation size, e.g. '10 MB' or '64 MiB'")
    g.add_argument("--backup-count", metavar="N", help="backups to keep (needed with --max-bytes)")
    g.add_argument("--compress", metavar="CODEC", help="compress the backups: gzip, bz2, xz or zstd")
    g.add_argument("--retention", metavar="AGE", help="remove backups older than this, e.g. '14 days'")
    g = p.add_argument_group(
        "permissions of a merged log this merge creates",
        "As the handler's options of the same names (default: 0666 minus the umask).",
    )
    g.add_argument("--chmod", metavar="MODE", help="permission bits, e.g. 0640")
    g.add_argument("--owner", metavar="USER[:GROUP]", help="owner, e.g. 'app:adm' or ':adm'")
    p.set_defaults(func=_run_merge)


# How the merge's rotation options are spelled here, in messages about their values.
_MERGE_NAMES = {
    "max_bytes": "--max-bytes", "backup_count": "--backup-count", "compress": "--compress", "retention": "--retention",
}  # fmt: skip


def _run_merge(args: argparse.Namespace) -> int:
    from ._merge import MergeError, merge
    from ._merge.rotate import parse_policy
    from ._primitives.perms import parse_chmod, parse_owner

    err = sys.stderr
    try:
        parse_policy(args.max_bytes, args.backup_count, args.compress, args.retention, names=_MERGE_NAMES)
        parse_chmod(args.chmod)
        parse_owner(args.owner)
        lag, interval = _pace(args)
    except (ValueError, TypeError) as exc:
        return _error("merge", str(exc))
    if args.follow:
        return _merge_follow(args, lag, interval)
    progress = _Progress(err) if not args.quiet and err.isatty() else None
    try:
        report = merge(
            args.logfile,
            args.output,
            keep=args.keep,
            include_live=args.include_live,
            progress=progress,
            max_bytes=args.max_bytes,
            backup_count=args.backup_count,
            compress=args.compress,
            retention=args.retention,
            chmod=args.chmod,
            owner=args.owner,
        )
    except MergeError as exc:
        if progress is not None:
            progress.clear(newline=True)
        print(f"safelog merge: error: {exc}", file=err)
        return 2
    if progress is not None:
        progress.clear()
    if report.absent:
        return _error("merge", report.absent)
    for w in report.warnings:
        print(f"safelog merge: warning: {w}", file=err)
    for p in report.problems:
        print(f"safelog merge: {p}", file=err)
    if not args.quiet:
        print(f"safelog merge: {report.summary()}", file=err)
    return 0 if report.ok else 1


def _pace(args: argparse.Namespace) -> tuple[float, float]:
    """--lag and --interval in seconds (ValueError naming the option)."""
    from ._policy.options import parse_duration

    return parse_duration("--lag", args.lag), parse_duration("--interval", args.interval, positive=True)


def _merge_follow(args: argparse.Namespace, lag: float, interval: float) -> int:
    from ._follow import Signals, more_descriptors
    from ._merge import MergeError, MergeReport
    from ._merge.follow import merge_follow

    err = sys.stderr
    told = [0, 0]

    def notify(report: MergeReport) -> None:
        for w in report.warnings[told[0] :]:
            print(f"safelog merge: warning: {w}", file=err)
        for p in report.problems[told[1] :]:
            print(f"safelog merge: {p}", file=err)
        told[:] = [len(report.warnings), len(report.problems)]
        err.flush()

    more_descriptors()
    control = Signals()
    try:
        report = merge_follow(
            args.logfile,
            args.output,
            control=control,
            lag=lag,
            interval=interval,
            keep=args.keep,
            max_bytes=args.max_bytes,
            backup_count=args.backup_count,
            compress=args.compress,
            retention=args.retention,
            chmod=args.chmod,
            owner=args.owner,
            notify=notify,
        )
    except MergeError as exc:
        return _error("merge", str(exc))
    finally:
        control.close()
    notify(report)
    if not args.quiet:
        print(f"safelog merge: {report.summary()}", file=err)
    return 0 if report.ok else 1


# -- follow -----------------------------------------------------------------------------------


def _add_follow(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "follow",
        help="print a log's records as they are written, across rotations (per-process: all shards, merged)",
        description=(
            "Print the records of LOGFILE as they are written, like tail -F but exact: a rotated "
            "file is read to its end before the next one (by inode; compressed backups decoded), "
            "never a record twice or none skipped. A per-process log is followed as the live "
            "merge of all its shards, records exactly as 'safelog merge' writes them, in time "
            "order: a record is printed once its time is --lag in the past (one written later "
            "than that comes with the next look, after newer ones). Ctrl-C, or the reader of "
            "the output going away (safelog follow app.log | head), ends it quietly with status "
            "0; SIGTERM prints everything complete first. Exit status: 0, 1 when damaged input "
            "was reported, 2 when it could not run."
        ),
    )
    p.add_argument("logfile", metavar="LOGFILE", help="the log path the handler was configured with")
    p.add_argument(
        "-n", "--lines", metavar="N", default="10", help="start with the last N records (default: %(default)s)"
    )
    p.add_argument(
        "--since",
        metavar="TIME",
        help="start with the first record of TIME or later: '2026-12-07T10:00' (local time unless it "
        "ends in Z or an offset) or a duration before now, '10 min' (a plain log: by each line's "
        "leading timestamp)",
    )
    p.add_argument("--lag", metavar="TIME", default="0.5s", help="per-process: ordering lag (default: %(default)s)")
    p.add_argument("--interval", metavar="TIME", default="0.1s", help="how often to look (default: %(default)s)")
    p.set_defaults(func=_run_follow)


def _run_follow(args: argparse.Namespace) -> int:
    from ._follow import FollowError, Signals, follow, is_broken_pipe, parse_since, quiet_broken_pipe
    from ._merge import MergeError

    try:
        lag, interval = _pace(args)
        since = parse_since(args.since) if args.since is not None else None
        lines = int(args.lines) if args.lines.strip().isdigit() else -1
    except (ValueError, TypeError) as exc:
        return _error("follow", str(exc))
    if lines < 0:
        return _error("follow", f"-n must be a whole number of records, 0 or more, got {args.lines!r}")
    sys.stdout.flush()
    out = sys.stdout.fileno()
    control = Signals(out)
    try:
        return follow(args.logfile, out, control, lines=lines, since=since, lag=lag, interval=interval)
    except (FollowError, MergeError) as exc:
        return _error("follow", str(exc))
    except OSError as exc:
        if is_broken_pipe(exc):
            quiet_broken_pipe(out)
            return 0
        return _error("follow", f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    finally:
        control.close()


# -- doctor -----------------------------------------------------------------------------------


def _add_doctor(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="what a log's files say about the deployment writing it: strategy, file system, lock "
        "holders, leftovers, shards of gone processes, disk use",
        description=(
            "Look at LOGFILE's files and the processes around them, on one screen: the strategy "
            "the files show, the file system and whether flock and O_APPEND are reliable there, "
            "the processes holding a lock on them now (pid, command line), the processes that "
            "have them open, the policies processes recorded, files named like the log's that "
            "fit none of its names, leftovers of processes that died (compression temp files, "
            "backups never unlinked, a merge's temp files or half-done journal), shards of "
            "processes that are gone, and disk use. It only looks: no lock taken, nothing "
            "changed. It cannot see other hosts, other pid namespaces, or a lock file kept "
            "elsewhere unless given (--lock-dir). Exit status: 0 nothing wrong, 1 a problem "
            "found, 2 it could not run."
        ),
    )
    p.add_argument("logfile", metavar="LOGFILE", help="the log path the handler was configured with")
    p.add_argument("--json", action="store_true", help="the report as JSON (a stable schema, see docs/operating.md)")
    p.add_argument("--lock-dir", metavar="DIR", help="where the flock lock file is, if the handler was given lock_dir")
    p.set_defaults(func=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from ._doctor import DoctorError, diagnose

    try:
        found = diagnose(args.logfile, lock_dir=args.lock_dir)
    except DoctorError as exc:
        return _error("doctor", str(exc))
    width = shutil.get_terminal_size((100, 24)).columns
    sys.stdout.write(found.dumps() if args.json else found.render(width))
    return 0 if found.ok else 1


# A merge that takes less than this draws no progress bar (seconds).
PROGRESS_AFTER = 0.5
_BAR = 24


class _Progress:
    """A progress bar on stderr (a terminal) for a long merge: bytes done of total, rate, time
    left. Drawn at most five times a second, and only once the merge has run PROGRESS_AFTER."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.start = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed < PROGRESS_AFTER or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        frac = min(done / total, 1.0) if total else 1.0
        fill = int(frac * _BAR)
        rate = done / max(elapsed, 1e-6)
        left = (total - done) / rate if rate > 0 and done < total else 0.0
        self.err.write(
            f"\rsafelog merge: [{'#' * fill}{'.' * (_BAR - fill)}] {frac * 100:3.0f}% "
            f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate / 1e6:,.1f} MB/s {_clock(left)} left"
        )
        self.err.flush()
        self.drawn = True

    def clear(self, newline: bool = False) -> None:
        if self.drawn:
            self.err.write("\n" if newline else "\r\033[K")
            self.err.flush()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
