#!/usr/bin/env python3
"""Answer customer questions through the gateway: FAQ-like questions stay on a local model, the rest
is routed by complexity (complex ones go to the cloud). Prints each answer's routing and a cost summary.

    python examples/support_router.py "How do I reset my password?" ... [--faq faq.json] [--system TEXT]
    python examples/support_router.py --questions questions.txt --faq faq.json

The FAQ file is JSON: [{"q": "...", "a": "..."}, ...]; its entries are given to the model as context.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from gateway_client import Gateway, GatewayError, add_arguments, description, plural, read_text

SYSTEM = "You are a concise, friendly customer support assistant. If you do not know, say so."
WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset({"a", "an", "the", "i", "my", "me", "to", "do", "does", "how", "can", "what", "is", "are", "of",
                  "for", "in", "on", "and", "or", "you", "your", "it"})


def words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOP}


def faq_match(question: str, faq: list[dict], threshold: float) -> dict | None:
    """The FAQ entry whose question shares the most words with this one, if similar enough (Jaccard)."""
    q = words(question)
    best, score = None, 0.0
    for entry in faq:
        e = words(entry["q"])
        overlap = len(q & e) / len(q | e) if q | e else 0.0
        if overlap > score:
            best, score = entry, overlap
    return best if score >= threshold else None


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("question", nargs="*")
    parser.add_argument("--questions", help="a file with one question per line")
    parser.add_argument("--faq", help="FAQ JSON file: [{q, a}, ...]")
    parser.add_argument("--system", default=SYSTEM, help="system prompt")
    parser.add_argument("--faq-threshold", type=float, default=0.5, help="word overlap that makes a question FAQ-like")
    add_arguments(parser)
    args = parser.parse_args()
    questions = list(args.question)
    if args.questions:
        questions += [q.strip() for q in read_text(parser, args.questions).splitlines() if q.strip()]
    if not questions:
        parser.error("give questions as arguments or with --questions")
    try:
        faq = json.loads(read_text(parser, args.faq)) if args.faq else []
    except json.JSONDecodeError as exc:
        parser.error(f"{args.faq} is not JSON: {exc}")
    if not isinstance(faq, list) or not all(isinstance(e, dict) and "q" in e and "a" in e for e in faq):
        raise SystemExit("error: the FAQ file must be a JSON list of {\"q\": ..., \"a\": ...}")
    system = args.system + ("\n\nFAQ:\n" + "\n".join(f"Q: {e['q']}\nA: {e['a']}" for e in faq) if faq else "")

    gw = Gateway.from_args(args)
    rows = []
    for question in questions:
        match = faq_match(question, faq, args.faq_threshold)
        route = {"strategy": "local-only"} if match else {}
        try:
            body = gw.chat(question, system=system, **route)
        except GatewayError as exc:
            print(f"? {question}\n  error: {exc}\n")
            rows.append({"backend": "error", "cost": 0.0})
            continue
        kind = "FAQ, kept local" if match else body["routing"]["reason"]
        print(f"? {question}\n  [{body['model']} / {body['backend']}] {kind}\n  {body['response'].strip()}\n")
        rows.append(body)
    local = sum(r["backend"] == "ollama" for r in rows)
    cloud = sum(r["backend"] in ("anthropic", "openai_compat") for r in rows)
    failed = sum(r["backend"] == "error" for r in rows)
    cost = sum(r["cost"] for r in rows)
    print(f"{plural(len(rows), 'question')}: {local} local, {cloud} cloud, {failed} failed; cost ${cost:.6f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
