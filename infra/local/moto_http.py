"""moto's server application on HTTP/1.1 connections that are kept open, as AWS's endpoints keep them.

moto's ThreadedMotoServer serves on werkzeug's development server, which closes the connection after every
answer ("Connection: close": its handler cannot drain a request it did not read). Every AWS call of every local
stack then opened a new TCP connection, and the server started a new thread for it: about a fifth of each
call's time, on a stack where a test makes hundreds of calls. Here a connection serves request after request:
botocore's pool keeps it, as it keeps its connections to AWS.

The application is moto's own (DomainDispatcherApplication, the one ThreadedMotoServer serves); only the
transport differs. A request is read whole (Content-Length, or chunked) before moto sees it: one whose client
closed the connection before its body's end (a worker killed mid-send) is dropped, never applied cut short. The
answer is buffered and sent with its Content-Length in one write on a socket with Nagle's algorithm off, and an
exception escaping the application answers 500 instead of dropping the connection. A connection idle for IDLE_SECONDS is closed, as
AWS closes idle ones; botocore opens another.
"""
from __future__ import annotations

import io
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from .http import read_chunked, read_exactly

log = logging.getLogger(__name__)

IDLE_SECONDS = 300.0
_SKIPPED = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True     # TCP_NODELAY (StreamRequestHandler.setup)
    wbufsize = -1                      # buffered: headers and body leave in one send at the flush
    timeout = IDLE_SECONDS
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (moto's access log is quiet too)
        pass

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or self.server.stopped:     # (stopped: as a stopped server, no answer)
                self.close_connection = True
                return
            if not self.parse_request():       # (it answered the error itself)
                return
            self._answer(self._body())
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` (botocore's, for S3 uploads): the interim answer leaves now, not with the final one
        (the writer is buffered), or the client waits a second before sending its body."""
        self.send_response_only(100)
        self.end_headers()
        self.wfile.flush()
        return True

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return read_chunked(self.rfile)
        return read_exactly(self.rfile, int(self.headers.get("Content-Length") or 0))

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query, "REQUEST_URI": self.path, "RAW_URI": self.path,
            "SERVER_NAME": str(host), "SERVER_PORT": str(port), "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0], "REMOTE_PORT": self.client_address[1],
            "CONTENT_LENGTH": str(len(body)), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
                continue
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _answer(self, body: bytes) -> None:
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            started.update(status=status, headers=headers)
            return chunks.append

        try:
            result: Iterable[bytes] = self.server.app(self._environ(body), start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("moto failed serving %s %s", self.command, self.path)
            started, chunks = {"status": "500 Internal Server Error", "headers": []}, [b"moto failed"]
        data = b"".join(chunks)
        code, _, reason = started["status"].partition(" ")
        self.send_response(int(code), reason or None)
        length = str(len(data))
        for name, value in started["headers"]:
            if name.lower() == "content-length" and self.command == "HEAD":
                length = value           # a HEAD's: the size of what a GET would send (HeadObject's ContentLength)
            elif name.lower() not in _SKIPPED:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False       # stop() does not wait for kept connections their clients still hold
    request_queue_size = 128     # werkzeug's: many workers connecting at once are not held back by a queue of 5
    stopped = False              # stop() was called: a kept connection's next request is not answered
    app: Any


class KeepAliveMotoServer:
    """ThreadedMotoServer's interface (start, get_host_and_port, stop) on kept-alive connections."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self._server = _Server((ip_address, port), _Handler)
        self._server.app = DomainDispatcherApplication(create_backend_app)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="moto")
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.stopped = True
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
