"""Helpers for the data tests: small real IDX sets on disk and a real HTTP server on loopback."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np

from cnnlab.data.idx import write_idx
from cnnlab.data.sources import IDX_NAMES


def write_idx_set(folder: Path, n_train: int = 50, n_test: int = 20, side: int = 8,
                  num_classes: int = 10, seed: int = 0, gz: bool = True) -> dict[str, np.ndarray]:
    """Write the four MNIST-family files with random content; return name -> array."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, num_classes, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, num_classes, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / (name if gz else name.removesuffix(".gz")), array)
    return arrays


def sha256s(folder: Path) -> dict[str, str]:
    """File name -> hex SHA-256 for every file in folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


class _DroppingHandler(http.server.SimpleHTTPRequestHandler):
    """Announces the full Content-Length, sends half the body, then closes the connection."""

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class _QuietDroppingHandler(_DroppingHandler, _QuietHandler):
    pass


@contextlib.contextmanager
def serve(root: Path, drop_mid_body: bool = False):
    """Serve root over HTTP on 127.0.0.1 in a thread; yield the base URL."""
    handler = _QuietDroppingHandler if drop_mid_body else _QuietHandler
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (the port was bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
