"""Settings of a minimal Django project whose ``LOGGING`` goes through safelog.

Run it with gunicorn (many worker processes, one log)::

    cd config-examples/django_project && gunicorn -c ../gunicorn.conf.py mysite.wsgi

or with ``python manage.py runserver``.

Traps avoided:
- ``disable_existing_loggers: False``. Django applies ``LOGGING`` when it starts, which under
  gunicorn is after gunicorn configured ``gunicorn.error``/``gunicorn.access``; the default
  (True) would disable those loggers (and any module logger created at import), silently.
- Handlers are opened where ``LOGGING`` is applied: in every worker, or once in the gunicorn
  master with ``--preload``, before the workers are forked. safelog reopens its file and lock
  file in each forked worker, so both ways are safe.
- ``runserver`` autoreloads by default: a watcher process and a serving child both load these
  settings. With ``flock`` both append to one file safely; with ``per-process`` only processes
  that actually log create a shard.
"""

import os

SECRET_KEY = "example-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "mysite.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
WSGI_APPLICATION = "mysite.wsgi.application"

LOG_DIR = os.environ.get("LOG_DIR", "logs")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "app": {
            "class": "safelog.SafeFileHandler",
            "filename": os.path.join(LOG_DIR, "app.log"),
            # flock: every worker appends to one file; per-process: one shard per worker,
            # joined by `safelog merge`.
            "strategy": os.environ.get("SAFELOG_STRATEGY", "flock"),
            "max_bytes": os.environ.get("LOG_MAX_BYTES", "10 MB"),
            "backup_count": int(os.environ.get("LOG_BACKUPS", "10")),
            "formatter": "plain",
        },
    },
    "root": {"level": "INFO", "handlers": ["app"]},
    # Django's own loggers propagate to root, so request errors land in app.log as well.
}
