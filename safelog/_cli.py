"""The ``safelog`` command line: ``python -m safelog <command> ...``.

One ``_add_<command>(subparsers)`` function per subcommand registers its parser and sets
``func``; :func:`main` dispatches. Tests call :func:`main` as a function.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Sequence, TextIO

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 data skipped, 2 error)."""
    parser = argparse.ArgumentParser(prog="safelog", description="Tools for safelog log files.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subparsers)
    _add_merge(subparsers)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


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
            "Exit status: 0 when every safelog audit passed, 1 otherwise."
        ),
    )
    p.add_argument("--dir", help="keep the logs in this directory (default: a temporary one, removed)")
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--records", type=int, default=2500, help="records per thread")
    p.add_argument("--max-bytes", default="64 KiB", help="rotation size (default: %(default)s)")
    p.add_argument("--start-method", default="spawn", choices=("spawn", "fork", "forkserver"))
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args.dir, args.processes, args.threads, args.records, args.max_bytes, args.start_method)


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
            "or unreadable (reported, everything good merged), 2 the merge could not run."
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
    g = p.add_argument_group(
        "bounding the merged log",
        "Rotate it before a batch would take it past --max-bytes, keeping --backup-count backups "
        "(OUT.1 newest), as the handlers do; the values are written as in a handler's options.",
    )
    g.add_argument("--max-bytes", metavar="SIZE", help="rotation size, e.g. '10 MB' or '64 MiB'")
    g.add_argument("--backup-count", metavar="N", help="backups to keep (needed with --max-bytes)")
    g.add_argument("--compress", metavar="CODEC", help="compress the backups: gzip, bz2 or xz")
    g.add_argument("--retention", metavar="AGE", help="remove backups older than this, e.g. '14 days'")
    g = p.add_argument_group(
        "permissions of a merged log this merge creates",
        "As the handler's options of the same names (default: 0666 minus the umask).",
    )
    g.add_argument("--chmod", metavar="MODE", help="permission bits, e.g. 0640")
    g.add_argument("--owner", metavar="USER[:GROUP]", help="owner, e.g. 'app:adm' or ':adm'")
    p.set_defaults(func=_run_merge)


def _run_merge(args: argparse.Namespace) -> int:
    from ._merge import MergeError, merge

    from ._merge.rotate import parse_policy

    from ._primitives.perms import parse_chmod, parse_owner

    err = sys.stderr
    try:
        parse_policy(args.max_bytes, args.backup_count, args.compress, args.retention)
        parse_chmod(args.chmod)
        parse_owner(args.owner)
    except (ValueError, TypeError) as exc:
        print(f"safelog merge: error: {exc}", file=err)
        return 2
    progress = _progress_printer(err) if not args.quiet and err.isatty() else None
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
            err.write("\n")
        print(f"safelog merge: error: {exc}", file=err)
        return 2
    if progress is not None:
        err.write("\r\033[K")
    for w in report.warnings:
        print(f"safelog merge: warning: {w}", file=err)
    for p in report.problems:
        print(f"safelog merge: {p}", file=err)
    if not args.quiet:
        print(f"safelog merge: {report.summary()}", file=err)
    return 0 if report.ok else 1


def _progress_printer(err: TextIO) -> Callable[[int, int], None]:
    start = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        pct = 100 * done // total if total else 100
        rate = done / max(now - start, 1e-6) / 1e6
        mb = f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB"
        err.write(f"\rsafelog merge: {pct:3d}% {mb} {rate:,.0f} MB/s")
        err.flush()

    return show
