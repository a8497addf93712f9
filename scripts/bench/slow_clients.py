"""Connections that keep a server waiting (slowloris and friends), for the edge's tests and benchmark.
Loopback only; every one is closed when the context ends."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager, suppress


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@contextmanager
def slow_clients(url: str, count: int, kind: str, key: str):
    """`count` connections to `url`: "headers" sends a header line every second and never finishes them,
    "body" sends complete headers (with the gateway key `key`) and then a byte of its body a second, "idle"
    completes one request and then holds the kept-alive connection silent."""
    socks, stop = [], threading.Event()
    try:
        for _ in range(count):
            s = socket.create_connection(address(url), timeout=5)
            socks.append(s)
            if kind == "headers":
                s.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: gw\r\n")
            elif kind == "body":
                s.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                          b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 4000\r\n\r\n{")
            else:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
                s.recv(4096)

        def trickle():
            while not stop.wait(1.0):
                for s in socks:
                    with suppress(OSError):  # the server gave up on it: that is its right
                        s.sendall(b"X-Slow: 1\r\n" if kind == "headers" else b" " if kind == "body" else b"")

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        time.sleep(1.0)  # every slow connection is in the server's hands before the real requests start
        yield
    finally:
        stop.set()
        for s in socks:
            s.close()
