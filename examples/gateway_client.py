"""A small client for the example scripts: the gateway URL and key from flags or the environment
(GATEWAY_URL, GATEWAY_API_KEY), JSON in and out, and one clear error when the gateway cannot answer."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import requests


class GatewayUnreachable(SystemExit):
    """The gateway does not answer at all: says so on stderr and exits with status 2."""

    def __init__(self, url: str, why: str):
        self.message = (f"error: the gateway at {url} is unreachable ({why}); is it running? "
                        "(./deploy-all.sh status) Set GATEWAY_URL or --gateway-url.")
        sys.stderr.write(self.message + "\n")
        super().__init__(2)


class GatewayError(Exception):
    """The gateway answered with an error (status, its error body)."""

    def __init__(self, status: int, body: dict):
        error = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {(error or {}).get('message', body)}")
        self.status, self.body = status, body


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway-url", default=os.environ.get("GATEWAY_URL", "http://localhost:8080"),
                        help="gateway base URL (env GATEWAY_URL, default http://localhost:8080)")
    parser.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY", ""),
                        help="gateway API key (env GATEWAY_API_KEY)")


class Gateway:
    def __init__(self, url: str, api_key: str = "", timeout: float = 180.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Gateway:
        return cls(args.gateway_url, args.api_key)

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            r = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise GatewayUnreachable(self.url, "connection refused or no route") from exc
        except requests.Timeout as exc:
            raise GatewayUnreachable(self.url, "timed out") from exc
        try:
            body = r.json()
        except ValueError:
            body = {"error": {"message": r.text[:200]}}
        if r.status_code >= 400:
            raise GatewayError(r.status_code, body)
        return body

    def chat(self, prompt: str, **options) -> dict:
        return self._call("POST", "/api/v1/chat", json={"prompt": prompt, **options})

    def get(self, path: str, **params) -> dict:
        return self._call("GET", path, params=params)

    def cloud_reference_prices(self) -> tuple[float, float]:
        """USD per token (in, out) of the first paid cloud model: what 'cloud-only' would have cost."""
        for m in self.get("/api/v1/models")["models"]:
            if m["tier"] == "cloud" and (m["price_in_per_mtok"] or m["price_out_per_mtok"]):
                return m["price_in_per_mtok"] / 1e6, m["price_out_per_mtok"] / 1e6
        return 0.0, 0.0
