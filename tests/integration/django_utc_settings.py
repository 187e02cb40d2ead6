"""The example Django project's settings, with its time zone pinned to UTC for the tests.

Django sets ``TZ`` to ``TIME_ZONE`` (default ``America/Chicago``) and calls ``time.tzset()`` in
every process that loads its settings. Log lines' asctime would then change zone in the middle
of a worker's output (gunicorn logs "Booting worker" before the app is loaded), and the
time-order check of merged logs reads asctime. The LOGGING under test is the example's own.
"""

from mysite.settings import *  # type: ignore[import-not-found]  # noqa: F403

TIME_ZONE = "UTC"
