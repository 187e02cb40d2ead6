"""Command line: ``python -m safelog <command>`` (also installed as ``safelog``)."""

from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["main"]


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run several processes through every strategy and audit the logs")
    p.add_argument("--dir", help="keep the logs in this directory (default: a temporary one, removed)")
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--records", type=int, default=2500, help="records per thread")
    p.add_argument("--max-bytes", default="256 KB", help="rotation size (default: %(default)s)")
    p.add_argument("--start-method", default="spawn", choices=("spawn", "fork", "forkserver"))
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args.dir, args.processes, args.threads, args.records, args.max_bytes, args.start_method)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m safelog``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="safelog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))
