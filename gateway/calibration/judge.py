"""Was the local answer good enough? Pure: the shadow runner (gateway/calibration/shadow.py) makes the calls.

Where an answer can be checked, an exact comparison: the choice picked (A-E) for a multiple-choice prompt,
else the final number for a prompt with numbers; agreeing with the cloud model's answer is good enough.
Otherwise a pairwise judgement by the cloud model, asked twice with the answers in both orders; only a
verdict that holds in both orders counts, an order-dependent one is a tie (and a tie is good enough).
"""

from __future__ import annotations

import re

from .labels import cluster_of

_CHOICE = re.compile(r"(?:answer(?: is)?|correct (?:option|choice|answer)(?: is)?)\s*[:\-]?\s*\(?([A-E])\b", re.I)
_LEADING_CHOICE = re.compile(r"^\s*\(?([A-E])[).:\s]")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

JUDGE_SYSTEM = ("You compare two answers to the same request. Judge correctness first, then completeness and "
                "helpfulness; ignore length and style. Reply with exactly one word: A, B or TIE.")


def extract(prompt: str, answer: str) -> str | None:
    """The checkable part of an answer: a choice letter, or the final number; None if there is none."""
    kind = cluster_of(prompt)
    if kind == "choice":
        found = _CHOICE.findall(answer) or _LEADING_CHOICE.findall(answer)
        return found[-1].upper() if found else None
    if kind == "math":
        numbers = _NUMBER.findall(answer.replace("$", ""))
        if numbers:
            value = numbers[-1].replace(",", "").rstrip(".")
            try:
                return f"{float(value):g}"
            except ValueError:
                return None
    return None


def exact(prompt: str, local: str, cloud: str) -> tuple[float, float] | None:
    """(local quality, cloud quality) by comparison, or None where the answers cannot be compared so."""
    a, b = extract(prompt, local), extract(prompt, cloud)
    if a is None or b is None:
        return None
    return (1.0, 1.0) if a == b else (0.0, 1.0)


def pairwise_prompt(prompt: str, first: str, second: str) -> str:
    return (f"[Request]\n{prompt}\n\n[Answer A]\n{first}\n\n[Answer B]\n{second}\n\n"
            "Which answer is better? Reply A, B or TIE.")


def verdict(reply: str) -> str:
    """A, B or TIE from the judge's reply (anything else: TIE)."""
    word = re.sub(r"[^A-Z]", " ", reply.upper()).split()
    return word[0] if word and word[0] in ("A", "B", "TIE") else "TIE"


def consistent(local_first: str, local_second: str) -> bool:
    """The same verdict in both orders (A then B, B then A, or a tie both times)."""
    return {"A": "B", "B": "A", "TIE": "TIE"}[local_first] == local_second


def combine(local_first: str, local_second: str) -> tuple[float, float]:
    """The two verdicts (local answer shown first, then second) as (local, cloud) quality."""
    if local_first == "B" and local_second == "A":  # the cloud's answer won in both orders
        return 0.0, 1.0
    return 1.0, 1.0
