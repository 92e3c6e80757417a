"""A loopback HTTP file server (stdlib http.server in a thread) for AIA caIssuers tests:
fixed bodies per path, optionally without Content-Length (close-delimited, so a client must
cap while streaming), and a body generator for huge responses."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


@dataclass(frozen=True)
class Route:
    body: bytes | Callable[[], Iterator[bytes]]
    content_type: str = "application/octet-stream"
    send_length: bool = True
    status: int = 200


class _Handler(BaseHTTPRequestHandler):
    # replaced per server by serve(), which subclasses with its own dict and list
    routes: ClassVar[dict[str, Route]] = {}
    hits: ClassVar[list[str]] = []
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.hits.append(self.path)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        if isinstance(route.body, bytes):
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)
            return
        self.end_headers()
        try:
            for chunk in route.body():
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its cap: expected

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class FileServer:
    port: int
    hits: list[str]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serve(routes: dict[str, Route]) -> Iterator[FileServer]:
    handler = type("Handler", (_Handler,), {"routes": routes, "hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(int(server.server_address[1]), handler.hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
