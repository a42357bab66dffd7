"""Serve a Chalice app over real HTTP, in a background thread.

Built on ``chalice.local`` (the machinery behind ``chalice local``):
LocalDevServer + LocalGateway + ChaliceRequestHandler on a ThreadingMixIn
HTTPServer, so routing, path/query parameters, status codes, headers, CORS
preflights, the 403 "Missing Authentication Token" for unknown routes and the
raw body behave like ``chalice local``.  On top of that:

* HEAD responses carry the headers (incl. Content-Length) but no body, as API
  Gateway sends them (chalice local writes the body, which corrupts keep-alive).
* ``Transfer-Encoding: chunked`` request bodies are decoded.
* An exception escaping the app (not a view error: Chalice turns those into a
  500 itself) becomes API Gateway's 502 ``{"message": "Internal server error"}``
  instead of a dropped connection.
* A response leaves in one write (headers and body buffered, flushed once), on a socket with
  Nagle's algorithm off. chalice local writes the headers and the body in two sends: a keep-alive
  client then waits for its own delayed ACK (~40 ms per request) before the body leaves, which
  made every local timing measure the TCP stack instead of the code.
* The per-request access log goes to the ``infra.local.http`` logger at DEBUG.
* ``app.current_request`` / ``app.lambda_context`` are made thread-local (as
  ``chalice local`` does), reading None outside a request; undone by stop().
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_MEMORY_SIZE, DEFAULT_LAMBDA_TIMEOUT
from chalice.local import ChaliceRequestHandler, LocalDevServer, ThreadedHTTPServer

log = logging.getLogger(__name__)

_BAD_GATEWAY_BODY = b'{"message": "Internal server error"}'


class ClientGoneQuietly:
    """A server mixin: a client gone before its answer was written (Ctrl-C of `make run`, a killed worker) is
    nothing to report, as werkzeug's server has it; any other error is socketserver's traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


class _ApiServer(ClientGoneQuietly, ThreadedHTTPServer):
    pass


def read_chunked(rfile: Any) -> bytes:
    """A `Transfer-Encoding: chunked` body, its trailers read and dropped. ConnectionError when the client closed
    the connection before the last chunk (killed mid-request): what came is not the request."""
    parts = []
    while True:
        line = rfile.readline(65537)
        if not line:
            raise ConnectionError("the client closed the connection in the middle of its request's body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):    # trailers, up to the blank line
                pass
            return b"".join(parts)
        parts.append(read_exactly(rfile, size))
        rfile.readline(65537)          # the CRLF after the chunk


def read_exactly(rfile: Any, size: int) -> bytes:
    """`size` bytes of a request's body; ConnectionError when the client closed the connection before sending them
    all (a buffered read returns what came before the end of the stream)."""
    data = rfile.read(size) if size else b""
    if len(data) < size:
        raise ConnectionError(f"the client closed the connection after {len(data)} of its body's {size} bytes")
    return data


class BridgeRequestHandler(ChaliceRequestHandler):
    """ChaliceRequestHandler with the fixes listed in the module docstring."""

    _response_started = False
    disable_nagle_algorithm = True   # TCP_NODELAY on every connection (StreamRequestHandler.setup)
    wbufsize = -1                    # buffered: handle_one_request flushes headers + body in one send

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._response_started = True
        super().send_response(code, message)

    def _parse_payload(self) -> tuple[dict[str, Any], bytes | None]:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
            headers = {
                k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"
            }
            headers["Content-Length"] = str(len(body))
            return headers, body or None
        return super()._parse_payload()

    def _read_chunked(self) -> bytes:
        return read_chunked(self.rfile)

    def _generic_handle(self) -> None:
        self._response_started = False
        try:
            super()._generic_handle()
        except ConnectionError:          # the client left in the middle of its request (read_chunked): nobody to answer
            self.close_connection = True
        except Exception:
            log.exception("unhandled error serving %s %s", self.command, self.path)
            if self._response_started:
                self.close_connection = True
                return
            self._send_http_response(
                502,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalServerErrorException"},
                _BAD_GATEWAY_BODY,
            )

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def _send_http_response_with_body(
        self, code: int, headers: dict[str, Any], body: str | bytes
    ) -> None:
        if self.command != "HEAD":
            super()._send_http_response_with_body(code, headers, body)
            return
        if not isinstance(body, bytes):
            body = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)


def _make_request_state_thread_local(app: Chalice) -> type:
    """Give ``app`` a private subclass whose current_request/lambda_context are
    thread-local; return the original class so it can be restored."""
    original = type(app)
    state = threading.local()

    def _prop(name: str) -> property:
        return property(
            lambda self: getattr(state, name, None),
            lambda self, value: setattr(state, name, value),
        )

    app.__class__ = type(
        f"ThreadLocal{original.__name__}",
        (original,),
        {"current_request": _prop("current_request"), "lambda_context": _prop("lambda_context")},
    )
    return original


class RunningServer:
    """A Chalice app being served; ``url`` has no trailing slash."""

    def __init__(self, app: Chalice, dev_server: LocalDevServer, original_cls: type | None) -> None:
        self.app = app
        self._dev_server = dev_server
        self._original_cls = original_cls
        self._installed_cls = type(app)
        host, port = dev_server.server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=dev_server.server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"http-{app.app_name}",
            daemon=True,
        )
        self._stopped = False

    def start(self) -> "RunningServer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._dev_server.server.shutdown()
        self._dev_server.server.server_close()
        self._thread.join(timeout)
        # Undo the thread-local subclass unless someone re-wrapped the app since.
        if self._original_cls is not None and type(self.app) is self._installed_cls:
            self.app.__class__ = self._original_cls

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer({self.url})"


def serve_app(
    chalice_app: Chalice,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: Config | None = None,
    stage: str = "dev",
    lambda_timeout: int = DEFAULT_LAMBDA_TIMEOUT,
    lambda_memory_size: int = DEFAULT_LAMBDA_MEMORY_SIZE,
    validate: bool = True,
) -> RunningServer:
    """Serve ``chalice_app`` on http://host:port (port 0 = a free port).

    Returns a started :class:`RunningServer` (``.url``, ``.stop()``; also a
    context manager).  ``validate`` runs the same route validation as
    ``chalice local``/``chalice deploy``.  Environment variables are not
    touched: set them (e.g. ``Resources.env()``) before serving.
    """
    if validate:
        from chalice.deploy.validate import validate_routes

        validate_routes(chalice_app.routes)
    if config is None:
        config = Config.create(
            chalice_stage=stage,
            app_name=chalice_app.app_name,
            lambda_timeout=lambda_timeout,
            lambda_memory_size=lambda_memory_size,
        )
    original_cls = _make_request_state_thread_local(chalice_app)
    try:
        dev_server = LocalDevServer(
            chalice_app,
            config,
            host,
            port,
            handler_cls=BridgeRequestHandler,
            server_cls=_ApiServer,
        )
    except BaseException:
        chalice_app.__class__ = original_cls
        raise
    return RunningServer(chalice_app, dev_server, original_cls).start()


__all__ = ["serve_app", "RunningServer", "BridgeRequestHandler"]
