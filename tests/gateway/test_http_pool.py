"""The upstream HTTP pool (gateway/backends/http_pool.py) on real sockets: connections reused (streams
too), an idle connection the upstream closed replaced, HTTP_PROXY and NO_PROXY honoured, HTTPS through a
CONNECT proxy with verified TLS, oversized bodies refused."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.backends import http_pool
from gateway.backends.errors import BackendError
from gateway.backends.http_pool import HttpPool


class Upstream:
    """A JSON HTTP/1.1 server that counts TCP connections and records each request line and headers."""

    def __init__(self, close_after_each: bool = False, body: bytes = b'{"ok": true}',
                 stream: list[bytes] | None = None, pause_before_end: float = 0.0, tls: ssl.SSLContext | None = None,
                 chunk_ext: bytes = b"", trailer: bytes = b""):
        self.connections, self.requests = 0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                outer.connections += 1
                super().setup()

            def do_POST(self):
                size = int(self.headers.get("Content-Length", 0))
                outer.requests.append((self.path, dict(self.headers), json.loads(self.rfile.read(size))))
                if stream is not None:  # NDJSON, chunked, one chunk per line, as Ollama streams
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for line in stream:
                        self.wfile.write(b"%x%s\r\n%s\r\n" % (len(line), chunk_ext, line))
                        self.wfile.flush()
                    time.sleep(pause_before_end)
                    self.wfile.write(b"0%s\r\n%s\r\n" % (chunk_ext, trailer))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if close_after_each:  # a keep-alive timeout: closed without saying so
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    servers = []

    def start(**kwargs):
        servers.append(Upstream(**kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def pool(url: str, **kwargs) -> HttpPool:
    return HttpPool("test", url, connect_timeout=2, read_timeout=5, **kwargs)


def test_one_connection_serves_many_requests(upstream):
    up = upstream()
    p = pool(up.url + "/v1", headers={"Authorization": "Bearer k"})
    for i in range(5):
        assert p.request("POST", "/chat", {"n": i}).json(5) == {"ok": True}
    assert up.connections == 1
    assert [r[0] for r in up.requests] == ["/v1/chat"] * 5
    assert up.requests[0][1]["Authorization"] == "Bearer k" and up.requests[-1][2] == {"n": 4}


def test_connection_closed_by_the_upstream_while_idle_is_replaced(upstream):
    up = upstream(close_after_each=True)
    p = pool(up.url)
    for i in range(3):
        assert p.request("POST", "/x", {"n": i}).json(5) == {"ok": True}
    assert up.connections == 3 and len(up.requests) == 3


def test_plain_http_goes_through_http_proxy_unless_no_proxy(upstream, monkeypatch):
    proxy = upstream()  # answers as the upstream would: enough to see what reached the proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://user:p%40ss@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    p = pool("http://ollama.internal:11434")
    assert p.request("POST", "/api/chat", {"q": 1}).json(5) == {"ok": True}
    path, headers, _ = proxy.requests[-1]
    assert path == "http://ollama.internal:11434/api/chat"  # absolute form, as a forward proxy expects
    assert headers["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    direct = upstream()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    p = pool(direct.url)
    p.request("POST", "/api/chat", {"q": 2}).json(5)
    assert direct.requests[-1][0] == "/api/chat" and len(proxy.requests) == 1


def test_body_over_the_limit_is_malformed_and_the_connection_dropped(upstream, monkeypatch):
    up = upstream(body=b'{"text": "' + b"x" * 5000 + b'"}')
    monkeypatch.setattr(http_pool, "MAX_BODY_BYTES", 1024)
    p = pool(up.url)
    with pytest.raises(BackendError) as err:
        p.request("POST", "/x", {}).json(5)
    assert err.value.kind == "malformed" and "larger than 1024 bytes" in err.value.message
    assert p._idle == []  # half-read: never reused


def test_refused_connection_is_a_connection_error(unused_port):
    with pytest.raises(BackendError) as err:
        pool(f"http://127.0.0.1:{unused_port}").request("POST", "/x", {})
    assert err.value.kind == "connection"


def test_not_an_http_url_is_refused_at_start():
    with pytest.raises(ValueError, match="not an http"):
        pool("ftp://example.com")


STREAM = [b'{"message": {"content": "Hi"}, "done": false}\n', b'{"done": true}\n']


def read_to_done(reply) -> list[bytes]:
    """What a backend does: read lines up to the final one, then stop (the generator is closed)."""
    lines = reply.lines()
    got = []
    for line in lines:
        got.append(line)
        if b'"done": true' in line:
            break
    lines.close()
    return got


def test_a_stream_read_to_its_last_event_leaves_the_connection_for_the_next_request(upstream):
    up = upstream(stream=STREAM)
    p = pool(up.url)
    for _ in range(3):
        assert read_to_done(p.request("POST", "/api/chat", {})) == [line.rstrip() for line in STREAM]
    assert up.connections == 1 and len(up.requests) == 3


def test_a_stream_whose_end_lags_is_dropped_and_the_next_request_is_clean(upstream):
    up = upstream(stream=STREAM, pause_before_end=0.3)  # the terminator comes long after the last event
    p = pool(up.url)
    for _ in range(2):
        assert read_to_done(p.request("POST", "/api/chat", {})) == [line.rstrip() for line in STREAM]
    assert up.connections == 2 and p._idle == []


@pytest.mark.parametrize(("chunks", "extension", "trailer"), [
    ([b'{"a": ', b'1}\n{"b"', b': 2}\r\n{"c": 3}\n'], b"", b""),            # lines split over chunks, CRLF too
    ([b'{"a": 1}\n{"b": 2}\n', b'{"c": 3}'], b";name=value", b"X-Checksum: 1\r\n"),  # extensions, trailers,
], ids=["split", "extensions-trailers"])                                          # no newline at the end
def test_chunked_lines_are_whole_lines_whatever_the_chunks_and_the_connection_is_kept(upstream, chunks, extension,
                                                                                   trailer):
    up = upstream(stream=chunks, chunk_ext=extension, trailer=trailer)
    p = pool(up.url)
    for _ in range(2):
        assert list(p.request("POST", "/api/chat", {}).lines()) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']
    assert up.connections == 1


class ConnectProxy:
    """A forward proxy for HTTPS: answers CONNECT, records its line and headers, then relays bytes."""

    def __init__(self):
        self.connects: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode().strip()
                headers = {}
                while (header := self.rfile.readline().decode().strip()):
                    name, _, value = header.partition(":")
                    headers[name.strip()] = value.strip()
                outer.connects.append((line, headers))
                host, _, port = line.split()[1].rpartition(":")
                with socket.create_connection((host, int(port)), timeout=5) as target:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    threading.Thread(target=_relay, args=(target, self.connection), daemon=True).start()
                    _relay(self.connection, target)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tls_upstream(upstream, tmp_path):
    """A JSON upstream on https://localhost with a self-signed certificate (openssl), and its cert file."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return upstream(tls=context), cert


def test_https_goes_through_a_connect_tunnel_with_proxy_auth_and_verified_tls(tls_upstream, monkeypatch):
    up, cert = tls_upstream
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        p = pool(up.url + "/v1")
        for i in range(2):
            assert p.request("POST", "/chat/completions", {"n": i}).json(5) == {"ok": True}
        port = up.url.rsplit(":", 1)[1]
        assert [c[0].rsplit(" ", 1)[0] for c in proxy.connects] == [f"CONNECT localhost:{port}"]  # one tunnel, reused
        assert proxy.connects[0][1]["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"
        # Inside the tunnel the upstream sees an ordinary request (origin form), never the proxy's credentials.
        assert [r[0] for r in up.requests] == ["/v1/chat/completions"] * 2
        assert "Proxy-Authorization" not in up.requests[0][1]
    finally:
        proxy.close()


def test_an_upstream_certificate_nobody_vouches_for_is_refused(tls_upstream, monkeypatch):
    up, _ = tls_upstream
    for name in ("HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BackendError) as err:
        pool(up.url).request("POST", "/x", {})
    assert err.value.kind == "connection" and "SSLCertVerificationError" in err.value.message
    assert up.requests == []
