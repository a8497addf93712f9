"""The gateway image's build context: every COPY/ADD source of every Dockerfile survives .dockerignore. There is
no Docker engine here, so Docker's matcher (moby/patternmatcher, as `docker build` and BuildKit apply it) is
emulated, and the emulation is checked on cases whose outcome Docker documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern]]:
    """(exception, regex) per line: comments and blank lines skipped, `!` re-includes, leading / and ./ dropped,
    `**` any number of directories, `*` and `?` within one path element, [...] a character class."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line[1:].strip() if exception else line
        pattern = re.sub(r"^(\./|/)+", "", pattern).rstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif c == "*":
                regex, i = regex + "[^/]*", i + 1
            elif c == "?":
                regex, i = regex + "[^/]", i + 1
            elif c == "[":
                end = pattern.index("]", i)
                regex, i = regex + "[" + pattern[i + 1:end].replace("!", "^", 1) + "]", end + 1
            else:
                regex, i = regex + re.escape(c), i + 1
        rules.append((exception, re.compile(regex + r"\Z")))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: a pattern matches a path when it matches the path or one of its parent directories, and
    the last pattern that matches decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    state = False
    for exception, regex in rules:
        if any(regex.match(c) for c in candidates):
            state = not exception
    return state


@pytest.mark.parametrize(("patterns", "path", "out"), [
    ("*\n!gateway/", "gateway/api/openai.py", False),      # re-included with everything under it
    ("*\n!gateway/", "configs/router/learned.json", True),
    ("*\n!configs/models.yaml", "configs/models.yaml", False),
    ("*\n!configs/models.yaml", "configs/router/learned.json", True),
    ("**/__pycache__", "gateway/api/__pycache__/x.pyc", True),
    ("**/*.pyc", "a/b/c.pyc", True),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "docs/x.md", False),               # *.md does not cross a directory
    ("docs\n!docs/keep.md", "docs/keep.md", False),          # the last match wins, even inside an excluded dir
    ("docs\n!docs/keep.md", "docs/drop.md", True),
    ("/tmp*", "tmpfile", True),
    ("temp?", "temp1/x", True),
    ("# a comment\n\n", "anything", False),
    ("[a-c]*.txt", "b1.txt", True),
])
def test_the_emulated_matcher_follows_dockers_rules(patterns, path, out):
    assert excluded(path, ignore_rules(patterns)) is out


def copy_sources(dockerfile: Path) -> list[str]:
    """The build-context paths COPY and ADD read (not those from another stage)."""
    sources = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


@pytest.mark.parametrize("dockerfile", sorted(p.relative_to(ROOT) for p in ROOT.glob("**/Dockerfile")
                                              if ".venv" not in p.parts and "node_modules" not in p.parts),
                         ids=str)
def test_every_copy_source_is_in_the_build_context(dockerfile):
    rules = ignore_rules((ROOT / ".dockerignore").read_text())
    sources = copy_sources(ROOT / dockerfile)
    assert sources, f"{dockerfile}: no COPY found"
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"{dockerfile}: COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                               and "__pycache__" not in p.parts]
        kept = [f for f in files if not excluded(str(f.relative_to(ROOT)), rules)]
        # BuildKit stops with "not found" when a source is not in the context at all
        assert kept, f"{dockerfile}: COPY {source}: .dockerignore leaves nothing of it in the build context"
