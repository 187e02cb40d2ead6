"""``logging.config.fileConfig`` with an INI file, then four processes log to one rotating file.

    python config-examples/fileconfig.py [config-examples/logging.ini]

``filename`` in the INI file is relative to the working directory.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def work(path: str, worker: int, count: int) -> None:
    # disable_existing_loggers=False: loggers made at import time by libraries keep working.
    logging.config.fileConfig(path, disable_existing_loggers=False)
    log = logging.getLogger("example")
    for i in range(count):
        log.info("record id=w%d-%06d", worker, i)


def main(argv: list[str]) -> int:
    path = argv[0] if argv else os.path.join(HERE, "logging.ini")
    count = int(os.environ.get("RECORDS", "10000"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=work, args=(path, n, count)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return max(p.exitcode or 0 for p in procs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
