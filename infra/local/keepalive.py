"""A WSGI application served on HTTP/1.1 connections that are kept open, as AWS's endpoints and the vendors' APIs keep them.

werkzeug's development server (moto's ThreadedMotoServer, and the simulators of Intercom and Referral Factory, served
on it) closes the connection after every answer ("Connection: close": its handler cannot drain a request it did not
read). Every call then opened a new TCP connection, and the server started a new thread for it: about a fifth of
each call's time, on a stack where a test makes hundreds of calls. Here a connection serves request after request:
botocore's and requests' pools keep it, as they keep their connections to AWS and to the vendors.

A request is read whole (Content-Length, or chunked) before the application sees it: one whose client closed the
connection before its body's end (a worker killed mid-send) is dropped, never applied cut short. The answer is
buffered and sent with its Content-Length in one write on a socket with Nagle's algorithm off. An exception escaping
the application answers 500 instead of dropping the connection, except a ConnectionError: the application cut the
connection itself (a simulator losing an answer after applying the request shuts down `environ["werkzeug.socket"]`,
the connection's socket, as werkzeug's server gives it) and nothing more is sent on it, nor read from it. A
connection idle for IDLE_SECONDS is closed, as AWS closes idle ones; the client opens another. stop() closes the
listening socket and every connection kept open (the client's pool sees them closed, as when a server goes away);
a request in flight then is not answered.
"""
from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from .http import ClientGoneQuietly, read_chunked, read_exactly

log = logging.getLogger(__name__)

IDLE_SECONDS = 300.0
_SKIPPED = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True     # TCP_NODELAY (StreamRequestHandler.setup)
    wbufsize = -1                      # buffered: headers and body leave in one send at the flush
    timeout = IDLE_SECONDS
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet, as moto's access log and the simulators')
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The answer's Date: the server's clock (a simulator's is its own, as a vendor's is)."""
        return super().date_time_string(self.server.clock() if timestamp is None else timestamp)

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
            "wsgi.multiprocess": False, "wsgi.run_once": False, "werkzeug.socket": self.connection,
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
        except ConnectionError:
            raise                        # the application cut the connection (an answer lost on purpose): no answer
        except Exception:
            log.exception("%s failed serving %s %s", self.server.name, self.command, self.path)
            started = {"status": "500 Internal Server Error", "headers": []}
            chunks = [f"{self.server.name} failed".encode()]
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


class _Server(ClientGoneQuietly, ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False       # stop() does not wait for the threads of the connections it closes
    request_queue_size = 128     # werkzeug's: many workers connecting at once are not held back by a queue of 5
    stopped = False              # stop() was called: a kept connection's next request is not answered
    app: Any
    name: str
    clock: Callable[[], float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Close every connection still open: each client sees its end closed, each handler's read ends."""
        with self._connections_lock:
            kept = list(self.connections)
        for connection in kept:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass                     # (its client closed it already)


class KeepAliveServer:
    """A WSGI application on kept-alive connections: ThreadedMotoServer's interface (start, get_host_and_port, stop).
    `clock` dates the answers (their Date header); `name` names the server in its thread and in its 500s;
    `poll_interval`: how long stop() may wait for the serving loop to notice (seconds)."""

    def __init__(self, app: Any, ip_address: str = "127.0.0.1", port: int = 0, *, name: str = "wsgi",
                 clock: Callable[[], float] = time.time, poll_interval: float = 0.5) -> None:
        self._server = _Server((ip_address, port), _Handler)
        self._server.app, self._server.name, self._server.clock = app, name, clock
        self._poll_interval = poll_interval
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": self._poll_interval},
                                        daemon=True, name=self._server.name)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._server.cut_connections()
        if self._thread is not None:
            self._thread.join(5)
