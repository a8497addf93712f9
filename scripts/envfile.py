#!/usr/bin/env python3
"""Read .env the way Docker Compose reads it, so the native mode, the scripts and the containers all see the
same values: `KEY=value`, an optional `export `, comments (a line starting with #, or ` #` after an unquoted
value), single quotes taken literally, double quotes with escapes (\\n \\t \\\\ \\") and ${VAR} / $VAR
substitution, unquoted values trimmed and substituted. tests/deploy/test_envfile.py checks it against Compose itself.

    python3 scripts/envfile.py --shell [.env]   export lines for bash (keys already in the environment skipped)
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$"}


def parse(text: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """KEY -> value, in file order. Substitution sees earlier keys of the file, then `environ`."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _LINE.match(lines[i])
        i += 1
        if not m or lines[i - 1].lstrip().startswith("#"):
            continue
        key, raw = m.group(1), m.group(2)
        if raw[:1] in ("'", '"'):
            quote, body = raw[0], raw[1:]
            while quote not in _unescaped(body, quote) and i < len(lines):  # a value spanning lines
                body += "\n" + lines[i]
                i += 1
            end = _closing(body, quote)
            body = body[:end] if end >= 0 else body
            if quote == "'":
                values[key] = body
            else:
                values[key] = _substitute(re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), "\\" + e.group(1)),
                                                 body), values, environ)
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
            values[key] = _substitute(value, values, environ)
    return values


def _unescaped(body: str, quote: str) -> str:
    return re.sub(r"\\.", "", body) if quote == '"' else body


def _closing(body: str, quote: str) -> int:
    escaped = False
    for n, ch in enumerate(body):
        if quote == '"' and ch == "\\" and not escaped:
            escaped = True
            continue
        if ch == quote and not escaped:
            return n
        escaped = False
    return -1


def _substitute(value: str, values: Mapping[str, str], environ: Mapping[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(4)
        found = values.get(name, environ.get(name))
        op, default = m.group(2), m.group(3) or ""
        if op in (":-", "-") and (found is None or (op == ":-" and found == "")):
            return default
        return found or ""
    return _VAR.sub(one, value)


def read(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    path = Path(path)
    return parse(path.read_text(encoding="utf-8"), environ) if path.exists() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shell", action="store_true", help="print export lines for bash")
    parser.add_argument("file", nargs="?", default=".env")
    args = parser.parse_args()
    for key, value in read(args.file).items():
        if args.shell and key in os.environ:
            continue  # what the caller exported wins, as for Compose
        if args.shell and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            print(f"export {key}={shlex.quote(value)}")
        elif not args.shell:
            print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
