"""A local HTTP server that answers every GET itself with one status, JSON body and headers (what it saw,
the request lines' paths, is kept): a vendor or a proxy in a test, on a real socket."""
from __future__ import annotations

import contextlib
import json
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
