"""A job run by cron (or a systemd timer): one fresh log file per run, the earlier runs kept as
backups, also when a run fans out to worker processes.

    python config-examples/cron_job.py      # logs/job.log; the previous run's is job.log.1

``rotate_on_start=True`` rotates a non-empty log once when the application starts: the first
write of each run moves the previous run's file to ``job.log.1``. The pool's workers belong to
the run that started them (they inherit its ``SAFELOG_START``), so they never rotate the
file this run is writing. The rule for what counts as a start is in docs/rotation.md.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os

LOG_DIR = os.environ.get("LOG_DIR", "logs")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "file": {
            "class": "safelog.SafeFileHandler",
            "filename": os.path.join(LOG_DIR, "job.log"),
            "strategy": "flock",
            "rotate_on_start": True,
            "backup_count": 30,  # the last 30 runs
            "formatter": "plain",
        },
    },
    "root": {"level": "INFO", "handlers": ["file"]},
}


def setup() -> None:
    logging.config.dictConfig(LOGGING)


def step(n: int) -> int:
    logging.getLogger("job").info("step %d done", n)
    return n


def main() -> None:
    os.makedirs(LOG_DIR, exist_ok=True)
    setup()
    logging.getLogger("job").info("run started")
    with multiprocessing.get_context("spawn").Pool(2, initializer=setup) as pool:
        pool.map(step, range(10))
    logging.getLogger("job").info("run finished")


if __name__ == "__main__":
    main()
