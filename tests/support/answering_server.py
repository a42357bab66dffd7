"""A local HTTP server that answers every GET itself with one status, JSON body and headers (what it saw,
the request lines' paths, is kept): a vendor or a proxy in a test, on a real socket. And one that never answers,
and one that passes requests on but never answers those a test picks."""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlsplit


@contextlib.contextmanager
def answering(status: int, body: Any, headers: Optional[dict] = None) -> Iterator[tuple[str, list[str]]]:
    """Yields the server's URL and the paths it was asked for."""
    seen: list[str] = []
    raw = json.dumps(body).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)                       # through a proxy: the absolute URL
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(raw)),
                                **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that takes every connection and never answers (a hung endpoint): its URL, and the connections
    it took. Closed at the end, so that a client still waiting is let go."""
    taken: list[socket.socket] = []
    server, done = socket.create_server(("127.0.0.1", 0)), threading.Event()
    server.settimeout(0.05)

    def take() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                taken.append(server.accept()[0])
    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", taken
    finally:
        done.set()
        thread.join()
        server.close()
        for connection in taken:
            connection.close()


@contextlib.contextmanager
def passing(upstream: str, hangs: Callable[[str, bytes], bool]) -> Iterator[str]:
    """A server that passes each POST on to `upstream` (say, moto) and its answer back, except those for which
    `hangs(X-Amz-Target, body)` is true: it takes them and never answers (AWS hung for some calls only). Its URL.
    Closed at the end, so that a client still waiting is let go."""
    where, done = urlsplit(upstream), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if hangs(self.headers.get("X-Amz-Target", ""), body):
                done.wait()
                return
            upstream_ = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
            upstream_.request("POST", self.path, body, dict(self.headers))
            answer = upstream_.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream_.close()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        done.set()
        server.shutdown()
        server.server_close()
