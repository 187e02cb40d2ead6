"""Plain ``logging.config.dictConfig`` with a Python dict: four processes share one rotating log.

Run it from anywhere::

    python config-examples/logging_dict.py          # writes logs/app.log (+ .1, .2 ... backups)

The only safelog-specific line is the handler's ``class``; the keyword names are the stdlib's
(``maxBytes``/``backupCount`` work too), plus ``strategy``.

Trap avoided: each child below is started with the ``spawn`` method, so it imports this module
and configures logging itself. With ``fork`` children inherit the parent's handler instead; both
work, because safelog reopens its files and lock in a forked child (a lock descriptor shared
across ``fork()`` would not exclude anything).
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os

LOG_DIR = os.environ.get("LOG_DIR", "logs")

LOGGING = {
    "version": 1,
    # Keep loggers that libraries created at import time (before this call) working.
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "file": {
            "class": "safelog.SafeFileHandler",
            "filename": os.path.join(LOG_DIR, "app.log"),
            # flock: every process appends to the same file under a lock file (app.log.lock).
            # per-process: every process writes its own shard; `safelog merge` joins them.
            "strategy": os.environ.get("SAFELOG_STRATEGY", "flock"),
            "max_bytes": os.environ.get("LOG_MAX_BYTES", "10 MB"),
            "backup_count": int(os.environ.get("LOG_BACKUPS", "10")),
            "formatter": "plain",
        },
    },
    "root": {"level": "INFO", "handlers": ["file"]},
}


def work(worker: int, count: int) -> None:
    logging.config.dictConfig(LOGGING)
    log = logging.getLogger("example")
    for i in range(count):
        log.info("record id=w%d-%06d", worker, i)


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    count = int(os.environ.get("RECORDS", "10000"))
    procs = [ctx.Process(target=work, args=(n, count)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"wrote {4 * count} records to {os.path.join(LOG_DIR, 'app.log')} and its backups")


if __name__ == "__main__":
    main()
