"""Keep-alive HTTP/1.1 connections to one upstream, on the standard library's http.client.

Why not requests or urllib3: against an instant upstream a JSON POST and its answer cost about 4x the
CPU through requests and 1.6x through urllib3 (scripts/bench/bench_clients.py: 820 / 360 / 220 us in one run).
On the gateway's path requests was a third of its own CPU per request. What the libraries
added that the gateway uses is small and lives here: a pool shared by threads, connect and read
timeouts, TLS with the certifi bundle, HTTP(S)_PROXY / NO_PROXY read once, errors as BackendError kinds.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from .. import fastjson
from .errors import BackendError

MAX_BODY_BYTES = 32 * 2**20  # an answer larger than this is not an answer
MAX_LINE_BYTES = 8 * 2**20   # one line of a stream
_ERROR_BODY_BYTES = 64 * 1024
# How long a finished stream waits for its body's end before dropping the connection instead: the
# terminator follows the last event at once from a healthy upstream; a reconnect costs more than this.
_FINISH_WAIT = 0.002
# How a reused connection fails when the upstream had closed it: no answer came on it.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class HttpPool:
    """Connections to `base_url` (scheme, host, port and path prefix), reused across threads."""

    def __init__(self, backend: str, base_url: str, *, connect_timeout: float, read_timeout: float,
                 headers: dict[str, str] | None = None, size: int = 128):
        self.backend, self.connect_timeout, self.read_timeout, self.size = backend, connect_timeout, read_timeout, size
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{backend}: not an http(s) URL: {base_url!r}")
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname, url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        base = {"User-Agent": "hybrid-ai-gateway", "Accept": "application/json", **(headers or {})}
        self._tunnel_headers: dict[str, str] | None = None
        self._proxy = _proxy_for(url)
        if self._proxy and not self.https:  # plain HTTP through a proxy: absolute URLs, auth on each request
            self.prefix = f"http://{url.netloc}{self.prefix}"
            base.update(_proxy_auth(self._proxy))
        elif self._proxy:                    # HTTPS through a proxy: a CONNECT tunnel, auth on the CONNECT
            self._tunnel_headers = _proxy_auth(self._proxy)
        self._headers = base
        self._json_headers = {**base, "Content-Type": "application/json"}
        self._tls = _tls_context() if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    def _connect(self) -> http.client.HTTPConnection:
        host, port = (self._proxy.hostname, self._proxy.port or 80) if self._proxy else (self.host, self.port)
        if self.https:
            conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout, context=self._tls)
            if self._proxy:
                conn.set_tunnel(self.host, self.port, headers=self._tunnel_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise BackendError("connect_timeout", f"{self.backend}: connect timeout") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS
            conn.close()
            raise BackendError("connection", f"{self.backend}: connection failed ({type(exc).__name__})") from exc
        # Headers and body go out in two writes: without this, Nagle's algorithm can hold the body back
        # until the upstream acknowledges the headers.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was reused from the pool."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(), False
            if not _dropped(conn):
                return conn, True
            conn.close()  # the upstream closed it while idle (its keep-alive timeout)

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------ requests
    def request(self, method: str, path: str, body: dict | None = None, read_timeout: float | None = None) -> Reply:
        """Send one request and read the status line and headers; the body is read through the Reply."""
        payload = None if body is None else fastjson.dumpb(body)
        headers = self._headers if payload is None else self._json_headers
        while True:
            conn, reused = self._acquire()
            sent = False
            try:
                conn.sock.settimeout(read_timeout or self.read_timeout)
                conn.request(method, self.prefix + path, payload, headers)
                sent = True
                return Reply(self, conn, conn.getresponse())
            except TimeoutError as exc:
                conn.close()
                raise BackendError("timeout", f"{self.backend}: no answer within the read timeout") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A kept-alive connection the upstream closed just as we reused it: nothing was answered, so
                # the request goes again once on a new connection (what browsers and Go's client do).
                if reused and isinstance(exc, _STALE):
                    continue
                # Cut after the whole request went out: the upstream may have started on it (and billed).
                raise BackendError("connection", f"{self.backend}: connection failed ({type(exc).__name__})",
                                   billable=sent) from exc


class Reply:
    """An upstream's answer whose body has not been read yet. Reading it all (json(), text(), lines() to
    the end) hands the connection back for reuse; close() before that drops the connection."""

    def __init__(self, pool: HttpPool, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._pool, self._conn, self._resp = pool, conn, resp
        self.status = resp.status
        self.headers = resp.headers  # case-insensitive get()

    @property
    def ok(self) -> bool:
        return self.status < 400

    def _read(self, limit: int, seconds: float | None) -> bytes:
        backend = self._pool.backend
        deadline = None if seconds is None else time.monotonic() + seconds
        parts, size = [], 0
        try:
            with _reading(backend):
                while True:
                    part = self._resp.read1(65536)  # what has arrived: the deadline is checked between reads
                    if not part:
                        self._resp.read()  # marks a body read to its Content-Length as finished
                        break
                    parts.append(part)
                    size += len(part)
                    if size > limit:
                        raise BackendError("malformed", f"{backend}: response larger than {limit} bytes")
                    if deadline is not None and time.monotonic() > deadline:
                        raise BackendError("timeout", f"{backend}: response still arriving after {seconds:.0f} s")
        except BackendError:
            self.close()
            raise
        self._done()
        return b"".join(parts)

    def json(self, total_timeout: float | None = None) -> dict:
        """The body as a JSON object, read within `total_timeout` seconds and MAX_BODY_BYTES: an upstream
        that never stops sending cannot hold the request past its timeout."""
        backend = self._pool.backend
        content_type = self.headers.get("content-type", "")
        if "json" not in content_type:
            self.close()
            raise BackendError("malformed", f"{backend}: expected JSON, got {content_type!r}", status=self.status)
        raw = self._read(MAX_BODY_BYTES, total_timeout)
        try:
            data = fastjson.loads(raw)
        except ValueError as exc:
            raise BackendError("malformed", f"{backend}: response is not valid JSON", status=self.status) from exc
        if not isinstance(data, dict):
            raise BackendError("malformed", f"{backend}: response is not a JSON object", status=self.status)
        return data

    def text(self) -> str:
        """The start of the body as text (for error messages); never raises."""
        try:
            return self._read(_ERROR_BODY_BYTES, self._pool.read_timeout).decode("utf-8", "replace")
        except BackendError:
            return ""

    def lines(self) -> Iterator[bytes]:
        """The body line by line as it arrives (NDJSON, server-sent events), without line endings."""
        backend = self._pool.backend
        try:
            with _reading(backend):
                while True:
                    line = self._resp.readline(MAX_LINE_BYTES + 1)
                    if not line:
                        break
                    if len(line) > MAX_LINE_BYTES:
                        raise BackendError("malformed", f"{backend}: stream line longer than {MAX_LINE_BYTES} bytes")
                    yield line.rstrip(b"\r\n")
        finally:
            self._finish()

    def _finish(self) -> None:
        """The caller stopped reading (a stream's last event came, or it gave up): keep the connection for
        the next request if the rest of the body, normally just the chunked terminator, is there within
        _FINISH_WAIT; drop it otherwise rather than keep the client waiting."""
        if self._conn is not None and self._conn.sock is not None and not self._resp.isclosed():
            try:
                self._conn.sock.settimeout(_FINISH_WAIT)
                self._resp.read(_ERROR_BODY_BYTES)  # reaching the body's end marks the response closed
            except (OSError, http.client.HTTPException):
                pass
        self.close()  # hands the connection back only if the body was read to its end

    def _done(self) -> None:
        """The body was read to its end: the connection goes back to the pool unless either side closes it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._resp.will_close or not self._resp.isclosed():
            conn.close()
        else:
            self._pool._release(conn)

    def close(self) -> None:
        if self._resp.isclosed():
            self._done()
            return
        conn, self._conn = self._conn, None
        self._resp.close()
        if conn is not None:
            conn.close()


@contextmanager
def _reading(backend: str) -> Iterator[None]:
    """Socket errors while a body arrives, as BackendError kinds."""
    try:
        yield
    except TimeoutError as exc:
        raise BackendError("timeout", f"{backend}: no answer within the read timeout") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise BackendError("connection", f"{backend}: connection cut mid-response", billable=True) from exc


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection with something to read has been closed by the other side."""
    if conn.sock is None:
        return True
    try:
        return bool(select.select([conn.sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _proxy_for(url: urllib.parse.SplitResult) -> urllib.parse.SplitResult | None:
    """HTTP_PROXY / HTTPS_PROXY for this URL unless NO_PROXY covers its host, read once."""
    proxy = urllib.request.getproxies_environment().get(url.scheme)
    if not proxy or urllib.request.proxy_bypass_environment(url.hostname or ""):
        return None
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parsed if parsed.hostname else None


def _proxy_auth(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if not proxy.username:
        return {}
    user = urllib.parse.unquote(proxy.username)
    password = urllib.parse.unquote(proxy.password or "")
    return {"Proxy-Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _tls_context() -> ssl.SSLContext:
    """Verified TLS: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE if set, else certifi's bundle."""
    cafile = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
              or os.environ.get("SSL_CERT_FILE"))
    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)
