"""X-Forwarded-For believed only from the configured edge (gateway/api/client_address.py)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.api.client_address import ClientAddress

EDGE = (ipaddress.ip_network("10.9.0.0/29"), ipaddress.ip_network("::1/128"))


def _seen(peer: str, forwarded: str | None, proxies=EDGE) -> str:
    environ = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    app = ClientAddress(lambda env, start: env["REMOTE_ADDR"], proxies)
    return app(environ, None)


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("10.9.0.2", "198.51.100.7", "198.51.100.7"),                 # the edge names the client
    ("10.9.0.2", "203.0.113.9, 198.51.100.7", "198.51.100.7"),    # a hop the client wrote itself is not believed
    ("10.9.0.2", "198.51.100.7, 10.9.0.3", "198.51.100.7"),       # trusted hops are skipped
    ("::1", "2001:db8::5", "2001:db8::5"),
    ("192.0.2.1", "198.51.100.7", "192.0.2.1"),                   # not the edge: its own address, whatever it says
    ("10.9.0.2", "not-an-address", "10.9.0.2"),                   # nonsense is never a log field
    ("10.9.0.2", "", "10.9.0.2"),
    ("10.9.0.2", None, "10.9.0.2"),
])
def test_client_address(peer, forwarded, client):
    assert _seen(peer, forwarded) == client


def test_no_trusted_proxies_believes_nobody():
    assert _seen("10.9.0.2", "198.51.100.7", proxies=()) == "10.9.0.2"


def test_the_setting_is_read_and_checked():
    from gateway.config import ConfigError, Settings

    assert Settings.from_env({"TRUSTED_PROXIES": "127.0.0.1, 172.30.0.0/24"}).trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("172.30.0.0/24"))
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "the edge"})
