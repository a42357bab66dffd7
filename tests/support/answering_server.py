"""A local HTTP server that answers every GET itself with one status, JSON body and headers (what it saw,
the request lines' paths, is kept): a vendor or a proxy in a test, on a real socket. And one that never answers."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Optional


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
