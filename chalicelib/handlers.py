"""Glue between Chalice's objects and the services: app.py stays wiring only."""
from __future__ import annotations

import os
from typing import Optional
from urllib.parse import parse_qs

from chalice import Response

from . import webhooks
from .observability import contained, count, flush, logger
from .runtime import answering, default_runtime


def _in_time(request):
    """The request's AWS calls end in time for its own answer (runtime.answering)."""
    return answering(_time_left(request.lambda_context))


def _reply(request, receive) -> Response:
    logger.set_correlation_id(request.context.get("requestId"))
    with _in_time(request):
        reply = receive(request.headers, request.raw_body or b"", default_runtime())
    if reply.status >= 400:
        logger.warning("webhook rejected", extra={"path": request.path, "status": reply.status,
                                                   "error": reply.body.get("error")})
    return Response(body=reply.body, status_code=reply.status,
                    headers={"Content-Type": "application/json", **reply.headers})


@contained
def rf_webhook(request) -> Response:
    from .services import ingest  # the webhooks' own: off the worker's init (the API function's warms it)

    response = _reply(request, ingest.receive_rf_join)
    if response.status_code == 202:  # the dashboard's "joins received" (EMF: a log line, no AWS call)
        count("JoinsReceived")
        flush()
    return response


@contained
def intercom_webhook(request) -> Response:
    if request.method == "HEAD":  # Intercom checks the URL when it is registered
        return Response(body="", status_code=200)
    from .services import ingest

    return _reply(request, ingest.receive_intercom)


@contained
def method_not_allowed(request, allowed: str) -> Response:
    """A webhook URL asked with another method: docs/setup.md's JSON error, with `Allow`. app.py routes
    every other method here, so that API Gateway (which answers a method no route has with its own
    403 "Missing Authentication Token") and the local server (Chalice's 405 body) answer alike."""
    logger.set_correlation_id(request.context.get("requestId"))
    logger.warning("webhook rejected", extra={"path": request.path, "status": 405, "error": "method_not_allowed"})
    body = {"error": "method_not_allowed", "message": f"{request.method} is not accepted here: use {allowed}"}
    return Response(body="" if request.method == "HEAD" else body, status_code=405,
                    headers={"Content-Type": "application/json", "Allow": allowed})


def _place(request):
    """Where the browser reaches this API: the forwarded scheme (http or https; anything else is taken
    for https), the Host, and the stage's path (API Gateway's context path holds `/api/...`; the local
    server's has no stage)."""
    from .services.oauth import Place

    headers = {k.lower(): v for k, v in (request.headers or {}).items()}
    scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip().lower()
    scheme = scheme if scheme in ("http", "https") else "https"
    path = (request.context or {}).get("path") or request.path
    prefix = path[: path.rfind("/oauth/intercom/")] if "/oauth/intercom/" in path else ""
    return Place(f"{scheme}://{headers.get('host', 'localhost')}{prefix}", scheme == "https")


def _html(page) -> Response:
    from .services.oauth import policy

    return Response(body=page.html, status_code=page.status,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                             "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                             "X-Content-Type-Options": "nosniff", "Content-Security-Policy": policy(), **page.headers})


def _oauth_page(request, make) -> Response:
    """`make(runtime)`'s page; when the bridge's own storage (the table, the secret store) fails or does not answer
    in time meanwhile, the page that says so (not Chalice's bare JSON 500): that is before anything is connected
    (the callback's connect says its own failures)."""
    from .services import oauth

    logger.set_correlation_id(request.context.get("requestId"))
    try:
        with _in_time(request):
            page = make(default_runtime())
    except Exception:  # noqa: BLE001 - logged, masked; the admin is asked to reload
        logger.exception("OAuth page failed", extra={"path": request.path})
        page = oauth.unavailable()
    return _html(page)


@contained
def oauth_start(request) -> Response:
    from .services import oauth

    ticket = (request.query_params or {}).get("ticket")
    return _oauth_page(request, lambda rt: oauth.start(rt, _place(request), ticket if isinstance(ticket, str) else None))


@contained
def oauth_begin(request) -> Response:
    """The start page's "Continue to Intercom" button: a form holding the ticket. Any other body is read
    as no ticket, and answered the start's 403 page."""
    from .services import oauth

    ticket = _form_field((request.headers or {}).get("content-type"), request.raw_body or b"", "ticket")
    return _oauth_page(request, lambda rt: oauth.begin(rt, _place(request), ticket))


def _form_field(content_type: Optional[str], raw: bytes, name: str) -> Optional[str]:
    """The one value of `name` in a form-encoded body; None for any other body, or a name given twice."""
    if webhooks.media_type(content_type) != webhooks.FORM:
        return None
    try:
        values = parse_qs(raw.decode("ascii"), max_num_fields=10).get(name)
    except (UnicodeDecodeError, ValueError):      # not ASCII (a form's bytes are escaped), or too many fields
        return None
    return values[0] if values and len(values) == 1 else None


@contained
def oauth_callback(request) -> Response:
    from .services import oauth

    headers = {k.lower(): v for k, v in (request.headers or {}).items()}
    query = {k: v for k, v in (request.query_params or {}).items() if isinstance(v, str)}
    return _oauth_page(request, lambda rt: oauth.callback(rt, query, headers.get("cookie"), _place(request),
                                                          _time_left(request.lambda_context)))


def _time_left(context):
    """The Lambda's time left, in ms, as its context says (none: no limit)."""
    return getattr(context, "get_remaining_time_in_millis", None) or (lambda: 10**9)


@contained
def sqs_batch(event) -> dict:
    from .services.worker import handle_batch  # the worker's imports stay off the webhook path

    context = getattr(event, "context", None)
    logger.set_correlation_id(getattr(context, "aws_request_id", None))
    try:
        return handle_batch([record.to_dict() for record in event], default_runtime(), _time_left(context))
    finally:
        flush()


def prewarm() -> Optional[str]:
    """In a Lambda container (and only there), the init phase makes what this function's first
    invocation needs (Runtime.warm). Chalice names the functions <app>-<stage>, -worker, -reconcile.
    A failure is logged, never raised: the invocation then makes them itself."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    if not name:
        return None
    function = next((f for f in ("worker", "reconcile") if name.endswith(f"-{f}")), "api")
    try:
        default_runtime().warm(function)
    except Exception:  # noqa: BLE001 - e.g. a missing variable: the first invocation says so
        logger.exception("prewarm failed", extra={"function": name})
    return function


@contained
def reconcile(event) -> dict:
    from .services.reconcile import reconcile as run

    context = getattr(event, "context", None)
    logger.set_correlation_id(getattr(context, "aws_request_id", None))
    try:
        with answering(_time_left(context)):     # a hung AWS call fails the run, logged, before its timeout
            return run(default_runtime())
    finally:
        flush()


prewarm()
