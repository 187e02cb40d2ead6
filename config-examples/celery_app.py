"""Celery worker logging through safelog.

    cd config-examples && celery -A celery_app worker --pool prefork --concurrency 4

Celery normally installs its own handlers on the root logger when a worker starts ("hijacks"
it). Two ways to keep yours, both shown here:
- connect a receiver to the ``setup_logging`` signal: Celery then skips its own logging setup
  entirely and the receiver configures logging (used below);
- or set ``worker_hijack_root_logger = False`` and configure logging yourself at import time.

Traps avoided:
- The prefork pool forks its children after the worker configured logging, so every child
  inherits the handler. safelog reopens its file and lock file in each forked child; a stdlib
  ``RotatingFileHandler`` would rotate in every child independently and lose records.
- ``disable_existing_loggers: False``: ``celery.*`` and task module loggers exist before the
  config is applied and must stay enabled.
- ``worker_redirect_stdouts`` (on by default) sends ``print()`` output of tasks to a logger at
  WARNING, so it ends up in the same file, one record per write.

The broker defaults to kombu's ``filesystem://`` transport (messages are files in
``CELERY_FS_BROKER_DIR``, default ``broker/``), so the example runs without a broker server; set
``CELERY_BROKER_URL`` (e.g. ``redis://localhost:6379/0``) for a real deployment. Queue work with::

    python -c "from celery_app import process; [process.delay(f'item-{i}') for i in range(100)]"
"""

from __future__ import annotations

import logging
import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

LOG_DIR = os.environ.get("LOG_DIR", "logs")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(process)d %(levelname)s %(processName)s %(name)s: %(message)s"
        },
    },
    "handlers": {
        "file": {
            "class": "safelog.SafeFileHandler",
            "filename": os.path.join(LOG_DIR, "worker.log"),
            "strategy": os.environ.get("SAFELOG_STRATEGY", "flock"),
            "max_bytes": os.environ.get("LOG_MAX_BYTES", "10 MB"),
            "backup_count": int(os.environ.get("LOG_BACKUPS", "10")),
            "formatter": "plain",
        },
    },
    "root": {"level": "INFO", "handlers": ["file"]},
}

app = Celery("celery_app", broker=os.environ.get("CELERY_BROKER_URL", "filesystem://"))
if app.conf.broker_url.startswith("filesystem://"):
    _folder = os.environ.get("CELERY_FS_BROKER_DIR", "broker")
    os.makedirs(_folder, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": _folder,
        "data_folder_out": _folder,
        "control_folder": os.path.join(_folder, "control"),
    }
# Belt and braces: even if the signal receiver below were not connected (another module
# imported first), Celery would leave the root logger's handlers alone.
app.conf.worker_hijack_root_logger = False

log = logging.getLogger(__name__)


@setup_logging.connect
def configure_logging(**kwargs: Any) -> None:
    logging.config.dictConfig(LOGGING)


@app.task
def process(item_id: str) -> str:
    log.info("processed item id=%s", item_id)
    return item_id
