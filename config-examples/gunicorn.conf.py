"""gunicorn settings: error log, access log and application log all written through safelog.

    cd config-examples && gunicorn -c gunicorn.conf.py flask_app:app
    cd config-examples/django_project && gunicorn -c ../gunicorn.conf.py mysite.wsgi

Command-line options override what is set here (``-w 8 -k gthread --threads 4 --preload``).
The environment variables only exist so the test-suite can run this very file.

Traps avoided:
- ``logconfig_dict`` handlers are created in the gunicorn *master*, then the workers are forked.
  A stdlib ``RotatingFileHandler`` would then rotate in every worker independently (records lost,
  workers writing into renamed backups); safelog reopens its file and lock file in each child
  and rotates once, under the lock, for all of them. ``--preload`` does the same to the handlers
  your app configures at import time (Django ``LOGGING``, Flask ``dictConfig``).
- ``disable_existing_loggers: False``, here and in the app's own config: a later ``dictConfig``
  with the default (True) disables ``gunicorn.access``/``gunicorn.error`` and the access log
  stops without an error.
- A later ``dictConfig`` (Django's ``LOGGING``, a Flask app's) also *closes* the handlers created
  here, while they stay attached to the gunicorn loggers. Like ``logging.FileHandler``, a closed
  safelog handler in append mode reopens on its next record, so nothing is lost.
- ``kill -USR1`` (what logrotate's ``postrotate`` sends) makes gunicorn reopen its
  ``logging.FileHandler`` objects; safelog's handlers need no signal: each writer notices within
  a second that the path now names another file and reopens it. Prefer safelog's own rotation
  (``max_bytes``) to logrotate, and never use logrotate's ``copytruncate``, which loses records.
- ``kill -HUP`` re-reads this file in the master and replaces the workers gracefully; old and
  new workers write the same files at the same time, which ``flock`` (or ``per-process``) makes
  safe.
- ``--reload`` restarts workers when code changes; every new worker just reopens the files.
"""

from __future__ import annotations

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "4"))

LOG_DIR = os.environ.get("LOG_DIR", "logs")
# "flock": all workers append to one file. "per-process": one shard per worker process, joined
# later by `safelog merge`; the fastest, and the one for network file systems.
STRATEGY = os.environ.get("SAFELOG_STRATEGY", "flock")
MAX_BYTES = os.environ.get("LOG_MAX_BYTES", "10 MB")
BACKUPS = int(os.environ.get("LOG_BACKUPS", "10"))


def _file(name: str, formatter: str = "plain") -> dict[str, object]:
    return {
        "class": "safelog.SafeFileHandler",
        "filename": os.path.join(LOG_DIR, name),
        "strategy": STRATEGY,
        "max_bytes": MAX_BYTES,
        "backup_count": BACKUPS,
        "formatter": formatter,
    }


# %(M)s is the request time in milliseconds; the X-Request-ID header ties a line of access.log to
# the lines the application wrote for the same request in app.log.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s "%({x-request-id}i)s" %(M)sms'

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"},
        "access": {"format": "%(asctime)s %(process)d %(message)s"},
    },
    "handlers": {
        "app": _file("app.log"),
        "error": _file("error.log"),
        "access": _file("access.log", "access"),
    },
    # Everything the application logs (root) goes to app.log; gunicorn's own loggers get their
    # own files and do not propagate, so each file has one line format.
    "root": {"level": "INFO", "handlers": ["app"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}
