"""A local HTTP file server for the download tests: ``127.0.0.1``, a thread, HTTP Range requests.

>>> with FileServer({"data.tar.gz": blob}) as srv:
...     fetch_asset("spin-data", out, urls=[srv.url("data.tar.gz")])

Files are served from memory by path. ``drop_after[path] = n`` makes the next request of ``path``
send only ``n`` bytes of its body and then close the connection (a download cut in the middle);
``ignore_range = True`` answers every request with the whole file (a server without Range support).
``requests`` records ``(path, Range header or None)`` of every GET.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FileServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FileServer:
    """Serve ``files`` (path -> bytes) on ``http://127.0.0.1:<port>/`` from a background thread."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        self.drop_after: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>/``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def url(self, path: str) -> str:
        """The URL of a served path."""
        return self.base + path.lstrip("/")

    def start(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0].lstrip("/")
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append((path, rng))
                    drop = server.drop_after.pop(path, None)
                body = server.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                n = len(body)
                start, end = 0, n - 1
                status = 200
                if rng and not server.ignore_range and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start = int(a) if a else 0
                    end = min(int(b), n - 1) if b else n - 1
                    if start >= n:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{n}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                chunk = body[start : end + 1]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{n}-{hash(body) & 0xFFFFFFFF:x}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{n}")
                self.end_headers()
                if drop is not None:
                    chunk = chunk[:drop]
                # counted before writing: a client that has read every byte may check the count at
                # once, before this thread would get past the write
                with server._lock:
                    server.bytes_sent += len(chunk)
                self.wfile.write(chunk)
                self.wfile.flush()
                if drop is not None:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
