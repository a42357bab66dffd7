"""moto's server application on HTTP/1.1 connections that are kept open, as AWS's endpoints keep them (keepalive.py).

moto's ThreadedMotoServer serves on werkzeug's development server, which closes the connection after every
answer: every AWS call of every local stack opened a new TCP connection, and the server started a new thread for it.
Here botocore's pool keeps its connections, as it keeps its connections to AWS. The application is moto's own
(DomainDispatcherApplication, the one ThreadedMotoServer serves); only the transport differs.
"""
from __future__ import annotations

from .keepalive import KeepAliveServer


class KeepAliveMotoServer(KeepAliveServer):
    """ThreadedMotoServer's interface (start, get_host_and_port, stop) on kept-alive connections."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        super().__init__(DomainDispatcherApplication(create_backend_app), ip_address, port, name="moto")
