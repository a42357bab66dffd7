"""Glue between Chalice's objects and the services: app.py stays wiring only."""
from __future__ import annotations

from chalice import Response

from .observability import logger, metrics
from .services.ingest import receive_rf_join
from .services.runtime import default_runtime


def rf_webhook(request) -> Response:
    rt = default_runtime()
    logger.set_correlation_id(request.context.get("requestId"))
    reply = receive_rf_join(request.headers, request.raw_body or b"", rt)
    if reply.status >= 400:
        logger.warning("rf webhook rejected", extra={"status": reply.status, "error": reply.body.get("error")})
    return Response(body=reply.body, status_code=reply.status, headers={"Content-Type": "application/json"})


def sqs_batch(event) -> dict:
    from .services.worker import handle_batch  # the worker's imports stay off the webhook path

    context = getattr(event, "context", None)
    logger.set_correlation_id(getattr(context, "aws_request_id", None))
    try:
        return handle_batch([record.to_dict() for record in event], default_runtime())
    finally:
        metrics.flush_metrics()
