"""The client's address behind the edge: X-Forwarded-For, believed only from TRUSTED_PROXIES.

The edge (configs/caddy/Caddyfile) replaces any X-Forwarded-For a client sends with the address it saw. A
request reaching the gateway from a trusted proxy gets that address as its REMOTE_ADDR (logs, the metrics
network check); from anywhere else it keeps its peer's address, whatever header it carries.
"""

from __future__ import annotations

import contextlib
import ipaddress


def in_networks(addr: str | None, networks: tuple) -> bool:
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False  # a unix socket, or a proxy that hides the peer: trusted for nothing
    return any(ip in net for net in networks)


class ClientAddress:
    """WSGI middleware: REMOTE_ADDR becomes the rightmost X-Forwarded-For hop that is not a trusted proxy."""

    def __init__(self, app, proxies: tuple):
        self.app, self.proxies = app, proxies

    def __call__(self, environ, start_response):
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded and in_networks(environ.get("REMOTE_ADDR"), self.proxies):
            for hop in reversed(forwarded.split(",")):
                hop = hop.strip()
                if not in_networks(hop, self.proxies):
                    break
            # not an address: the proxy's own stays (a malformed header must not become a log field)
            with contextlib.suppress(ValueError):
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(hop))
        return self.app(environ, start_response)
