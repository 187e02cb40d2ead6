"""The one view of the example: log the request's id, answer with it."""

import logging

from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)


def log_request(request: HttpRequest) -> HttpResponse:
    rid = request.headers.get("X-Request-ID", "-")
    log.info("request id=%s", rid)
    return HttpResponse(rid, content_type="text/plain")
