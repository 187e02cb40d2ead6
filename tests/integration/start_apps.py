"""The WSGI and ASGI apps of test_start_servers.py: logging configured at import, in the process
that imports them (the gunicorn master with --preload, else each worker), with rotate_on_start.
Each process logs one boot line when it imports the app and one line per request."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import safelog

log = logging.getLogger("startapp")
_handler = safelog.SafeFileHandler(
    os.path.join(os.environ["LOG_DIR"], "app.log"), strategy="flock", backup_count=10, rotate_on_start=True
)
_handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
log.addHandler(_handler)
log.setLevel(logging.INFO)
log.propagate = False
log.info("boot %s", os.environ["RUN"])


def _rid(query: str) -> str:
    return parse_qs(query).get("id", ["?"])[0]


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    rid = _rid(environ.get("QUERY_STRING", ""))
    log.info("request id=%s", rid)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [rid.encode()]


async def asgi(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    rid = _rid(scope.get("query_string", b"").decode())
    log.info("request id=%s", rid)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": rid.encode()})
