"""A small client for the example scripts: the gateway URL and key from flags, the environment (GATEWAY_URL,
GATEWAY_API_KEY) or the stack's .env (its first GATEWAY_API_KEYS key), JSON in and out, and one clear error
when the gateway cannot answer or refuses the key."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.envfile import parse  # noqa: E402  (.env read as Compose and deploy-all read it)


class GatewayUnreachable(SystemExit):
    """The gateway does not answer at all: says so on stderr and exits with status 2."""

    def __init__(self, url: str, why: str):
        self.message = (f"error: the gateway at {url} is unreachable ({why}); is it running? "
                        "(./deploy-all.sh status) Set GATEWAY_URL or --gateway-url.")
        sys.stderr.write(self.message + "\n")
        super().__init__(2)


class GatewayRefused(SystemExit):
    """The gateway refused the key (401/403): says which settings give one, exits with status 2."""

    def __init__(self, status: int):
        sys.stderr.write(f"error: the gateway refused the API key (HTTP {status}). Pass one of GATEWAY_API_KEYS "
                         "(in the stack's .env) as --api-key or GATEWAY_API_KEY.\n")
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
    parser.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY") or stack_key(),
                        help="gateway API key (env GATEWAY_API_KEY; default: the first of GATEWAY_API_KEYS in "
                             "the stack's .env)")


def stack_key() -> str:
    """The first gateway key in the stack's .env (GATEWAY_ENV_FILE to read another), or ""."""
    path = Path(os.environ.get("GATEWAY_ENV_FILE") or ROOT / ".env")
    try:
        keys = parse(path.read_text(encoding="utf-8"), {}).get("GATEWAY_API_KEYS", "")
    except OSError:
        return ""
    return next((k.strip() for k in keys.split(",") if k.strip()), "")


def description(doc: str) -> str:
    """A script's --help description: its docstring's whole first paragraph."""
    return " ".join(doc.split("\n\n")[0].split())


def read_text(parser: argparse.ArgumentParser, path: str) -> str:
    """A file the user named, or a one-line usage error (exit 2) saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
        if r.status_code in (401, 403):
            raise GatewayRefused(r.status_code)
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
