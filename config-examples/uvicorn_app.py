"""A plain ASGI application (no framework) for uvicorn, logging through safelog.

    cd config-examples && uvicorn uvicorn_app:app --workers 2 --log-config uvicorn_log_config.yaml

Traps avoided:
- ``--workers N`` starts the workers with ``spawn``: nothing is inherited, each worker applies
  ``--log-config`` again and opens its own handlers. ``flock`` makes them share one file.
- ``--reload`` runs the app in a child process while the parent watches files; the parent
  applies ``--log-config`` too. Both may write; ``flock`` keeps that safe, and with
  ``per-process`` the watcher only gets a shard if it actually logs.
- The event loop: a ``flock`` record costs a few microseconds of file I/O in the loop thread
  (plus any wait for the lock held by another worker). Latency-sensitive services should hand
  the write to a worker thread; safelog's non-blocking mode (the ``nonblocking: true`` handler
  option, where your version has it) does exactly that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("uvicorn_app")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    rid = headers.get(b"x-request-id", b"-").decode("latin-1")
    log.info("request id=%s", rid)
    body = rid.encode("latin-1")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
