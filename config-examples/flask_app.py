"""A Flask app whose logging goes through safelog.

Stand-alone (one process, Flask's development server)::

    cd config-examples && flask --app flask_app run

Under gunicorn, many worker processes share the same files (see gunicorn.conf.py)::

    cd config-examples && gunicorn -c gunicorn.conf.py flask_app:app

Traps avoided:
- Flask's documentation asks for logging to be configured *before* the app object exists:
  ``app.logger`` installs Flask's own stderr handler when, at that moment, no handler is
  configured for it. Configured first, the records go to safelog only.
- ``disable_existing_loggers: False``: under gunicorn this module is imported after gunicorn has
  configured ``gunicorn.error`` and ``gunicorn.access``; the default (True) would switch those
  loggers off and the access log would stop without an error.
- ``--preload``: this module (and so the handler) is then loaded in the gunicorn master, before
  it forks the workers. safelog reopens its file and lock file in every forked child; a lock
  descriptor inherited through ``fork()`` would not exclude the other workers.
- ``flask run --reload`` (and ``debug=True``) runs the app in a reloader child while the parent
  watches files; both import this module. With ``flock`` both append safely to one file; with
  ``per-process`` only a process that logs creates a shard, so the watcher leaves none behind.
"""

from __future__ import annotations

import logging.config
import os

from flask import Flask, request

LOG_DIR = os.environ.get("LOG_DIR", "logs")

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "app": {
                "class": "safelog.SafeFileHandler",
                "filename": os.path.join(LOG_DIR, "app.log"),
                "strategy": os.environ.get("SAFELOG_STRATEGY", "flock"),
                "max_bytes": os.environ.get("LOG_MAX_BYTES", "10 MB"),
                "backup_count": int(os.environ.get("LOG_BACKUPS", "10")),
                "formatter": "plain",
            },
        },
        "root": {"level": "INFO", "handlers": ["app"]},
    }
)

app = Flask(__name__)


@app.get("/log")
def log_request() -> str:
    # The id a proxy or client put on the request; logging it is what makes every request
    # traceable (and what the integration tests count).
    rid = request.headers.get("X-Request-ID", "-")
    app.logger.info("request id=%s", rid)
    return rid
